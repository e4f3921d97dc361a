"""One GPU check, in one process, within a time budget (default 330 s):

  (d) torch / CUDA / GPU names, and channels_last of the 224 student and of the teachers;
  (b) 50 graphed against 50 eager training steps of the consistent profile's step (same losses within bf16
      tolerance), and their speed at batch 128;
  (a) `cakd.bench` for the paper and the consistent profiles at batch 128;
  (c) every paper-profile manifest row (cakd.manifest.ROWS) for 2 epochs on CIFAR-100-shaped generated data,
      with randomly initialised full-size teachers (their public weights are not downloaded).

Each part checks the time left and is skipped, saying so, past its limit. Progress goes to stdout; the tables to
$OUT/gpu_check.json and $OUT/gpu_check.md when $OUT is set (else to --out). Test it on a CPU first:

    python scripts/gpu_check.py --device cpu --quick
    python scripts/gpu_check.py                      # on the GPU
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the repository's cakd, installed or not
START = time.perf_counter()
RESULTS: dict = {"skipped": [], "errors": {}}


def log(message: str) -> None:
    print(f"[{time.perf_counter() - START:6.1f} s] {message}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny models, few steps: tests every path on a CPU")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for the whole script (default 330; quick: 1200)")
    parser.add_argument("--rows-images", type=int, default=None,
                        help="synthetic_size of part (c) (default 12,000: 9,000 train images; quick 600)")
    parser.add_argument("--out", type=Path, default=None, help="folder of the outputs when $OUT is unset")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it on a GPU, or test it with --device cpu --quick", flush=True)
        return 2
    args.budget = args.budget or (1200.0 if args.quick else 330.0)
    if args.quick:
        torch.set_num_threads(1)   # tiny tensors: a second OpenMP thread only waits on a busy CPU
    out = Path(os.environ.get("OUT") or args.out or tempfile.mkdtemp(prefix="gpu_check-out-"))
    out.mkdir(parents=True, exist_ok=True)
    homes = Path(tempfile.mkdtemp(prefix="gpu_check-"))
    os.environ["CAKD_RESULTS"], os.environ["CAKD_CACHE"] = str(homes / "results"), str(homes / "cache")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    RESULTS.update(mode="quick" if args.quick else "full", budget_s=args.budget)
    device = torch.device("cuda", torch.cuda.current_device()) if args.device == "cuda" else torch.device("cpu")
    patch_for_this_machine(device)
    parts = [("d_machine", 0.0, part_machine), ("b_graph_vs_eager", 0.25, part_graph_vs_eager),
             ("a_bench_paper", 0.40, lambda d, q: part_bench(d, q, "paper")),
             ("a_bench_consistent", 0.60, lambda d, q: part_bench(d, q, "consistent")),
             ("c_rows", 0.70, lambda d, q: part_rows(d, q, args.rows_images, args.budget))]
    for name, start_by, part in parts:   # a part starts only before this fraction of the budget is spent
        elapsed = time.perf_counter() - START
        if elapsed > start_by * args.budget and start_by > 0:
            RESULTS["skipped"].append(f"{name}: skipped, {elapsed:.0f} s spent of the {args.budget:.0f} s budget")
            log(RESULTS["skipped"][-1])
            continue
        log(f"--- {name}")
        try:
            RESULTS[name] = part(device, args.quick)
        except Exception as e:  # noqa: BLE001 -- record it and go on: the other parts still say something
            RESULTS["errors"][name] = f"{type(e).__name__}: {e}"
            log(f"{name} FAILED: {RESULTS['errors'][name]}")
            traceback.print_exc(file=sys.stdout)
        write_outputs(out)
    RESULTS["total_s"] = time.perf_counter() - START
    write_outputs(out)
    print(markdown(), flush=True)
    log(f"wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}")
    return 1 if RESULTS["errors"] else 0


# ----------------------------------------------------------------------------- what this machine needs

def patch_for_this_machine(device: torch.device) -> None:
    """Stand-ins, each said in the output: the device lacks scikit-learn and cannot download teacher weights."""
    import cakd.data
    import cakd.models
    import cakd.teachers

    def numpy_stratified_split(labels: np.ndarray, val_size: int) -> tuple[np.ndarray, np.ndarray]:
        """The device lacks scikit-learn; the split does not affect speed: a seeded numpy draw, stratified."""
        rng = np.random.default_rng(42)
        classes = np.unique(labels)
        per_class = max(1, val_size // len(classes))
        val = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in classes])
        return np.setdiff1d(np.arange(len(labels)), val), np.sort(val)

    weights: dict[str, dict] = {}

    def random_public_weights(model, name):
        """No download here: the first random initialisation of each teacher stands for its public weights (kept,
        so every row reads the same teacher and its logit cache is built once, as with the real weights)."""
        state = weights.setdefault(name, {k: v.clone() for k, v in model.net.state_dict().items()})
        model.net.load_state_dict(state)
        return model

    cakd.data.stratified_split = numpy_stratified_split
    cakd.models.load_public_weights = cakd.teachers.load_public_weights = random_public_weights
    RESULTS["stand_ins"] = ["cakd.data.stratified_split: a numpy stratified draw (the device lacks scikit-learn; "
                            "the split does not affect speed)",
                            "cakd.models.load_public_weights: random full-size teachers (no download here)"]
    if device.type == "cuda":
        check_cache_lookup_device()


def check_cache_lookup_device() -> None:
    """CachedTeachers given torch.device('cuda') must look up a device-resident cache without a host copy."""
    import cakd.runs
    from cakd.teaching import CachedTeachers, TeacherLogitCache

    array = torch.zeros(4, 3, dtype=torch.float16, device="cuda")
    cache = TeacherLogitCache(None, {"train": array, "val": None, "test": None}, {})
    try:
        CachedTeachers([cache], ["t"], torch.device("cuda"))(torch.arange(2, device="cuda"),
                                                            torch.zeros(2, dtype=torch.long, device="cuda"), None)
        RESULTS["cache_lookup_device"] = "ok"
    except RuntimeError as e:
        index = torch.cuda.current_device()
        RESULTS["cache_lookup_device"] = (f"CachedTeachers(device=torch.device('cuda')) fails ({e}); worked around "
                                          f"here by resolving runs' device to cuda:{index}")
        cakd.runs.resolve_device = lambda name: torch.device("cuda", index) if name in ("auto", "cuda") \
            else torch.device(name)
        RESULTS["stand_ins"].append(RESULTS["cache_lookup_device"])
    log(f"cache lookup on torch.device('cuda'): {RESULTS['cache_lookup_device']}")


# ----------------------------------------------------------------------------- parts

def part_machine(device: torch.device, quick: bool) -> dict:
    import timm
    import torchvision

    from cakd.models import create_student, create_teacher
    from cakd.train import prepare_training

    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "timm": timm.__version__,
            "torchvision": torchvision.__version__, "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "device": str(device)}
    if device.type == "cuda":
        info |= {"gpu": torch.cuda.get_device_name(device), "cudnn": torch.backends.cudnn.version(),
                 "capability": ".".join(map(str, torch.cuda.get_device_capability(device))),
                 "gpu_memory_gb": round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1)}
    scale = "tiny" if quick else "full"
    student, _, _ = prepare_training(create_student("mobilenetv2_100", 100, scale), device, 1e-2, 1e-4, "bf16")
    teacher = create_teacher("resnet50_cifar100", 100, scale)
    from cakd.teaching import prepare_teacher   # what the cache build and online teaching do to a teacher
    teacher = prepare_teacher(teacher, device)
    info["channels_last"] = {"student_224_input": _first_conv_input_channels_last(student, 224, device),
                             "teacher_resnet50_input": _first_conv_input_channels_last(teacher, 32, device)}
    log(json.dumps(info))
    return info


def _first_conv_input_channels_last(model, size: int, device: torch.device) -> bool:
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    seen = []
    handle = conv.register_forward_pre_hook(lambda m, inputs: seen.append(
        inputs[0].is_contiguous(memory_format=torch.channels_last)))
    with torch.no_grad():
        model.eval()(torch.rand(2, 3, size, size, device=device))
    handle.remove()
    return seen[0]


def part_graph_vs_eager(device: torch.device, quick: bool) -> dict:
    """The consistent profile's KD step (162-view cache, Method 3), 50 steps graphed and 50 eager from the same
    state and batches: losses compared (dropout off for the strict check, and dropout kept); then the speed of
    one 50-step train_epoch call each, after a warm 10-step call (the graph is captured in the warm call)."""
    data = _consistent_data(device, quick)
    out = {}
    for dropout in (False, True):
        eager = _run(device, data, graph=False, dropout=dropout, calls=[1] * 50)[0]
        graph = _run(device, data, graph=True, dropout=dropout, calls=[1] * 50)[0]
        diff = (graph - eager).abs()
        close = bool(torch.allclose(graph, eager, rtol=5e-2, atol=5e-2)) and bool(torch.isfinite(graph).all())
        out["dropout" if dropout else "no_dropout"] = {
            "max_abs_diff": float(diff.max()), "max_rel_diff": float((diff / eager.abs().clamp_min(1e-6)).max()),
            "first_loss": [float(eager[0]), float(graph[0])], "last_loss": [float(eager[-1]), float(graph[-1])],
            "within_tolerance": close}
        log(f"graphed vs eager ({'dropout kept' if dropout else 'dropout off'}): max |diff| {float(diff.max()):.2e}, "
            f"losses {float(eager[0]):.3f} -> {float(eager[-1]):.3f}, within rtol/atol 5e-2: {close}")
    for graph in (False, True):
        out[f"images_per_s_{'graphed' if graph else 'eager'}"] = _run(device, data, graph=graph, dropout=True,
                                                                      calls=[10, 50])[1]
    out["graphed/eager"] = out["images_per_s_graphed"] / out["images_per_s_eager"]
    if device.type != "cuda":
        out["note"] = "no CUDA: both runs were eager; this only exercised the code paths"
        log(out["note"])
    log(f"consistent KD step at batch {data['cfg'].batch_size}: eager {out['images_per_s_eager']:,.0f}, graphed "
        f"{out['images_per_s_graphed']:,.0f} images/s ({out['graphed/eager']:.2f}x)")
    return out


def _consistent_data(device: torch.device, quick: bool) -> dict:
    """The consistent profile's Method 3 run (tiny models in quick mode), random images and a random 162-view
    cache of its three teachers, on the device."""
    import dataclasses

    from cakd.config import profile_config
    from cakd.data import Split
    from cakd.manifest import D, R50, V
    from cakd.teaching import CACHE_DTYPE, CachedTeachers, TeacherLogitCache
    from cakd.train import FitConfig

    scale = dict(model_scale="tiny", teacher_weights="train", device="cpu") if quick else {}
    config = profile_config("consistent", method="adaptive_alpha", teachers=[D, R50, V], dataset="synthetic",
                            **scale)
    cfg = dataclasses.replace(FitConfig.of(config, device), batch_size=16 if quick else 128)
    n = 512 if quick else 8192
    g = torch.Generator(device=device).manual_seed(0)
    train = Split(torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8, device=device),
                  torch.randint(0, 100, (n,), generator=g, device=device))
    caches = [TeacherLogitCache(None, {"train": torch.randn(n, cfg.views.count, 100, generator=g, device=device)
                                       .to(CACHE_DTYPE), "val": None, "test": None}, {}) for _ in range(3)]
    return {"config": config, "cfg": cfg, "train": train, "teachers": CachedTeachers(caches, [D, R50, V], device)}


def _run(device: torch.device, data: dict, *, graph: bool, dropout: bool, calls: list[int]):
    """train_epoch calls of `calls[i]` batches each, from a fresh student: the per-call mean losses, and the
    images/s of the last call."""
    import dataclasses

    from cakd.data import random_views
    from cakd.models import create_student
    from cakd.runs import step_loss
    from cakd.teaching import autocast_for
    from cakd.train import prepare_training, train_epoch

    config, cfg, train = data["config"], dataclasses.replace(data["cfg"], cuda_graph=graph), data["train"]
    torch.manual_seed(0)
    student = create_student(config.student, 100, config.model_scale)
    if not dropout:
        for parent in student.modules():
            for name, child in parent.named_children():
                if isinstance(child, torch.nn.Dropout):
                    setattr(parent, name, torch.nn.Identity())
    model, optimizer, scaler = prepare_training(student, device, cfg.lr, cfg.weight_decay, cfg.precision)
    loss, autocast = step_loss(config), autocast_for(device, cfg.precision)
    g, losses, b = torch.Generator().manual_seed(1), [], cfg.batch_size
    for batches in calls:
        order = torch.randint(0, len(train), (batches * b,), generator=g).to(device)
        views = random_views(batches * b, cfg.views, g).to(device)
        _sync(device)
        begin = time.perf_counter()
        sums = train_epoch(model, optimizer, loss, train, order, views, cfg, teachers=data["teachers"],
                           autocast=autocast, scaler=scaler)
        _sync(device)
        seconds = time.perf_counter() - begin
        losses.append(sums["loss"] / (batches * b))
    return torch.stack(losses).float().cpu(), batches * b / seconds


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def part_bench(device: torch.device, quick: bool, profile: str) -> dict:
    from cakd import bench

    if quick:
        config = dict(model_scale="tiny", teacher_weights="train")
        if profile == "paper":
            config |= dict(resize=36, crop=32)   # the smoke profile's 32 -> 36 -> 32 for 32 -> 256 -> 224
        settings = dict(batch_size=8, steps=2, warmup=4, repeats=2, train_images=128, loader_workers=2,
                        teacher_batch_size=16, eval_batch_size=32)
    else:
        config = {}
        settings = dict(batch_size=128, steps=15, warmup=5, repeats=5, train_images=45_000,
                        loader_workers=min(4, os.cpu_count() or 1), teacher_batch_size=2048, eval_batch_size=1024)
    record = bench.run_benchmark(device.type, profile, write=False, config=config, **settings)
    return record


def part_rows(device: torch.device, quick: bool, images: int | None, budget: float) -> dict:
    """Every Table 1 row of the paper profile for 2 epochs: images/s = train images x epochs / fit seconds
    (fit's seconds include the evaluation after each epoch; cache building is counted apart)."""
    from cakd.data import make_synthetic
    from cakd.manifest import ROWS
    from cakd.runs import load_or_train

    images = images or (600 if quick else 12_000)
    train_images = len(make_synthetic(images).train)
    overrides = dict(dataset="synthetic", synthetic_size=images, epochs=2, patience=0)
    if quick:
        overrides |= dict(model_scale="tiny", teacher_weights="train", teacher_epochs=1, resize=36, crop=32,
                          batch_size=32, device="cpu", precision="fp32")
    log(f"rows: synthetic_size={images} -> {train_images} train images, 2 epochs each")
    rows = {}
    for row in ROWS:
        if time.perf_counter() - START > 0.93 * budget:
            RESULTS["skipped"].append(f"c_rows: row {row.id} and later skipped (budget)")
            log(RESULTS["skipped"][-1])
            break
        begin = time.perf_counter()
        result = load_or_train(row.config("paper", **overrides))
        wall = time.perf_counter() - begin
        fit_s = result.metrics["train_seconds"]
        rows[row.id] = {"teachers": len(row.params.get("teachers", [])), "train_images": train_images,
                        "epochs": result.metrics["epochs"], "fit_seconds": fit_s, "wall_seconds": wall,
                        "images_per_s": train_images * result.metrics["epochs"] / fit_s,
                        "cache_build_passes": result.metrics.get("cache_build_passes", 0),
                        "test_acc": result.metrics["test_acc"]}
        log(f"row {row.id:<18} {rows[row.id]['images_per_s']:>9,.0f} images/s (fit {fit_s:.1f} s, "
            f"wall {wall:.1f} s incl. caches and set-up)")
    return {"synthetic_size": images, "train_images": train_images, "rows": rows}


# ----------------------------------------------------------------------------- outputs

def write_outputs(out: Path) -> None:
    (out / "gpu_check.json").write_text(json.dumps(RESULTS, indent=1, default=str))
    (out / "gpu_check.md").write_text(markdown())


def markdown() -> str:
    lines = [f"# gpu_check ({RESULTS.get('mode')}), {time.perf_counter() - START:.0f} s", ""]
    if m := RESULTS.get("d_machine"):
        lines += [f"{m.get('gpu', 'CPU')}, torch {m['torch']}, CUDA {m['cuda']}, cuDNN {m.get('cudnn')}, "
                  f"timm {m['timm']}, channels_last {m['channels_last']}", ""]
    lines += [f"- stand-in: {s}" for s in RESULTS.get("stand_ins", [])] + [""]
    if b := RESULTS.get("b_graph_vs_eager"):
        lines += ["## (b) graphed vs eager, consistent KD step, 50 steps", "",
                  "| dropout | max abs diff | max rel diff | within 5e-2 |", "|---|---:|---:|---|"]
        for key in ("no_dropout", "dropout"):
            r = b[key]
            lines.append(f"| {key} | {r['max_abs_diff']:.2e} | {r['max_rel_diff']:.2e} | {r['within_tolerance']} |")
        lines += ["", f"eager {b['images_per_s_eager']:,.0f} images/s, graphed {b['images_per_s_graphed']:,.0f} "
                      f"images/s: {b['graphed/eager']:.2f}x", ""]
    for profile in ("paper", "consistent"):
        if r := RESULTS.get(f"a_bench_{profile}"):
            lines += [f"## (a) bench {profile}", "", "| pipeline | images/s | peak MB | graphed |", "|---|---:|---:|---|"]
            lines += [f"| {p['label']} | {p['images_per_s']:,.1f} | {p['peak_memory_mb']:,.0f} | {p['graphed']} |"
                      for p in r["pipelines"].values()]
            lines += ["", "| ratio | value |", "|---|---:|"]
            lines += [f"| {k} | {v:.2f} |" for k, v in r["ratios"].items()]
            lines += ["", "| teacher forward | images/s |", "|---|---:|"]
            lines += [f"| {k} | {v['images_per_s']:,.0f} |" for k, v in r["teacher_forward"].items()]
            lines += ["", f"student eval: {r['student_eval']['images_per_s']:,.0f} images/s", ""]
    if c := RESULTS.get("c_rows"):
        lines += [f"## (c) paper rows, 2 epochs of {c['train_images']:,} generated images "
                  f"(synthetic_size {c['synthetic_size']:,})", "",
                  "| row | teachers | images/s | fit s | wall s |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {k} | {r['teachers']} | {r['images_per_s']:,.0f} | {r['fit_seconds']:.1f} | "
                  f"{r['wall_seconds']:.1f} |" for k, r in c["rows"].items()]
        if c["rows"]:
            lines += ["", f"median images/s: {statistics.median(r['images_per_s'] for r in c['rows'].values()):,.0f}"]
        lines.append("")
    lines += [f"- {s}" for s in RESULTS["skipped"]] + [f"- ERROR {k}: {v}" for k, v in RESULTS["errors"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
