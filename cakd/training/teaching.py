"""Where KD gets its teacher logits while the student trains: the one module for it. `teacher_input`: each teacher sees
the clean image through its own eval pipeline (the authors' code: one fixed logit vector per image) or the student's
augmented view (consistent teaching, ours; Beyer et al., the report's ref. [3]). `teacher_mode`: the logits are computed
once and looked up (`cache`: per image, or per (image, view) over all 162 views of a 32x32 image) or the teachers run on
every batch (`online`), rounded to the cache's fp16 so that both give the same numbers. A cache's folder is named by
what it is made from (`cache_key`); a fingerprint of its content (weights, data, pipeline, dtype, autocast) and
checksums keep anything stale or damaged out. The teachers come loaded and frozen (cakd.training.teachers)."""
from __future__ import annotations

import dataclasses
import functools
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from ..definitions import files, paths
from ..definitions.config import RunConfig, TeacherTraining, Views
from .data import Split, Splits
from .precision import autocast_for, autocast_name
from .views import apply_views

CACHE_DTYPE = torch.float16
FORMAT_VERSION = 3


class StaleCacheError(ValueError):
    """A cache exists for this teacher but was built from other weights, data or settings."""


class FrozenTeacher(Protocol):
    """A teacher as cakd.training.teachers loads it: its name, its network (with its pipeline), its weights' hash."""
    name: str
    model: nn.Module
    weights_digest: str


# A tqdm-like bar factory, (iterable, desc=...) -> iterable: tqdm's by default, Ray's in a Ray task.
Progress = Callable[..., Any]
QUIET = functools.partial(tqdm, disable=None, leave=False)   # a bar on a terminal, nothing in a log


class OnlineTeachers:
    """Runs the frozen teachers on every batch; logits rounded to the cache dtype so both modes agree."""

    def __init__(self, teachers: list[nn.Module], names: list[str], teacher_input: str, train: Split, precision: str):
        self.teachers = [t.eval().requires_grad_(False) for t in teachers]
        self.names, self.teacher_input, self.train, self.precision = names, teacher_input, train, precision
        self.forward_passes = 0

    def graph_blocker(self) -> str | None:
        return "online teachers count their forward passes in Python, which a replay would skip"

    @torch.no_grad()
    def __call__(self, indices: Tensor, view_ids: Tensor, views: Tensor) -> Tensor:
        images = views if self.teacher_input == "student_view" else self.train.images[indices]   # float | uint8
        self.forward_passes += len(self.teachers) * len(indices)
        return torch.stack([teacher_forward(t, images, self.precision) for t in self.teachers]).float()


class CachedTeachers:
    """Looks teacher logits up by image index (clean input) or (image index, view id): no forward passes. A cache too
    large for the GPU stays in host memory: the batch is gathered there and copied in one transfer (pinned) per step."""

    forward_passes = 0

    def __init__(self, caches: list["TeacherLogitCache"], names: list[str], device: torch.device):
        self.caches, self.names, self.device = caches, names, device

    def graph_blocker(self) -> str | None:
        if any(cache.train.device.type != "cuda" for cache in self.caches):
            return "a teacher-logit cache lives in host memory (too large for the GPU): its lookup copies from the host"
        return None

    def __call__(self, indices: Tensor, view_ids: Tensor, views: Tensor) -> Tensor:
        return torch.stack([self._lookup(c.train, indices, view_ids) for c in self.caches]).float()

    def _lookup(self, array: Tensor, indices: Tensor, view_ids: Tensor) -> Tensor:
        # device *types*: torch.device("cuda:0") != torch.device("cuda"), yet both are this GPU
        if array.device.type != indices.device.type:   # host-resident: gather on the host, one copy per step
            indices, view_ids = indices.cpu(), view_ids.cpu()
        block = array[indices] if array.dim() == 2 else array[indices, view_ids]
        if block.device.type != self.device.type:
            block = (block.pin_memory() if self.device.type == "cuda" else block).to(self.device, non_blocking=True)
        return block


class TeacherLogitCache:
    """fp16 teacher logits: train [N, C] (clean) or [N, V, C] (every student view); val and test [N, C] (clean)."""

    def __init__(self, folder: Path, arrays: dict[str, Tensor], meta: dict[str, Any]):
        self.folder, self.meta = folder, meta
        self.train, self.val, self.test = arrays["train"], arrays["val"], arrays["test"]

    @staticmethod
    def fingerprint(weights_digest: str, model: nn.Module, splits: Splits, autocast: str = "none") -> dict[str, Any]:
        """What a cache's content depends on beyond its key: weights, data, input pipeline, logit dtype, autocast."""
        return {"format": FORMAT_VERSION, "weights": weights_digest, "data": splits.fingerprint,
                "num_classes": splits.num_classes, "pipeline": model.pipeline.describe(), "dtype": str(CACHE_DTYPE),
                "autocast": autocast}

    @classmethod
    def load(cls, folder: Path, fingerprint: dict[str, Any], device: torch.device) -> "TeacherLogitCache":
        """Open a cache, refusing one whose fingerprint or checksums do not match (StaleCacheError/ValueError)."""
        meta = files.read_json(folder / "meta.json")
        if meta.get("fingerprint") != fingerprint:
            diff = sorted(k for k in fingerprint if meta.get("fingerprint", {}).get(k) != fingerprint[k])
            raise StaleCacheError(f"teacher-logit cache {folder} was built for other {diff}; it will be rebuilt")
        arrays = {}
        for split, info in meta["arrays"].items():
            path = folder / f"{split}.npy"
            if not path.is_file() or path.stat().st_size != info["bytes"] or files.digest(path) != info["digest"]:
                raise ValueError(f"teacher-logit cache file {path} is missing or corrupt (size/checksum "
                                 "mismatch); it will be rebuilt")
            array = torch.from_numpy(np.load(path, mmap_mode="c"))   # copy-on-write map: never writes back
            arrays[split] = array.to(device) if _fits(array, device) else array
        return cls(folder, arrays, meta)

    @classmethod
    def build(cls, folder: Path, model: nn.Module, splits: Splits, fingerprint: dict[str, Any], teacher_input: str,
              views: Views, device: torch.device, precision: str, batch_size: int = 2048,
              desc: str = "cache", progress: Progress = QUIET) -> "TeacherLogitCache":
        """Run the teacher over every train image (or every (image, view)) and the val/test images."""
        model = prepare_teacher(model, device)
        folder.mkdir(parents=True, exist_ok=True)
        info = {}
        train_views = views.count if teacher_input == "student_view" else 1
        for split_name, split, count in (("train", splits.train, train_views), ("val", splits.val, 1),
                                         ("test", splits.test, 1)):
            shape = (len(split), count, splits.num_classes) if count > 1 else (len(split), splits.num_classes)
            path = folder / f"{split_name}.npy"
            with files.atomic_path(path) as tmp:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape)
                _fill(out, model, split, count, views, device, precision, batch_size, f"{desc} {split_name}", progress)
                out.flush()
                del out
            info[split_name] = {"bytes": path.stat().st_size, "digest": files.digest(path), "shape": list(shape)}
        # meta.json is written last: a cache without it (killed mid-build) is never opened.
        files.write_json(folder / "meta.json", {"fingerprint": fingerprint, "arrays": info})
        return cls.load(folder, fingerprint, device)

    @property
    def nbytes(self) -> int:
        return sum(a["bytes"] for a in self.meta["arrays"].values())

    @property
    def forward_passes(self) -> int:
        """Teacher forward passes that built it: one per cached logit vector."""
        return int(sum(np.prod(a["shape"][:-1]) for a in self.meta["arrays"].values()))


def teacher_logits(config: RunConfig, teachers: list[FrozenTeacher], splits: Splits, device: torch.device
                   ) -> tuple[OnlineTeachers | CachedTeachers, dict[str, Any]]:
    """The run's KD logit source from its loaded teachers, and their record (accuracies, cache passes and bytes)."""
    names = [t.name for t in teachers]
    if config.teacher_mode == "online":
        models = [prepare_teacher(t.model, device) for t in teachers]
        return OnlineTeachers(models, names, config.teacher_input, splits.train.to(device), config.precision), {
            "teachers": {n: teacher_accuracy(m, splits, device, config.precision) for n, m in zip(names, models)}}
    built = [load_or_build_cache(config, teacher, splits, device) for teacher in teachers]
    caches = [cache for cache, _ in built]
    record = {"teachers": {n: _cached_accuracy(c, splits) for n, c in zip(names, caches)},
              "cache_build_passes": sum(passes for _, passes in built), "cache_bytes": sum(c.nbytes for c in caches)}
    return CachedTeachers(caches, names, device), record


def cache_key(config: RunConfig, name: str) -> dict[str, Any]:
    """What teacher `name`'s cache for `config` is made from, known before any weight or image is read. It names the
    cache's folder, so runs with equal keys read one cache, which cakd.orchestration.reproduce builds once."""
    trained = config.teacher_weights == "train"
    source = dataclasses.asdict(TeacherTraining.of(config, name)) if trained else {"public": name}
    return {"teacher": name, "source": source, "dataset": config.dataset, "data_dir": config.data_dir,
            "synthetic": [config.synthetic_size, config.synthetic_classes], "scale": config.model_scale,
            "input": config.teacher_input, "precision": config.precision,
            "views": repr(config.views) if config.teacher_input == "student_view" else "clean"}


def cache_folder(config: RunConfig, name: str) -> Path:
    return paths.inside(paths.logit_cache_dir(config.profile), f"{name}-{files.digest(cache_key(config, name))[:12]}",
                        "teacher")


def load_or_build_cache(config: RunConfig, teacher: FrozenTeacher, splits: Splits, device: torch.device,
                        progress: Progress = QUIET) -> tuple[TeacherLogitCache, int]:
    """The teacher's logit cache and the forward passes spent building it now (0 when loaded)."""
    fingerprint = TeacherLogitCache.fingerprint(teacher.weights_digest, teacher.model, splits,
                                                autocast_name(device, config.precision))
    folder = cache_folder(config, teacher.name)
    if (folder / "meta.json").exists():
        try:
            return TeacherLogitCache.load(folder, fingerprint, device), 0
        except (StaleCacheError, ValueError) as e:   # never use it: say why, rebuild from scratch
            warnings.warn(str(e))
            shutil.rmtree(folder)
    cache = TeacherLogitCache.build(folder, teacher.model, splits, fingerprint, config.teacher_input, config.views,
                                    device, config.precision, desc=f"cache {teacher.name}", progress=progress)
    return cache, cache.forward_passes


def teacher_forward(model: nn.Module, images: Tensor, precision: str) -> Tensor:
    """A frozen teacher's logits, rounded to the cache dtype: cache and online teaching train identically. uint8 images
    are clean: the teacher's PIL transform makes its input (`Classifier.forward_clean`); float images are the student's
    views and go through its pipeline on the device."""
    with autocast_for(images.device, precision):
        logits = (model.forward_clean(images) if images.dtype == torch.uint8 else model(images)).float()
    return logits.to(CACHE_DTYPE)


@torch.no_grad()
def teacher_accuracy(model: nn.Module, splits: Splits, device: torch.device, precision: str) -> dict[str, float]:
    """Val and test accuracy of a teacher on the clean images (its own eval pipeline)."""
    out = {}
    for name, split in (("val_acc", splits.val), ("test_acc", splits.test)):
        split = split.to(device)
        correct = sum(int((teacher_forward(model, split.images[i:i + 1024], precision).argmax(1)
                           == split.labels[i:i + 1024]).sum()) for i in range(0, len(split), 1024))
        out[name] = 100.0 * correct / len(split)
    return out


def _cached_accuracy(cache: TeacherLogitCache, splits: Splits) -> dict[str, float]:
    return {f"{name}_acc": 100.0 * float((array.float().argmax(1).cpu() == split.labels).double().mean())
            for name, array, split in (("val", cache.val, splits.val), ("test", cache.test, splits.test))}


def _fill(out: np.ndarray, model: nn.Module, split: Split, count: int, views: Views, device: torch.device,
          precision: str, batch_size: int, desc: str, progress: Progress) -> None:
    """out[i] = teacher(clean image i), or out[i, v] = teacher(student view v of image i), in batches."""
    images, pairs = split.images.to(device), len(split) * count
    bar = progress(range(0, pairs, batch_size), desc=desc)
    for first in bar:
        flat = torch.arange(first, min(first + batch_size, pairs), device=device)
        index, view = flat // count, flat % count
        batch = apply_views(images[index], view, views) if count > 1 else images[index]
        with torch.no_grad():
            logits = teacher_forward(model, batch, precision)
        if not torch.isfinite(logits).all():
            raise ValueError(f"{desc}: the teacher produced NaN or infinite logits (images {index[:3].tolist()}...); "
                             "its checkpoint is broken")
        out.reshape(pairs, -1)[first:first + len(flat)] = logits.cpu().numpy()
    bar.close()


def prepare_teacher(model: nn.Module, device: torch.device) -> nn.Module:
    """A frozen teacher on `device`, channels_last on CUDA (ResNet-50 1.4x, DenseNet 1.15x at batch 1024)."""
    model = model.to(device).eval().requires_grad_(False)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        model.channels_last = True
    return model


def _fits(array: Tensor, device: torch.device) -> bool:
    return device.type == "cuda" and array.numel() * array.element_size() < 0.5 * torch.cuda.mem_get_info(device)[0]
