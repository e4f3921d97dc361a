"""Benchmark: the optimized training pipeline against a naive one, and what KD costs (DESIGN sections 3, 5, 6).

Four pipelines on the same models and image shapes, timed in one process: (1) the plain student, (2) KD from
the teacher-logit cache and (3) KD with live teachers, all three through `train.train_epoch` (uint8 data on the
device, batched augmentation, fused AdamW, bf16 + channels_last on CUDA); (4) what typical KD code does: a
DataLoader of PIL images with torchvision transforms on the host, fp32, teachers every step, `.item()` every step.
"""
from __future__ import annotations

import dataclasses
import gc
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import files, paths
from .cache import CACHE_DTYPE, CachedTeachers, OnlineTeachers, TeacherLogitCache
from .config import CIFAR100_MEAN, CIFAR100_STD, PROFILE_DEFAULTS, SPLIT_FRACTIONS, profile_config
from .data import NUM_VIEWS, Split, apply_views, random_views
from .manifest import D, R, V, all_rows
from .models import create_student, create_teacher
from .train import StepLoss, configure_threads, evaluate, prepare_training, resolve_device, student_loss, train_epoch

PIPELINES = {  # name -> what it is (the printed table's first column)
    "plain": "(1) student alone, optimized",
    "kd_cached": "(2) KD, 3 teachers, cached logits",
    "kd_online": "(3) KD, 3 teachers online",
    "naive": "(4) naive: DataLoader+PIL, fp32, 3 online, .item()",
}
KD_TEACHERS = (D, R, V)        # the Method 1-3 rows' teachers
KD_METHOD = "adaptive_alpha"   # Method 3; the other multi-teacher losses cost the same few [K,B,C] ops
TARGETS = {"kd_cached/plain": 0.9, "kd_cached/naive": 5.0}   # reported, never asserted
NUM_CLASSES = 100
TRAIN_IMAGES = 50_000 * SPLIT_FRACTIONS[0] // (SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1])   # 45,000
EVAL_IMAGES = 5_000 + 10_000   # val + test, evaluated every epoch


@dataclass
class Pipeline:
    run: Callable[[int], Any]                      # run(steps): that many training steps
    teacher_passes: Callable[[], int]              # teacher forward passes so far
    forward: Callable[[Tensor], Tensor]            # the student (compiled or not)
    autocast: Any = None
    before_repeat: Callable[[], Any] = lambda: None   # untimed, before each timed repeat


@dataclass(frozen=True)
class BenchSettings:
    batch_size: int           # images per training step (the profile's batch on CUDA; small for ViT-B on a CPU)
    steps: int                # steps per timed repeat
    warmup: int               # untimed steps first: allocator, cuDNN autotuning, torch.compile
    repeats: int              # timed repeats; images/s is their median
    train_images: int         # images in the data split and in each teacher's logit cache
    teacher_batch_size: int   # batch of the teacher-throughput timing (the cache build's 2048 on CUDA)
    eval_batch_size: int
    naive_workers: int        # DataLoader worker processes of the naive pipeline (typical code: 2-4)


_WORKERS = min(4, os.cpu_count() or 1)
DEFAULTS: dict[tuple[str, str], BenchSettings] = {
    ("smoke", "cpu"): BenchSettings(32, 5, 2, 9, 2048, 256, 1024, _WORKERS),
    ("smoke", "cuda"): BenchSettings(128, 20, 5, 5, TRAIN_IMAGES, 2048, 1024, _WORKERS),
    # ViT-B/16 at 224 on a CPU: a few images a second, so a batch of 8 and few steps
    ("paper", "cpu"): BenchSettings(8, 2, 1, 3, 1024, 8, 256, _WORKERS),
    ("paper", "cuda"): BenchSettings(128, 20, 5, 5, TRAIN_IMAGES, 2048, 1024, _WORKERS),
}


def run_benchmark(device: str = "cpu", profile: str = "smoke", repeats: int | None = None, out: Path | None = None,
                  *, compile: bool = False, write: bool = True, **overrides: int) -> dict[str, Any]:
    """Time the four pipelines and the teachers' forward passes; print a table, write JSON (+ markdown) to `out`.

    `overrides` replace BenchSettings fields (batch_size, steps, warmup, train_images, ...). Returns the record
    written to `out` (default results/<profile>/bench.json; bench.md beside it).
    """
    if out is not None and (Path(out).suffix != ".json" or Path(out).is_dir()):   # checked now, not after the timing
        raise ValueError(f"out={str(out)!r} must be a .json file path such as results/bench.json "
                         "(bench.md is written beside it)")
    configure_threads()
    dev = resolve_device(device)
    s = bench_settings(profile, dev, repeats, **overrides)
    config = profile_config(profile, method=KD_METHOD, teachers=KD_TEACHERS)
    kd_loss, opt = student_loss(KD_METHOD, config.to_dict()), dict(lr=config.lr, weight_decay=config.weight_decay)
    torch.manual_seed(0)
    train = Split(torch.randint(0, 256, (s.train_images, 3, 32, 32), dtype=torch.uint8),
                  torch.randint(0, NUM_CLASSES, (s.train_images,)))

    def student() -> nn.Module:
        torch.manual_seed(0)
        return create_student(config.student, NUM_CLASSES, config.model_scale)

    def teachers() -> list[nn.Module]:
        torch.manual_seed(0)
        return [create_teacher(n, NUM_CLASSES, config.model_scale, pretrained=False).to(dev) for n in KD_TEACHERS]

    def plain() -> Pipeline:
        return _library_pipeline(student(), train, student_loss("baseline", config.to_dict()), s, dev, compile, **opt)

    def kd_cached() -> Pipeline:
        caches = [TeacherLogitCache(Path("<in-memory>"), {   # random fp16 logits: a lookup costs the same
            "train": torch.randn(s.train_images, NUM_VIEWS, NUM_CLASSES, dtype=CACHE_DTYPE, device=dev),
            "val": torch.empty(0, NUM_CLASSES), "test": torch.empty(0, NUM_CLASSES)}, {}) for _ in KD_TEACHERS]
        return _library_pipeline(student(), train, kd_loss, s, dev, compile,
                                 teachers=CachedTeachers(caches, list(KD_TEACHERS)), **opt)

    def kd_online() -> Pipeline:
        online = OnlineTeachers(teachers(), list(KD_TEACHERS), _teacher_autocast(dev))
        return _library_pipeline(student(), train, kd_loss, s, dev, compile, teachers=online, **opt)

    def naive() -> Pipeline:
        return _naive_pipeline(student(), teachers(), train, kd_loss, s, dev, **opt)

    # Build and warm up each pipeline alone (its memory), then time them in interleaved rounds, so that
    # background load on a shared machine hits every pipeline alike and the ratios stay fair.
    pipelines, memory = {}, {}
    for name, build in (("plain", plain), ("kd_cached", kd_cached), ("kd_online", kd_online), ("naive", naive)):
        before = _reset_peak_memory(dev)
        pipelines[name] = build()
        if s.warmup:
            pipelines[name].run(s.warmup)
        memory[name] = _peak_memory_mb(dev) - before
    seconds: dict[str, list[float]] = {name: [] for name in pipelines}
    for _ in range(s.repeats):
        for name, pipeline in pipelines.items():
            pipeline.before_repeat()
            seconds[name].append(_time(pipeline.run, s.steps, dev))
    seen = s.batch_size * (s.warmup + s.repeats * s.steps)
    timings = {name: {"images_per_s": s.batch_size * s.steps / statistics.median(seconds[name]),
                      "seconds": seconds[name], "images_seen": seen, "peak_memory_mb": memory[name],
                      "teacher_passes_per_image": p.teacher_passes() / seen} for name, p in pipelines.items()}

    forward, autocast = pipelines["plain"].forward, pipelines["plain"].autocast
    del pipelines
    _free(dev)
    eval_split = Split(train.images[:s.eval_batch_size], train.labels[:s.eval_batch_size]).to(dev)
    eval_timing = _measure(lambda steps: [evaluate(forward, eval_split, s.eval_batch_size, autocast)
                                          for _ in range(steps)], s, dev, len(eval_split))
    del forward
    teacher_timings = {}   # the cache build's inner step: apply_views + one teacher's forward, at its batch size
    for name in _distinct_teachers():
        torch.manual_seed(0)
        model = create_teacher(name, NUM_CLASSES, config.model_scale, pretrained=False).to(dev)
        teacher_timings[name] = _measure(_teacher_pipeline(model, name, train, s, dev), s, dev, s.teacher_batch_size)
        del model
        _free(dev)

    result = _record(dev, profile, s, compile, timings, eval_timing, teacher_timings)
    print(format_markdown(result))
    if write:
        out = Path(out) if out is not None else paths.results_home() / profile / "bench.json"
        files.write_json(out, result)
        files.write_text(out.with_suffix(".md"), format_markdown(result))
        print(f"\nwrote {out} and {out.with_suffix('.md')}")
    return result


def bench_settings(profile: str, device: torch.device, repeats: int | None = None,
                   **overrides: int) -> BenchSettings:
    """The defaults of (profile, device type), with `repeats` and `overrides` applied and checked."""
    profile_config(profile)   # the profile check (and its message) of every other entry point
    if (profile, device.type) not in DEFAULTS:
        raise ValueError(f"device={device.type!r} cannot be benchmarked; use device='cpu' or 'cuda'")
    names = [f.name for f in dataclasses.fields(BenchSettings)]
    if unknown := sorted(set(overrides) - set(names)):
        raise ValueError(f"unknown benchmark setting(s) {unknown}; known settings are {names}")
    settings = dataclasses.replace(DEFAULTS[(profile, device.type)], **overrides,
                                   **({"repeats": repeats} if repeats is not None else {}))
    for name in names:
        value, low = getattr(settings, name), 0 if name in ("warmup", "naive_workers") else 1
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"benchmark setting {name}={value!r} must be an integer >= {low}")
    return settings


def estimate_table1(images_per_s: dict[str, float], teacher_images_per_s: dict[str, float],
                    eval_images_per_s: float) -> dict[str, Any]:
    """Seconds to train every manifest run (paper profile: 100 epochs of 45,000 images), build the teacher caches
    (45,000 x 162 views + 15,000 val/test images per distinct teacher) and fine-tune the teachers.

    KD rows use the 3-teacher cached-KD throughput whatever their K (a cache lookup costs next to nothing);
    fine-tuning assumes a training step costs 3 forward passes (a rule of thumb, not measured).
    """
    paper = PROFILE_DEFAULTS["paper"]
    epochs, teacher_epochs = paper["epochs"], paper["teacher_epochs"]
    eval_s = epochs * EVAL_IMAGES / eval_images_per_s
    runs, online_s = {}, 0.0
    for row in all_rows():
        names = row.params.get("teachers", [])
        rate = images_per_s["kd_cached"] if names else images_per_s["plain"]
        runs[row.id] = epochs * TRAIN_IMAGES / rate + eval_s
        # online alternative: the plain student step plus each teacher's forward, every step
        online_s += epochs * TRAIN_IMAGES * (1 / images_per_s["plain"] +
                                             sum(1 / teacher_images_per_s[n] for n in names)) + eval_s
    cache_passes = TRAIN_IMAGES * NUM_VIEWS + EVAL_IMAGES
    cache_s = {n: cache_passes / teacher_images_per_s[n] for n in _distinct_teachers()}
    finetune_s = {n: teacher_epochs * (3 * TRAIN_IMAGES + EVAL_IMAGES) / teacher_images_per_s[n]
                  for n in _distinct_teachers()}
    online_passes = sum(epochs * TRAIN_IMAGES * len(r.params.get("teachers", [])) for r in all_rows())
    total = sum(runs.values()) + sum(cache_s.values()) + sum(finetune_s.values())
    return {"runs": len(runs), "student_runs_s": runs, "student_total_s": sum(runs.values()),
            "cache_build_s": cache_s, "cache_build_total_s": sum(cache_s.values()),
            "cache_teacher_passes": cache_passes * len(cache_s), "teacher_finetune_s": finetune_s,
            "teacher_finetune_total_s": sum(finetune_s.values()), "total_s": total,
            "online_alternative_student_total_s": online_s, "online_alternative_teacher_passes": online_passes,
            "online_alternative_total_s": online_s + sum(finetune_s.values())}


def format_markdown(result: dict[str, Any]) -> str:
    """The benchmark as markdown tables: printed by the CLI, written to bench.md for the book."""
    m, s = result["machine"], result["settings"]
    lines = [f"Benchmark, profile `{result['profile']}` on {m['device_name']} ({result['device']}), "
             f"torch {m['torch']}, {m['threads']} threads, batch {s['batch_size']}, median of {s['repeats']} "
             f"x {s['steps']} steps, {result['created']}.", "",
             "| pipeline | images/s | teacher passes / image | peak memory (MB) |", "|---|---:|---:|---:|"]
    for name, label in PIPELINES.items():
        p = result["pipelines"][name]
        lines.append(f"| {label} | {p['images_per_s']:,.1f} | {p['teacher_passes_per_image']:g} | "
                     f"{p['peak_memory_mb']:,.0f} |")
    lines += ["", f"Peak memory: {result['memory_method']}.", "", "| ratio | value | target |", "|---|---:|---|"]
    for name, value in result["ratios"].items():
        target = result["targets"].get(name)
        verdict = f">= {target['target']:g}: {'met' if target['met'] else 'NOT met'}" if target else ""
        lines.append(f"| {name} | {value:.2f} | {verdict} |")
    lines += ["", "| teacher (cache build step) | images/s |", "|---|---:|"]
    lines += [f"| {n} | {t['images_per_s']:,.1f} |" for n, t in result["teacher_forward"].items()]
    e = result["table1_estimate"]
    hours = lambda seconds: f"{seconds / 3600:,.1f} h"
    lines += ["", f"Whole Table 1 ({e['runs']} runs + caches + teachers): {e['basis']}", "",
              "| part | time |", "|---|---:|",
              f"| {e['runs']} student runs (100 epochs x 45,000 images, eval each epoch) | "
              f"{hours(e['student_total_s'])} |",
              f"| logit caches: {len(e['cache_build_s'])} teachers x 45,000 x 162 views | "
              f"{hours(e['cache_build_total_s'])} |",
              f"| teacher fine-tuning, 5 epochs (rule of thumb: 3 forward passes per image) | "
              f"{hours(e['teacher_finetune_total_s'])} |",
              f"| **total** | **{hours(e['total_s'])}** |",
              f"| for comparison: online teachers in every KD row instead of caches | "
              f"{hours(e['online_alternative_total_s'])} |"]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- pipelines

def _library_pipeline(student: nn.Module, train: Split, step_loss: StepLoss, s: BenchSettings, device: torch.device,
                      compile: bool, *, lr: float, weight_decay: float, teachers=None) -> Pipeline:
    """Pipelines 1-3: `train_epoch` (fit's own loop body) over `steps` random batches at a time."""
    model, optimizer, autocast = prepare_training(student, device, lr, weight_decay)
    model.train()
    forward = torch.compile(model) if compile else model
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    split, generator = train.to(device), torch.Generator().manual_seed(0)

    def run(steps: int) -> None:
        n = steps * s.batch_size   # as fit: order and views drawn on the CPU, moved once per chunk
        order = torch.randint(0, len(split), (n,), generator=generator).to(device)
        train_epoch(forward, optimizer, scheduler, step_loss, split, order, random_views(n, generator).to(device),
                    s.batch_size, teachers=teachers, autocast=autocast)
    return Pipeline(run, lambda: teachers.forward_passes if teachers is not None else 0, forward, autocast)


class NaiveCIFAR(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR100 does per item: HWC uint8 array -> PIL image -> transforms."""

    def __init__(self, split: Split, transform: Callable):
        self.data = split.images.permute(0, 2, 3, 1).contiguous().numpy()
        self.targets = split.labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        from PIL import Image
        return self.transform(Image.fromarray(self.data[i])), self.targets[i]


def _naive_pipeline(student: nn.Module, teachers: list[nn.Module], train: Split, step_loss: StepLoss,
                    s: BenchSettings, device: torch.device, *, lr: float, weight_decay: float) -> Pipeline:
    """Pipeline 4, a typical KD script: host-side PIL augmentation, fp32, every teacher every step, .item().

    Its workers keep loading while the other pipelines are timed; the batches they prefetched meanwhile are
    dropped before each timed repeat, so that its timed steps wait for their data as an epoch's steps do.
    """
    from torchvision import transforms as T

    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(CIFAR100_MEAN, CIFAR100_STD)])
    dataset = NaiveCIFAR(train, transform)
    in_flight = 2 * s.naive_workers   # DataLoader's default prefetch_factor 2 per worker
    total = (s.warmup + s.repeats * (s.steps + in_flight)) * s.batch_size   # one iterator, all repeats:
    sampler = torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=total,   # no epoch restarts
                                             generator=torch.Generator().manual_seed(0))
    loader = torch.utils.data.DataLoader(dataset, s.batch_size, sampler=sampler, num_workers=s.naive_workers,
                                         pin_memory=device.type == "cuda", drop_last=True)
    batches = iter(loader)
    net = student.net.to(device).train()   # the same networks, fed float tensors instead of uint8
    nets = [(t.net.to(device).eval(), t.input_size) for t in teachers]
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    counter = {"passes": 0, "loss": 0.0}

    def run(steps: int) -> None:
        for _ in range(steps):
            images, labels = next(batches)
            images, labels = images.to(device), labels.to(device)
            logits = net(images)
            with torch.no_grad():   # each teacher resizes the batch to its own input size
                teacher_logits = torch.stack([t(images if size == images.shape[-1] else F.interpolate(
                    images, size=(size, size), mode="bilinear", align_corners=False)) for t, size in nets])
            counter["passes"] += len(nets) * len(images)
            loss, _ = step_loss(logits, teacher_logits, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            counter["loss"] += loss.item()   # typical per-step logging: a host sync every step
    return Pipeline(run, lambda: counter["passes"], net,
                    before_repeat=lambda: [next(batches) for _ in range(in_flight)])


def _teacher_pipeline(model: nn.Module, name: str, train: Split, s: BenchSettings, device: torch.device):
    """The cache build's step: a batch of (image, view) pairs augmented on the device, one teacher forward."""
    teacher = OnlineTeachers([model], [name], _teacher_autocast(device))
    images, generator = train.images.to(device), torch.Generator().manual_seed(0)

    def run(steps: int) -> None:
        for _ in range(steps):
            index = torch.randint(0, len(images), (s.teacher_batch_size,), generator=generator).to(device)
            views = random_views(s.teacher_batch_size, generator).to(device)
            teacher(index, views, apply_views(images[index], views))
    return run


# ----------------------------------------------------------------------------- timing, memory, record

def _time(run: Callable[[int], Any], steps: int, device: torch.device) -> float:
    """Seconds of run(steps): CUDA events on the GPU (after a sync, so no earlier work is counted)."""
    if device.type != "cuda":
        begin = time.perf_counter()
        run(steps)
        return time.perf_counter() - begin
    torch.cuda.synchronize(device)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    run(steps)
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1000


def _measure(run: Callable[[int], Any], s: BenchSettings, device: torch.device,
             images_per_step: int) -> dict[str, Any]:
    """Median images/s of a side measurement (eval, teachers): up to 3 timed run(2) after an untimed run(1)."""
    steps = min(s.steps, 2)
    if s.warmup:
        run(1)
    seconds = [_time(run, steps, device) for _ in range(min(s.repeats, 3))]
    return {"images_per_s": images_per_step * steps / statistics.median(seconds), "seconds": seconds}


def _reset_peak_memory(device: torch.device) -> float:
    """Reset the peak-memory counter; returns the memory in use now (MB), the baseline of the next peak."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20
    if _peak_rss_resettable():   # Linux: writing 5 to clear_refs resets VmHWM to the current RSS
        return _proc_status_mb("VmRSS")
    return _peak_memory_mb(device)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if Path("/proc/self/status").is_file():
        return _proc_status_mb("VmHWM")
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # KiB on Linux, bytes on macOS
    return maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024


def _proc_status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"/proc/self/status has no {key}")


def _peak_rss_resettable() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return Path("/proc/self/status").is_file()
    except OSError:
        return False


def _memory_method(device: torch.device) -> str:
    if device.type == "cuda":
        return ("what each pipeline adds to the GPU memory while it is built and warmed up: "
                "torch.cuda.max_memory_allocated minus the memory allocated before (its model, optimizer, "
                "caches, teachers and peak activations; tensors only, no CUDA context or allocator cache)")
    if _peak_rss_resettable():
        return ("what each pipeline adds to the process's resident memory while it is built and warmed up: "
                "peak RSS (VmHWM, reset through /proc/self/clear_refs) minus the RSS before; "
                "DataLoader worker processes not included")
    return ("growth of the process's peak RSS (resource.getrusage ru_maxrss, which cannot be reset) while "
            "each pipeline is built and warmed up: 0 when it stays below an earlier peak")


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _teacher_autocast(device: torch.device):
    """As teachers.teacher_logits and the cache build: bf16 on CUDA, fp32 on the CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else None


def _distinct_teachers() -> list[str]:
    return sorted({name for row in all_rows() for name in row.params.get("teachers", [])})


def _machine(device: torch.device) -> dict[str, Any]:
    import timm
    import torchvision

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        model_names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                       if line.startswith("model name")] if Path("/proc/cpuinfo").is_file() else []
        name = model_names[0] if model_names else platform.processor() or platform.machine()
    return {"device_name": name, "torch": torch.__version__, "timm": timm.__version__,
            "torchvision": torchvision.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(), "cpu_count": os.cpu_count(),
            "cuda": torch.version.cuda if device.type == "cuda" else None,
            "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None}


def _record(device: torch.device, profile: str, s: BenchSettings, compile: bool, timings: dict[str, dict],
            eval_timing: dict, teacher_timings: dict[str, dict]) -> dict[str, Any]:
    rate = {name: t["images_per_s"] for name, t in timings.items()}
    ratios = {f"{a}/{b}": rate[a] / rate[b] for a, b in (("kd_cached", "plain"), ("kd_cached", "naive"),
                                                         ("kd_online", "naive"), ("kd_online", "plain"))}
    estimate = estimate_table1(rate, {n: t["images_per_s"] for n, t in teacher_timings.items()},
                               eval_timing["images_per_s"])
    if profile != "paper":
        estimate["basis"] = "NOT an estimate: smoke-profile tiny models (rerun with --profile paper on a GPU)"
    elif device.type != "cuda":
        estimate["basis"] = "an extrapolation from paper-size models on this CPU, not GPU time"
    else:
        estimate["basis"] = "estimated from paper-size models measured on this GPU"
    return {"schema": 1, "profile": profile, "device": device.type,
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": _machine(device),
            "settings": dataclasses.asdict(s) | {"compile": compile, "kd_method": KD_METHOD,
                                                 "kd_teachers": list(KD_TEACHERS)},
            "memory_method": _memory_method(device),
            "pipelines": {name: timings[name] | {"label": PIPELINES[name]} for name in PIPELINES},
            "ratios": ratios,
            "targets": {name: {"target": target, "value": ratios[name], "met": ratios[name] >= target}
                        for name, target in TARGETS.items()},
            "student_eval": eval_timing,
            "teacher_forward": teacher_timings,
            "table1_estimate": estimate}

