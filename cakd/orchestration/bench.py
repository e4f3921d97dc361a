"""Benchmark: per Table 1 row, our training step (fit's own TrainStep: data on the device, the teachers' logits from a
cache, one CUDA graph on CUDA) against the authors' pipeline as they ran it (a DataLoader of PIL images at their 2
workers and at 4, fp16 with a GradScaler, every teacher online, `.item()` every step), or, where the teachers see the
student's views, against the row taught online. A row's repeats are interleaved under torch.utils.benchmark's Timer;
images/s is their median. Once per run: the plain step, the heaviest row's step eagerly, each teacher's forward pass
and the student's evaluation (cakd.reading.costs estimates Table 1 from them). `check` adds what a GPU must confirm."""
from __future__ import annotations

import dataclasses
import gc
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable
from unittest import mock

import torch
from torch import Tensor, nn

from ..definitions import files, paths
from ..definitions.config import RunConfig, is_count
from ..definitions.manifest import BENCH_REFERENCE as HEAVIEST, ROWS, Row, get_row, select_rows, teachers_used
from ..definitions.networks import STUDENT_PIPELINE, InputPipeline
from ..definitions.profiles import BenchSettings, get_profile
from ..reading import costs
from ..training.data import Split
from ..training.graphed import graph_blocker
from ..training.models import create_student, create_teacher, pil_transform
from ..training.precision import autocast_for, compute_dtype
from ..training.runs import step_loss
from ..training.teaching import CACHE_DTYPE, CachedTeachers, OnlineTeachers, TeacherLogitCache, prepare_teacher, \
    teacher_forward
from ..training.train import FitConfig, TrainStep, configure_threads, evaluate, prepare_training, resolve_device
from ..training.views import apply_views, random_views

WORKERS = (2, 4)        # the authors' DataLoader workers: their notebook's 2 (cells 36, 51), and 4 for comparison
TIMER_WARMUP = 2        # untimed steps torch.utils.benchmark's Timer.timeit runs before its timed ones
NUM_CLASSES = 100
MEMORY_METHOD = {   # how a pipeline's peak memory is measured, by device type (the record says it)
    "cuda": "what each pipeline adds to the GPU memory while it is built and warmed up: "
            "torch.cuda.max_memory_allocated minus the memory allocated before (model, optimizer, caches, teachers, "
            "graph pool and peak activations; no CUDA context or allocator cache)",
    "cpu": "growth of the process's peak RSS (getrusage ru_maxrss, which cannot be reset) while each pipeline is "
           "built and warmed up: 0 when it stays below an earlier peak; DataLoader workers not included"}


@dataclass
class Pipeline:
    run: Callable[[int], Any]                        # run(steps): that many training steps
    passes: Callable[[], int] = lambda: 0            # teacher forward passes so far
    graphed: bool = False
    before_repeat: Callable[[], Any] = lambda: None  # untimed, before each timed repeat


def run_benchmark(device: str = "cpu", profile: str = "smoke", rows: list[str] | None = None, *,
                  repeats: int | None = None, out: Path | None = None, workers: tuple[int, ...] = WORKERS,
                  compile: bool = False, write: bool = True, config: dict[str, Any] | None = None,
                  command: str | None = None, **overrides: int) -> dict[str, Any]:
    """Time each row of `rows` (default: every Table 1 row) and the references; print the tables and write the record,
    which names the machine, the commit and `command`, as JSON to `out` (default results/<profile>/bench.json).
    `config` overrides RunConfig options (e.g. model_scale='tiny'); `overrides` replace BenchSettings fields."""
    if out is not None and (Path(out).suffix != ".json" or Path(out).is_dir()):   # checked now, not after timing
        raise ValueError(f"out={str(out)!r} must be a .json file path such as results/bench.json")
    selected = select_rows(rows, list(ROWS))
    if not workers or not all(is_count(w, 0) for w in workers):
        raise ValueError(f"workers={workers!r} must be DataLoader worker counts >= 0, e.g. (2, 4)")
    configure_threads()
    dev = resolve_device(device)
    dev = torch.device("cuda", torch.cuda.current_device()) if dev.type == "cuda" else dev
    s = bench_settings(profile, dev, repeats, **overrides)
    timing = _Timing(dev, s, profile, config or {}, compile)
    heaviest = timing.config(get_row(HEAVIEST))
    reference = {"plain": lambda: timing.ours(dataclasses.replace(heaviest, method="baseline", teachers=())),
                 "kd": lambda: timing.ours(heaviest)}
    if graph_blocker(dev, compile) is None:   # what the graph saves, where there is one
        reference["kd_eager"] = lambda: timing.ours(heaviest, graph=False)
    record = {"reference": {"pipelines": timing.time(reference)}, "rows": {}}
    for row in selected:
        cfg = timing.config(row)
        if cfg.teacher_input == "clean":
            builders = {"ours": lambda: timing.ours(cfg),
                        **{f"authors_{w}": lambda w=w: timing.authors(cfg, w) for w in workers}}
        else:
            builders = {"ours": lambda: timing.ours(cfg), **({"online": lambda: timing.ours(cfg, online=True)}
                                                              if cfg.teachers else {})}
        record["rows"][row.id] = {"label": row.label, "teachers": list(cfg.teachers),
                                  "pipelines": timing.time(builders)}
    record = _record(dev, heaviest, s, compile, command, workers, record, timing.eval_rate(heaviest),
                     timing.teacher_rates(heaviest))
    print("\n\n".join(table.text for table in costs.measured_tables(record)), flush=True)
    if write:
        out = Path(out) if out is not None else paths.results_home() / profile / "bench.json"
        files.write_json(out, record)
        print(f"wrote {out}", flush=True)
    return record


def bench_settings(profile: str, device: torch.device, repeats: int | None = None, **overrides: int) -> BenchSettings:
    """The defaults of (profile, device type), with `repeats` and `overrides` applied and checked."""
    spec = get_profile(profile)   # the profile check (and its message) of every other entry point
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device={device.type!r} cannot be benchmarked; use device='cpu' or 'cuda'")
    return spec.bench(device.type).checked(repeats=repeats, **overrides)


# ----------------------------------------------------------------------------- pipelines

class _Timing:
    """What every pipeline of one benchmark shares: the device, the sizes, the data, the teacher-logit caches."""

    def __init__(self, dev: torch.device, s: BenchSettings, profile: str, overrides: dict[str, Any], compile: bool):
        self.dev, self.s, self.profile, self.overrides, self.compile = dev, s, profile, overrides, compile
        torch.manual_seed(0)
        self.train = Split(torch.randint(0, 256, (s.train_images, 3, 32, 32), dtype=torch.uint8),
                           torch.randint(0, NUM_CLASSES, (s.train_images,)))
        self.caches: dict[str, TeacherLogitCache] = {}

    def config(self, row: Row) -> RunConfig:
        return row.config(self.profile, **self.overrides)

    def time(self, builders: dict[str, Callable[[], Pipeline]]) -> dict[str, dict[str, Any]]:
        """Build and warm up each pipeline (its memory), then time them, repeats interleaved; images/s is the median."""
        s, pipelines, memory = self.s, {}, {}
        for name, build in builders.items():
            before = _reset_peak_memory(self.dev)
            pipelines[name] = build()
            if s.warmup:
                pipelines[name].run(s.warmup)
            memory[name] = max(0.0, _peak_memory_mb(self.dev) - before)
        seconds: dict[str, list[float]] = {name: [] for name in pipelines}
        for _ in range(s.repeats):
            for name, pipeline in pipelines.items():
                pipeline.before_repeat()
                seconds[name].append(_time(pipeline.run, s.steps))
        seen = s.batch_size * (s.warmup + s.repeats * (s.steps + TIMER_WARMUP))
        timings = {name: {"images_per_s": s.batch_size / statistics.median(sec), "seconds": sec, "images_seen": seen,
                          "peak_memory_mb": memory[name], "graphed": p.graphed,
                          "teacher_passes_per_image": p.passes() / seen}
                   for (name, p), sec in zip(pipelines.items(), seconds.values())}
        del pipelines
        _free(self.dev)
        return timings

    def ours(self, cfg: RunConfig, graph: bool = True, online: bool = False) -> Pipeline:
        """fit's own TrainStep on random batches (indices and views drawn for every step ahead of time, on the
        device, as fit draws an epoch's), the row's teachers from random logit caches or online."""
        dev, s = self.dev, self.s
        fit_cfg = dataclasses.replace(FitConfig.of(cfg, dev), batch_size=s.batch_size, cuda_graph=graph,
                                      compile=self.compile)
        teachers = (OnlineTeachers([prepare_teacher(t, dev) for t in _teachers(cfg)], list(cfg.teachers),
                                   cfg.teacher_input, self.train.to(dev), cfg.precision) if online else
                    CachedTeachers([self.cache(cfg, name) for name in cfg.teachers], list(cfg.teachers), dev)
                    if cfg.teachers else None)
        model, optimizer, scaler = prepare_training(_student(cfg), fit_cfg)
        model.train()
        split, generator = self.train.to(dev), torch.Generator().manual_seed(0)
        step = TrainStep(model, optimizer, scaler, step_loss(cfg), split, fit_cfg, teachers)
        total = (s.warmup + s.repeats * (s.steps + TIMER_WARMUP)) * s.batch_size
        order = torch.randint(0, len(split), (total,), generator=generator).to(dev)
        views = random_views(total, cfg.views, generator).to(dev)
        at = [0]

        def run(steps: int) -> None:
            first = at[0] % total
            step.epoch(order[first:first + steps * s.batch_size], views[first:first + steps * s.batch_size])
            at[0] = first + steps * s.batch_size
        return Pipeline(run, lambda: teachers.forward_passes if teachers is not None else 0, step.graphed)

    def cache(self, cfg: RunConfig, name: str) -> TeacherLogitCache:
        """Teacher `name`'s logits, random (a lookup costs the same): one per image, or per student view."""
        views = cfg.views.count if cfg.teacher_input == "student_view" else 1
        key = f"{name}-{views}"
        if key not in self.caches:
            shape = (self.s.train_images, *([views] if views > 1 else []), NUM_CLASSES)
            self.caches[key] = TeacherLogitCache(Path("<in-memory>"), {
                "train": torch.randn(shape, device=self.dev).to(CACHE_DTYPE), "val": None, "test": None}, {})
        return self.caches[key]

    def authors(self, cfg: RunConfig, workers: int) -> Pipeline:
        """The authors' step for `cfg`'s row: host transforms in `workers` DataLoader workers, fp16 autocast with a
        GradScaler (fp32 on a CPU), AdamW's default (foreach), the row's teachers and `.item()` every step. Batches
        its workers prefetch while other pipelines are timed are dropped before each timed repeat, so its timed steps
        wait for their data as an epoch's do."""
        dev, s, v = self.dev, self.s, cfg.views
        student_tf = pil_transform(InputPipeline(v.resize or None, v.crop, "bicubic", STUDENT_PIPELINE.mean,
                                                 STUDENT_PIPELINE.std), train=True, pad=v.pad)
        teachers = _teachers(cfg)
        dataset = AuthorsCIFAR(self.train, student_tf, [pil_transform(t.pipeline) for t in teachers])
        in_flight = 2 * workers   # DataLoader's default prefetch_factor 2 per worker
        total = (s.warmup + s.repeats * (s.steps + TIMER_WARMUP + in_flight)) * s.batch_size   # one iterator
        sampler = torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=total,
                                                 generator=torch.Generator().manual_seed(0))
        with warnings.catch_warnings():   # "more workers than this machine suggests": the authors' count is the point
            warnings.filterwarnings("ignore", message=".*worker processes in total.*")
            batches = iter(torch.utils.data.DataLoader(dataset, s.batch_size, sampler=sampler, num_workers=workers,
                                                       pin_memory=dev.type == "cuda", drop_last=True))
        net = _student(cfg).net.to(dev).train()   # the bare networks: the host did the resizing and normalizing
        nets = [t.net.to(dev).eval().requires_grad_(False) for t in teachers]
        optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        cuda, loss_fn = dev.type == "cuda", step_loss(cfg)
        scaler = torch.amp.GradScaler(dev.type, enabled=cuda)
        counter = {"passes": 0, "loss": 0.0}

        def run(steps: int) -> None:
            for _ in range(steps):
                images, teacher_images, labels = next(batches)
                images, labels = images.to(dev, non_blocking=True), labels.to(dev, non_blocking=True)
                with torch.autocast(dev.type, dtype=torch.float16, enabled=cuda):
                    logits = net(images)
                    with torch.no_grad():
                        teacher_logits = torch.stack([t(x.to(dev, non_blocking=True)) for t, x in
                                                      zip(nets, teacher_images)]).float() if nets else None
                counter["passes"] += len(nets) * len(labels)
                loss, _ = loss_fn(logits.float(), teacher_logits, labels)
                optimizer.zero_grad()
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                counter["loss"] += loss.item()   # per-step logging: a host sync every step
        return Pipeline(run, lambda: counter["passes"], before_repeat=lambda: [next(batches) for _ in range(in_flight)])

    def eval_rate(self, cfg: RunConfig) -> dict[str, Any]:
        model, _, _ = prepare_training(_student(cfg), FitConfig.of(cfg, self.dev))
        n = self.s.eval_batch_size
        split = Split(self.train.images[:n], self.train.labels[:n]).to(self.dev)
        autocast, dtype = autocast_for(self.dev, cfg.precision), compute_dtype(cfg.precision)
        return _measure(lambda steps: [evaluate(model, split, cfg.views, self.s.eval_batch_size, autocast, dtype)
                                       for _ in range(steps)], self.s, len(split))

    def teacher_rates(self, cfg: RunConfig) -> dict[str, dict[str, Any]]:
        """Each manifest teacher's cache-build step: a batch of clean images (or student views), one forward."""
        s, images, generator, rates = self.s, self.train.images.to(self.dev), torch.Generator().manual_seed(0), {}
        for name in sorted(teachers_used()):
            model = prepare_teacher(_teachers(cfg, (name,))[0], self.dev)

            def run(steps: int, model: nn.Module = model) -> None:
                for _ in range(steps):
                    index = torch.randint(0, len(images), (s.teacher_batch_size,), generator=generator).to(self.dev)
                    batch = (images[index] if cfg.teacher_input == "clean" else
                             apply_views(images[index], random_views(len(index), cfg.views, generator), cfg.views))
                    teacher_forward(model, batch, cfg.precision)
            rates[name] = _measure(run, s, s.teacher_batch_size)
            del model
            _free(self.dev)
        return rates


class AuthorsCIFAR(torch.utils.data.Dataset):
    """torchvision's CIFAR100 item (HWC uint8 -> PIL image) through the student's train transform and each
    teacher's own eval transform, on the host, as the authors' code does."""

    def __init__(self, split: Split, student: Callable, teachers: list[Callable]):
        self.data = split.images.permute(0, 2, 3, 1).contiguous().numpy()
        self.targets = split.labels.tolist()
        self.student, self.teachers = student, teachers

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Tensor, list[Tensor], int]:
        from PIL import Image
        image = Image.fromarray(self.data[i])
        return self.student(image), [t(image) for t in self.teachers], self.targets[i]


def _student(cfg: RunConfig) -> nn.Module:
    torch.manual_seed(0)
    return create_student(cfg.student, NUM_CLASSES, cfg.model_scale)


def _teachers(cfg: RunConfig, names: tuple[str, ...] | None = None) -> list[nn.Module]:
    torch.manual_seed(0)   # random weights: a forward pass costs the same
    return [create_teacher(name, NUM_CLASSES, cfg.model_scale) for name in names or cfg.teachers]


# ----------------------------------------------------------------------------- the GPU check

def check(device: str = "auto", profile: str = "paper", out: Path | None = None, *, rows: list[str] | None = None,
          compared_steps: int | None = None, epochs_images: int | None = None, command: str | None = None,
          **bench: Any) -> dict[str, Any]:
    """What a lent GPU must confirm, in one record (default book/measurements/<gpu>-check.json): the per-row benchmark
    of `profile`, graphed against eager training over `compared_steps` steps in fp16 and in bf16, the fp16 overflow
    (skipped step, halved scale; graphed and eager), and two epochs of the heaviest row on `epochs_images` generated
    CIFAR-shaped images with randomly initialised teachers. On a CPU, with small sizes, a dry run of the same code."""
    record = run_benchmark(device, profile, rows, write=False, command=command, **bench)
    dev = torch.device(record["device"])
    compared_steps = compared_steps or (300 if dev.type == "cuda" else 10)
    epochs_images = epochs_images or (60_000 if dev.type == "cuda" else 600)
    record["graphed_vs_eager"] = {p: graphed_against_eager(dev, p, compared_steps) for p in ("fp16", "bf16")}
    record["overflow"] = ({mode: fp16_overflow(dev, mode == "graphed") for mode in ("eager", "graphed")}
                          if dev.type == "cuda" else "needs CUDA: a CPU runs fp16 as fp32, without a gradient scaler")
    record["two_epochs"] = two_epochs(profile, epochs_images, **bench.get("config", {}))
    name = record["machine"]["device_name"].lower().replace(" ", "-").replace("/", "-")
    out = Path(out) if out is not None else paths.BOOK / "measurements" / f"{name}-check.json"
    files.write_json(out, record)
    print(f"wrote {out}", flush=True)
    return record


def _tiny_step(dev: torch.device, precision: str, graph: bool) -> tuple[TrainStep, torch.amp.GradScaler, list]:
    """The consistent profile's tiny student with a 162-view cache of three teachers: a step of 16 images."""
    from ..definitions.profiles import profile_config

    config = profile_config("consistent", method=get_row(HEAVIEST).params["method"], model_scale="tiny",
                            teacher_weights="train", precision=precision, teachers=get_row(HEAVIEST).params["teachers"])
    cfg = dataclasses.replace(FitConfig.of(config, dev), batch_size=16, cuda_graph=graph)
    g = torch.Generator().manual_seed(0)
    train = Split(torch.randint(0, 256, (128, 3, 32, 32), generator=g, dtype=torch.uint8),
                  torch.randint(0, NUM_CLASSES, (128,), generator=g)).to(dev)
    caches = [TeacherLogitCache(Path("<in-memory>"), {"train": torch.randn(128, 162, NUM_CLASSES, generator=g)
                                                      .to(CACHE_DTYPE).to(dev), "val": None, "test": None}, {})
              for _ in config.teachers]
    torch.manual_seed(0)
    model, optimizer, scaler = prepare_training(create_student(config.student, NUM_CLASSES, "tiny"), cfg)
    step = TrainStep(model, optimizer, scaler, step_loss(config), train,
                     cfg, CachedTeachers(caches, list(config.teachers), dev))
    batches = [(torch.randperm(128, generator=g)[:16].to(dev), random_views(16, cfg.views, g).to(dev))
               for _ in range(2000)]
    return step, scaler, batches


def graphed_against_eager(dev: torch.device, precision: str, steps: int = 300) -> dict[str, Any]:
    """The same `steps` one-batch epochs trained graphed and eagerly: the largest loss difference, and the rates."""
    losses, rates = {}, {}
    for mode in ("eager", "graphed"):
        step, _, batches = _tiny_step(dev, precision, graph=mode == "graphed")
        run = [step.epoch(*batches[i % len(batches)])["loss"] / 16 for i in range(steps)]
        losses[mode] = torch.stack(run).float().cpu()
        rates[mode] = 16 / _time(lambda n: [step.epoch(*batches[i % len(batches)]) for i in range(n)], 20)
        rates[f"{mode}_is_graphed"] = step.graphed
    difference = (losses["graphed"] - losses["eager"]).abs()
    return {"steps": steps, "max_abs_loss_difference": float(difference.max()), "finite": bool(
        torch.isfinite(losses["graphed"]).all()), "first_loss": float(losses["eager"][0]),
            "last_loss": {mode: float(losses[mode][-1]) for mode in losses}, "images_per_s": rates}


def fp16_overflow(dev: torch.device, graph: bool) -> dict[str, Any]:
    """A step whose scaled loss overflows float32 (every gradient inf): whether it changed no weight, and the gradient
    scaler's scale before and after it (halved) and its growth tracker (reset), eagerly or replayed as a graph."""
    from ..training.graphed import WARMUP_STEPS

    step, scaler, batches = _tiny_step(dev, "fp16", graph)
    for order, views in batches[:WARMUP_STEPS + 2]:     # eager warm-up, then (graphed) the capture and a replay
        step.epoch(order, views)
    scaler._scale.fill_(3e38)                             # x a loss of about 4.6: beyond float32's 3.4e38
    weights = [p.detach().clone() for p in step.forward.parameters()]
    step.epoch(*batches[WARMUP_STEPS + 2])
    return {"graphed": step.graphed, "weights_unchanged": all(torch.equal(a, b.detach()) for a, b in
                                                              zip(weights, step.forward.parameters())),
            "scale_before": 3e38, "scale_after": scaler.get_scale(), "growth_tracker": int(scaler._growth_tracker)}


def two_epochs(profile: str, images: int, **overrides: Any) -> dict[str, Any]:
    """Two epochs of the heaviest row, through load_or_train (the cache build, the step, the evaluation), on generated
    data, in homes of its own; published teachers are replaced by randomly initialised ones of the same architecture,
    read from a local folder as published weights would be (a GPU machine may be offline)."""
    from ..training.models import PRETRAINED_DIR_ENV
    from ..training.runs import load_or_train

    config = get_row(HEAVIEST).config(profile, **{**overrides, "dataset": "synthetic", "synthetic_size": images,
                                                  "epochs": 2, "patience": 0})
    with tempfile.TemporaryDirectory(prefix="cakd-check-") as home, mock.patch.dict(os.environ, {
            paths.RESULTS_ENV: f"{home}/results", paths.CACHE_ENV: f"{home}/cache", PRETRAINED_DIR_ENV: home}):
        if config.teacher_weights == "public":
            for name, teacher in zip(config.teachers, _teachers(config)):
                torch.save(teacher.net.state_dict(), Path(home) / f"{name}.pth")
        run = load_or_train(config)
    return {"row": HEAVIEST, "images": images, **{k: run.metrics[k] for k in ("epochs", "train_seconds", "device")},
            "seconds_per_epoch": run.metrics["train_seconds"] / run.metrics["epochs"],
            "cache_build_passes": run.metrics.get("cache_build_passes", 0), "losses": [h["loss"] for h in run.history]}


# ----------------------------------------------------------------------------- timing, memory, record

def _time(run: Callable[[int], Any], steps: int) -> float:
    """Seconds per step over `steps` run(1) calls, by torch.utils.benchmark's Timer (which first runs
    TIMER_WARMUP untimed steps and synchronizes CUDA around the timed ones), at this process's thread count."""
    # torch.utils.benchmark imports cpp_extension, which logs that a CPU build has no CUDA runtime: nothing to us
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils import benchmark

    return benchmark.Timer("run(1)", globals={"run": run}, num_threads=torch.get_num_threads()).timeit(steps).median


def _measure(run: Callable[[int], Any], s: BenchSettings, images_per_step: int) -> dict:
    """Median images/s of a side measurement (eval, teachers): up to 3 timed repeats of 2 steps."""
    seconds = [_time(run, min(s.steps, 2)) for _ in range(min(s.repeats, 3))]
    return {"images_per_s": images_per_step / statistics.median(seconds), "seconds": seconds}


def _reset_peak_memory(device: torch.device) -> float:
    """The baseline of the next peak (MB): CUDA resets its peak counter; a process's peak RSS cannot be reset."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20
    return _peak_memory_mb(device)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # KiB on Linux, bytes on macOS
    return maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _machine(device: torch.device) -> dict[str, Any]:
    name = (torch.cuda.get_device_name(device) if device.type == "cuda" else
            f"{platform.machine()} CPU ({torch.backends.cpu.get_cpu_capability()})")
    return {"device_name": name, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "cuda": torch.version.cuda if device.type == "cuda" else None,
            "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None}


def _commit() -> str | None:
    """The repository's commit, '+changes' when the tree differs from it; None outside a git checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=paths.ROOT, capture_output=True, text=True, check=True).stdout
    try:
        changes = "+changes" if git("status", "--porcelain").strip() else ""
        return git("rev-parse", "--short", "HEAD").strip() + changes
    except (OSError, subprocess.CalledProcessError):
        return None


def _record(device: torch.device, cfg: RunConfig, s: BenchSettings, compile: bool, command: str | None,
            workers: tuple[int, ...], timed: dict[str, Any], eval_timing: dict, teacher_timings: dict
            ) -> dict[str, Any]:
    """The benchmark's JSON record: what was timed, where, from which commit and command, and the ratios."""
    targets = get_profile(cfg.profile).bench_targets
    for row in [timed["reference"], *timed["rows"].values()]:
        rate = {name: p["images_per_s"] for name, p in row["pipelines"].items()}
        row["ratios"] = {**{f"ours/authors ({w} workers)": rate["ours"] / rate[f"authors_{w}"]
                            for w in workers if "ours" in rate and f"authors_{w}" in rate},
                         **({"cached/online": rate["ours"] / rate["online"]} if "online" in rate else {}),
                         **({"KD/plain": rate["kd"] / rate["plain"]} if "kd" in rate else {}),
                         **({"graphed/eager": rate["kd"] / rate["kd_eager"]} if "kd_eager" in rate else {})}
        row["targets"] = {name: {"target": t, "met": row["ratios"][name] >= t}
                          for name, t in targets.items() if name in row["ratios"]}
    return {"schema": 3, "profile": cfg.profile, "device": device.type, "commit": _commit(),
            "command": command or f"cakd.orchestration.bench.run_benchmark({device.type!r}, {cfg.profile!r})",
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": _machine(device),
            "settings": dataclasses.asdict(s) | {"compile": compile, "workers": list(workers)},
            "config": {"student": cfg.student, "model_scale": cfg.model_scale, "views": cfg.views.describe(),
                       "teacher_input": cfg.teacher_input, "precision": cfg.precision},
            "memory_method": MEMORY_METHOD[device.type], **timed, "student_eval": eval_timing,
            "teacher_forward": teacher_timings}
