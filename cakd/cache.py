"""Exact teacher-logit cache over all 162 augmentation views (DESIGN section 5), and live teachers.

Frozen teachers in eval mode are deterministic functions of the augmented image, and the augmentation has
exactly 162 views, so fp16 logits stored per (train image, view) reproduce online teaching exactly for any
seed ("consistent teaching"). A fingerprint (teacher weights, data, augmentation, input size, normalization,
dtype) is checked on every load; the arrays' checksums are checked too. Nothing stale or damaged is used.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from . import files
from .data import NUM_VIEWS, Split, Splits, apply_views, identity_views

CACHE_DTYPE = torch.float16
FORMAT_VERSION = 1
AUGMENTATION_SPEC = "zero-pad 4, crop 32x32 at (dy, dx) in 9x9, flip; view = (dy*9 + dx)*2 + flip"


class StaleCacheError(ValueError):
    """A cache exists for this teacher but was built from other weights, data or settings."""


class OnlineTeachers:
    """Runs the frozen teachers on every batch; logits rounded to the cache dtype so both modes agree."""

    def __init__(self, teachers: list[nn.Module], names: list[str], autocast: Any = None):
        self.teachers = [t.eval().requires_grad_(False) for t in teachers]
        self.names = names
        self.autocast = autocast
        self.forward_passes = 0

    @torch.no_grad()
    def __call__(self, indices: Tensor, view_ids: Tensor, images: Tensor) -> Tensor:
        self.forward_passes += len(self.teachers) * len(images)
        return torch.stack([_teacher_forward(t, images, self.autocast) for t in self.teachers]).float()


class CachedTeachers:
    """Looks teacher logits up by (image index, view id): zero teacher forward passes."""

    def __init__(self, caches: list["TeacherLogitCache"], names: list[str]):
        self.caches = caches
        self.names = names
        self.forward_passes = 0

    def __call__(self, indices: Tensor, view_ids: Tensor, images: Tensor) -> Tensor:
        return torch.stack([c.train[indices, view_ids] for c in self.caches]).float()


class TeacherLogitCache:
    """fp16 teacher logits: train [N, 162, C] over every view, val and test [N, C] (un-augmented)."""

    def __init__(self, folder: Path, arrays: dict[str, Tensor], meta: dict[str, Any]):
        self.folder, self.meta = folder, meta
        self.train, self.val, self.test = arrays["train"], arrays["val"], arrays["test"]

    @staticmethod
    def fingerprint(teacher_name: str, weights_digest: str, model: nn.Module, splits: Splits) -> dict[str, Any]:
        return {"format": FORMAT_VERSION, "teacher": teacher_name, "weights": weights_digest,
                "data": splits.fingerprint, "num_classes": splits.num_classes, "views": NUM_VIEWS,
                "augmentation": AUGMENTATION_SPEC, "input_size": model.input_size,
                "mean": [round(v, 6) for v in model.mean.flatten().tolist()],
                "std": [round(v, 6) for v in model.std.flatten().tolist()], "dtype": str(CACHE_DTYPE)}

    @classmethod
    def load(cls, folder: Path, fingerprint: dict[str, Any], device: torch.device) -> "TeacherLogitCache":
        """Open a cache, refusing one whose fingerprint or checksums do not match (StaleCacheError/ValueError)."""
        meta_path = folder / "meta.json"
        meta = files.read_json(meta_path)
        if meta.get("fingerprint") != fingerprint:
            diff = sorted(k for k in fingerprint if meta.get("fingerprint", {}).get(k) != fingerprint[k])
            raise StaleCacheError(f"teacher-logit cache {folder} was built for other {diff}; it will be rebuilt")
        arrays = {}
        for split, info in meta["arrays"].items():
            path = folder / f"{split}.npy"
            if not path.is_file() or path.stat().st_size != info["bytes"] or files.file_digest(path) != info["digest"]:
                raise ValueError(f"teacher-logit cache file {path} is missing or corrupt (size/checksum "
                                 "mismatch); it will be rebuilt")
            array = torch.from_numpy(np.load(path, mmap_mode="c"))   # copy-on-write map: never writes back
            arrays[split] = array.to(device) if _fits(array, device) else array
        return cls(folder, arrays, meta)

    @classmethod
    def build(cls, folder: Path, model: nn.Module, splits: Splits, fingerprint: dict[str, Any],
              device: torch.device, batch_size: int = 2048, desc: str = "cache") -> "TeacherLogitCache":
        """Run the teacher over every (train image, view) and the val/test images; write atomically."""
        model = model.to(device).eval()
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else None
        folder.mkdir(parents=True, exist_ok=True)
        arrays, info = {}, {}
        for split_name, split, views in (("train", splits.train, NUM_VIEWS), ("val", splits.val, 1),
                                         ("test", splits.test, 1)):
            shape = (len(split), views, splits.num_classes) if views > 1 else (len(split), splits.num_classes)
            path = folder / f"{split_name}.npy"
            with files.atomic_path(path) as tmp:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape)
                _fill(out, model, split, views, device, autocast, batch_size, f"{desc} {split_name}")
                out.flush()
                del out
            info[split_name] = {"bytes": path.stat().st_size, "digest": files.file_digest(path),
                                "shape": list(shape)}
        # meta.json is written last: a cache without it (killed mid-build) is never opened.
        files.write_json(folder / "meta.json", {"fingerprint": fingerprint, "arrays": info})
        return cls.load(folder, fingerprint, device)

    @property
    def nbytes(self) -> int:
        return sum(a["bytes"] for a in self.meta["arrays"].values())


def _fill(out: np.ndarray, model: nn.Module, split: Split, views: int, device: torch.device, autocast: Any,
          batch_size: int, desc: str) -> None:
    """out[i, v] = teacher(view v of image i), in batches of `batch_size` (image, view) pairs."""
    images = split.images.to(device)
    pairs = len(split) * views
    for first in tqdm(range(0, pairs, batch_size), desc=desc, disable=None, leave=False):
        flat = torch.arange(first, min(first + batch_size, pairs), device=device)
        index, view = flat // views, flat % views
        view_ids = view if views > 1 else identity_views(len(flat)).to(device)
        with torch.no_grad():
            logits = _teacher_forward(model, apply_views(images[index], view_ids), autocast)
        if not torch.isfinite(logits).all():
            raise ValueError(f"{desc}: the teacher produced NaN or infinite logits (images {index[:3].tolist()}...); "
                             "its checkpoint is broken: retrain it (force=True)")
        block = logits.cpu().numpy()
        out.reshape(pairs, -1)[first:first + len(flat)] = block


def _teacher_forward(model: nn.Module, images: Tensor, autocast: Any) -> Tensor:
    with autocast if autocast is not None else torch.autocast("cpu", enabled=False):
        logits = model(images).float()
    # both cache and online teaching use the cache's precision, so the two modes train identically
    return logits.to(CACHE_DTYPE)


def _fits(array: Tensor, device: torch.device) -> bool:
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return array.numel() * array.element_size() < 0.5 * free

