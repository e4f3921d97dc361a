"""Benchmark: what users compare with, per profile, timed in one process on the same models and shapes.

Ours: uint8 data on the device, batched resize/crop/flip, cached teacher logits, the profile's precision, channels_last
and, where the precision allows, the training step as one CUDA graph (`train.train_epoch`). Against it: the plain
student step (what KD costs), the same KD step run eagerly (what the graph saves), and, by profile, the authors'
pipeline (teachers on the clean image: a DataLoader of PIL images with their transforms, fp16 + GradScaler, every
teacher online on its own transform every step, `.item()` every step) or online teachers on the student's view
(consistent profile). Repeats are interleaved, so background load hits every pipeline alike; images/s is the median. The
whole-Table-1 cost model built on these numbers is cakd.reading.costs'."""
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
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..definitions import files, paths
from ..definitions.config import RunConfig
from ..definitions.manifest import D, R50, V, teachers_used
from ..definitions.networks import STUDENT_PIPELINE, InputPipeline
from ..definitions.profiles import BenchSettings, get_profile
from ..reading import costs
from ..training.data import Split
from ..training.graphed import graph_blocker
from ..training.models import create_student, create_teacher, pil_transform
from ..training.precision import autocast_for, compute_dtype
from ..training.runs import step_loss as run_step_loss
from ..training.teaching import CACHE_DTYPE, CachedTeachers, OnlineTeachers, TeacherLogitCache, prepare_teacher, \
    teacher_forward
from ..training.train import FitConfig, TrainStep, configure_threads, evaluate, prepare_training, resolve_device
from ..training.views import apply_views, random_views

PIPELINES = {  # name -> what it is (the printed table's first column); each profile times some of them
    "plain": "(1) student alone, no teacher",
    "kd_cached": "(2) KD from cached teacher logits (ours)",
    "kd_cached_eager": "(3) KD from cached teacher logits, eager step",
    "kd_online": "(4) KD, teachers online on the student's view",
    "authors": "(5) the authors': DataLoader + PIL, fp16 + GradScaler, teachers online, .item()",
}
RATIOS = {"optimized/authors": ("kd_cached", "authors"), "KD/plain": ("kd_cached", "plain"),
          "graphed/eager": ("kd_cached", "kd_cached_eager"), "cached/online": ("kd_cached", "kd_online")}
KD_TEACHERS = (R50, D, V)      # the Method 1-3 rows' teachers
TIMER_WARMUP = 2              # untimed steps torch.utils.benchmark's Timer.timeit runs before its timed ones
KD_METHOD = "adaptive_alpha"   # Method 3; the other multi-teacher losses cost the same few [K,B,C] ops
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
    teacher_passes: Callable[[], int] = lambda: 0    # teacher forward passes so far
    graphed: bool = False
    before_repeat: Callable[[], Any] = lambda: None  # untimed, before each timed repeat


def run_benchmark(device: str = "cpu", profile: str = "smoke", repeats: int | None = None, out: Path | None = None,
                  *, compile: bool = False, write: bool = True, config: dict[str, Any] | None = None,
                  command: str | None = None, **overrides: int) -> dict[str, Any]:
    """Time the profile's pipelines, the teachers' forward pass and the student's evaluation; print a summary and write
    the record, which names the commit and `command` (the command line that asked for it), as JSON to `out` (default
    results/<profile>/bench.json). `config` overrides RunConfig options (e.g. model_scale='tiny'); `overrides` replace
    BenchSettings fields."""
    if out is not None and (Path(out).suffix != ".json" or Path(out).is_dir()):   # checked now, not after timing
        raise ValueError(f"out={str(out)!r} must be a .json file path such as results/bench.json")
    configure_threads()
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", torch.cuda.current_device())
    spec = get_profile(profile)
    s = bench_settings(profile, dev, repeats, **overrides)
    cfg = spec.config(method=KD_METHOD, teachers=list(KD_TEACHERS), **(config or {}))
    fit_cfg = dataclasses.replace(FitConfig.of(cfg, dev), batch_size=s.batch_size, compile=compile)
    kd_loss, plain_loss = run_step_loss(cfg), run_step_loss(dataclasses.replace(cfg, method="baseline", teachers=()))
    torch.manual_seed(0)
    train = Split(torch.randint(0, 256, (s.train_images, 3, 32, 32), dtype=torch.uint8),
                  torch.randint(0, NUM_CLASSES, (s.train_images,)))
    clean = cfg.teacher_input == "clean"
    views = 1 if clean else cfg.views.count
    caches: list[TeacherLogitCache] = []   # made by the first pipeline that reads them (its memory), then shared

    def cached() -> CachedTeachers:
        if not caches:   # random fp16 logits: a lookup costs the same
            shape = (s.train_images, *([views] if views > 1 else []), NUM_CLASSES)
            caches.extend(TeacherLogitCache(Path("<in-memory>"), {
                "train": torch.randn(shape, device=dev).to(CACHE_DTYPE), "val": torch.empty(0, NUM_CLASSES),
                "test": torch.empty(0, NUM_CLASSES)}, {}) for _ in KD_TEACHERS)
        return CachedTeachers(caches, list(KD_TEACHERS), dev)

    def ours(loss, teachers=None, graph=True) -> Callable[[], Pipeline]:
        return lambda: _ours(_student(cfg), train, loss, dataclasses.replace(fit_cfg, cuda_graph=graph), s,
                             teachers() if teachers else None)

    builders = {"plain": ours(plain_loss), "kd_cached": ours(kd_loss, cached)}
    if graph_blocker(dev, compile) is None:   # what the graph saves, where there is one
        builders["kd_cached_eager"] = ours(kd_loss, cached, graph=False)
    if clean:
        builders["authors"] = lambda: _authors(cfg, train, kd_loss, s, dev)
    else:
        builders["kd_online"] = ours(kd_loss, lambda: OnlineTeachers(
            [prepare_teacher(t, dev) for t in _teachers(cfg)], list(KD_TEACHERS), cfg.teacher_input, train.to(dev),
            cfg.precision))
    pipelines, memory = {}, {}
    for name, build in builders.items():   # built and warmed up one at a time: each one's memory
        before = _reset_peak_memory(dev)
        pipelines[name] = build()
        if s.warmup:
            pipelines[name].run(s.warmup)
        memory[name] = max(0.0, _peak_memory_mb(dev) - before)
    seconds: dict[str, list[float]] = {name: [] for name in pipelines}
    for _ in range(s.repeats):
        for name, pipeline in pipelines.items():
            pipeline.before_repeat()
            seconds[name].append(_time(pipeline.run, s.steps))
    seen = s.batch_size * (s.warmup + s.repeats * (s.steps + TIMER_WARMUP))
    timings = {name: {"label": PIPELINES[name], "images_per_s": s.batch_size / statistics.median(sec),
                      "seconds": sec, "images_seen": seen, "peak_memory_mb": memory[name], "graphed": p.graphed,
                      "teacher_passes_per_image": p.teacher_passes() / seen}
               for (name, p), sec in zip(pipelines.items(), seconds.values())}
    del pipelines
    _free(dev)
    result = _record(dev, cfg, s, compile, command, timings, _time_eval(cfg, fit_cfg, train, s, dev),
                     _time_teachers(cfg, train, s, dev))
    print("\n\n".join(table.text for table in costs.measured_tables(result)), flush=True)
    if write:
        out = Path(out) if out is not None else paths.results_home() / profile / "bench.json"
        files.write_json(out, result)
        print(f"wrote {out}", flush=True)
    return result


def bench_settings(profile: str, device: torch.device, repeats: int | None = None, **overrides: int) -> BenchSettings:
    """The defaults of (profile, device type), with `repeats` and `overrides` applied and checked."""
    spec = get_profile(profile)   # the profile check (and its message) of every other entry point
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device={device.type!r} cannot be benchmarked; use device='cpu' or 'cuda'")
    return spec.bench(device.type).checked(repeats=repeats, **overrides)


# ----------------------------------------------------------------------------- pipelines

def _ours(student: nn.Module, train: Split, step_loss: Callable, cfg: FitConfig, s: BenchSettings,
          teachers: Any = None) -> Pipeline:
    """fit's own TrainStep over `steps` random batches at a time (graphed on CUDA unless told not)."""
    dev = cfg.device
    model, optimizer, scaler = prepare_training(student, cfg)
    model.train()
    split, generator = train.to(dev), torch.Generator().manual_seed(0)
    step = TrainStep(model, optimizer, scaler, step_loss, split, cfg, teachers)

    def run(steps: int) -> None:
        n = steps * s.batch_size   # as fit: order and views drawn on the CPU, moved once per call
        order = torch.randint(0, len(split), (n,), generator=generator).to(dev)
        views = random_views(n, cfg.views, generator).to(dev)
        step.epoch(order, views)
    return Pipeline(run, lambda: teachers.forward_passes if teachers is not None else 0, step.graphed)


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


def _authors(cfg: RunConfig, train: Split, step_loss: Callable, s: BenchSettings, dev: torch.device) -> Pipeline:
    """The authors' step: host transforms in DataLoader workers, fp16 autocast + GradScaler (fp32 on a CPU), AdamW's
    default (foreach), every teacher and `.item()` every step. Batches its workers prefetch while the other pipelines
    are timed are dropped before each timed repeat, so its timed steps wait for their data as an epoch's do."""
    v = cfg.views
    student_tf = pil_transform(InputPipeline(v.resize or None, v.crop, "bicubic", STUDENT_PIPELINE.mean,
                                             STUDENT_PIPELINE.std), train=True, pad=v.pad)
    teachers = _teachers(cfg)
    dataset = AuthorsCIFAR(train, student_tf, [pil_transform(t.pipeline) for t in teachers])
    in_flight = 2 * s.loader_workers   # DataLoader's default prefetch_factor 2 per worker
    total = (s.warmup + s.repeats * (s.steps + TIMER_WARMUP + in_flight)) * s.batch_size   # one iterator
    sampler = torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=total,
                                             generator=torch.Generator().manual_seed(0))
    batches = iter(torch.utils.data.DataLoader(dataset, s.batch_size, sampler=sampler, num_workers=s.loader_workers,
                                               pin_memory=dev.type == "cuda", drop_last=True))
    net = _student(cfg).net.to(dev).train()   # the bare networks: the host did the resizing and normalizing
    nets = [t.net.to(dev).eval().requires_grad_(False) for t in teachers]
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    cuda = dev.type == "cuda"
    scaler = torch.amp.GradScaler(dev.type, enabled=cuda)
    counter = {"passes": 0, "loss": 0.0}

    def run(steps: int) -> None:
        for _ in range(steps):
            images, teacher_images, labels = next(batches)
            images, labels = images.to(dev, non_blocking=True), labels.to(dev, non_blocking=True)
            with torch.autocast(dev.type, dtype=torch.float16, enabled=cuda):
                logits = net(images)
                with torch.no_grad():
                    teacher_logits = torch.stack([t(x.to(dev, non_blocking=True))
                                                  for t, x in zip(nets, teacher_images)]).float()
            counter["passes"] += len(nets) * len(labels)
            loss, _ = step_loss(logits.float(), teacher_logits, labels)
            optimizer.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            counter["loss"] += loss.item()   # per-step logging: a host sync every step
    return Pipeline(run, lambda: counter["passes"], before_repeat=lambda: [next(batches) for _ in range(in_flight)])


def _student(cfg: RunConfig) -> nn.Module:
    torch.manual_seed(0)
    return create_student(cfg.student, NUM_CLASSES, cfg.model_scale)


def _teachers(cfg: RunConfig, names: tuple[str, ...] = KD_TEACHERS) -> list[nn.Module]:
    torch.manual_seed(0)   # random weights: a forward pass costs the same
    return [create_teacher(name, NUM_CLASSES, cfg.model_scale) for name in names]


def _time_teachers(cfg: RunConfig, train: Split, s: BenchSettings, dev: torch.device) -> dict[str, dict]:
    """Each distinct manifest teacher's cache-build step: a batch of clean images (or student views), one forward."""
    names = sorted(teachers_used())
    images, generator, timings = train.images.to(dev), torch.Generator().manual_seed(0), {}
    for name in names:
        model = prepare_teacher(_teachers(cfg, (name,))[0], dev)

        def run(steps: int, model: nn.Module = model) -> None:
            for _ in range(steps):
                index = torch.randint(0, len(images), (s.teacher_batch_size,), generator=generator).to(dev)
                batch = (images[index] if cfg.teacher_input == "clean" else
                         apply_views(images[index], random_views(len(index), cfg.views, generator), cfg.views))
                teacher_forward(model, batch, cfg.precision)
        timings[name] = _measure(run, s, dev, s.teacher_batch_size)
        del model
        _free(dev)
    return timings


def _time_eval(cfg: RunConfig, fit_cfg: FitConfig, train: Split, s: BenchSettings, dev: torch.device) -> dict:
    model, _, _ = prepare_training(_student(cfg), fit_cfg)
    split = Split(train.images[:s.eval_batch_size], train.labels[:s.eval_batch_size]).to(dev)
    autocast, dtype = autocast_for(dev, cfg.precision), compute_dtype(cfg.precision)
    return _measure(lambda steps: [evaluate(model, split, fit_cfg.views, s.eval_batch_size, autocast, dtype)
                                   for _ in range(steps)], s, dev, len(split))


# ----------------------------------------------------------------------------- timing, memory, record

def _time(run: Callable[[int], Any], steps: int) -> float:
    """Seconds per step over `steps` run(1) calls, by torch.utils.benchmark's Timer (which first runs
    TIMER_WARMUP untimed steps and synchronizes CUDA around the timed ones), at this process's thread count."""
    # torch.utils.benchmark imports cpp_extension, which logs that a CPU build has no CUDA runtime: nothing to us
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils import benchmark

    return benchmark.Timer("run(1)", globals={"run": run}, num_threads=torch.get_num_threads()).timeit(steps).median


def _measure(run: Callable[[int], Any], s: BenchSettings, device: torch.device, images_per_step: int) -> dict:
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
            timings: dict[str, dict], eval_timing: dict, teacher_timings: dict[str, dict]) -> dict[str, Any]:
    rate = {name: t["images_per_s"] for name, t in timings.items()}
    ratios = {name: rate[a] / rate[b] for name, (a, b) in RATIOS.items() if a in rate and b in rate}
    return {"schema": 2, "profile": cfg.profile, "device": device.type, "commit": _commit(),
            "command": command or f"cakd.bench.run_benchmark({device.type!r}, {cfg.profile!r})",
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": _machine(device),
            "settings": dataclasses.asdict(s) | {"compile": compile, "kd_method": KD_METHOD,
                                                 "kd_teachers": list(KD_TEACHERS)},
            "config": {"student": cfg.student, "model_scale": cfg.model_scale, "views": cfg.views.describe(),
                       "teacher_input": cfg.teacher_input, "precision": cfg.precision},
            "memory_method": MEMORY_METHOD[device.type], "pipelines": timings, "ratios": ratios,
            "targets": {name: {"target": target, "value": ratios[name], "met": ratios[name] >= target}
                        for name, target in get_profile(cfg.profile).bench_targets.items() if name in ratios},
            "student_eval": eval_timing, "teacher_forward": teacher_timings}
