"""Teachers: fine-tuning on the train split (checkpoint with a content hash) and the logit source for KD.

A teacher is fine-tuned once per profile and shared by every student run; its logits reach the student
either from the exact 162-view cache (`teacher_mode='cache'`) or from live forward passes (`'online'`).
"""
from __future__ import annotations

import shutil
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import files, paths
from .cache import CachedTeachers, OnlineTeachers, StaleCacheError, TeacherLogitCache
from .config import RunConfig, TeacherConfig, check_flag
from .data import Splits, load_splits
from .losses import ce_loss
from .models import create_teacher
from .train import FitConfig, TeacherLogits, fit, resolve_device, summarize


@dataclass
class Teacher:
    config: TeacherConfig
    model: nn.Module
    info: dict[str, Any]   # weights digest, val/test accuracy, history


def teacher_folder(tc: TeacherConfig) -> Path:
    paths.inside(paths.cache_home(), tc.profile, "TeacherConfig.profile")   # TeacherConfig itself is not validated
    return paths.inside(paths.teachers_dir(tc.profile), tc.run_id, "TeacherConfig.name")


def load_or_finetune(tc: TeacherConfig, splits: Splits | None = None, *, force: bool = False) -> Teacher:
    """The fine-tuned teacher of `tc`: loaded (weights verified against their hash) or trained now."""
    check_flag("force", force)
    folder = teacher_folder(tc)
    weights, info_path = folder / "model.pt", folder / "teacher.json"
    if not force and info_path.exists() and weights.exists():
        info = files.read_json(info_path)
        state = files.torch_load(weights)
        if files.state_digest(state) == info["weights"]:
            model = create_teacher(tc.name, info["num_classes"], tc.model_scale, pretrained=False)
            model.load_state_dict(state)
            return Teacher(tc, model, info)
        warnings.warn(f"teacher checkpoint {weights} does not match its recorded hash; fine-tuning it again")
    device = resolve_device(tc.device)   # a bad device or missing data fails here, before anything is deleted
    splits = splits if splits is not None else load_splits(tc)
    if force and folder.exists():
        shutil.rmtree(folder)
    torch.manual_seed(tc.seed)
    model = create_teacher(tc.name, splits.num_classes, tc.model_scale, pretrained=tc.pretrained)
    fit_cfg = FitConfig(epochs=tc.epochs, batch_size=tc.batch_size, lr=tc.lr, weight_decay=tc.weight_decay,
                        schedule="cosine", augment=tc.augment, seed=tc.seed, device=device)
    result = fit(model, splits, ce_loss, fit_cfg, checkpoint=folder / "resume.pt", desc=f"teacher {tc.name}")
    state = {k: v.cpu() for k, v in result.model.state_dict().items()}
    info = {"name": tc.name, "run_id": tc.run_id, "config": asdict(tc), "weights": files.state_digest(state),
            "num_classes": splits.num_classes, "input_size": tc.input_size, **summarize(result.history),
            "history": result.history}
    files.torch_save(state, weights)
    files.write_json(info_path, info)                     # written last: marks the teacher complete
    files.write_json(paths.results_home() / tc.profile / "teachers" / f"{tc.run_id}.json",
                     {k: v for k, v in info.items() if k != "history"})
    (folder / "resume.pt").unlink(missing_ok=True)
    return Teacher(tc, result.model.cpu(), info)


def load_or_build_cache(teacher: Teacher, splits: Splits, device: torch.device) -> tuple[TeacherLogitCache, int]:
    """The teacher's logit cache and the forward passes spent building it now (0 when loaded)."""
    folder = paths.inside(paths.logit_cache_dir(teacher.config.profile), teacher.config.run_id, "TeacherConfig.name")
    fingerprint = TeacherLogitCache.fingerprint(teacher.config.name, teacher.info["weights"], teacher.model, splits)
    if (folder / "meta.json").exists():
        try:
            return TeacherLogitCache.load(folder, fingerprint, device), 0
        except (StaleCacheError, ValueError) as e:   # never use it: say why, rebuild from scratch
            warnings.warn(str(e))
            shutil.rmtree(folder)
    cache = TeacherLogitCache.build(folder, teacher.model, splits, fingerprint, device,
                                    desc=f"cache {teacher.config.name}")
    return cache, int(sum(a["shape"][0] * (a["shape"][1] if len(a["shape"]) == 3 else 1)
                          for a in cache.meta["arrays"].values()))


def teacher_logits(config: RunConfig, splits: Splits, device: torch.device) -> tuple[TeacherLogits, dict[str, Any]]:
    """The KD logit source of a run and a record of its teachers (accuracies, cache passes, cache bytes)."""
    teachers = [load_or_finetune(config.teacher_config(name), splits) for name in config.teachers]
    record: dict[str, Any] = {"teachers": {t.config.name: {"val_acc": t.info["best_val_acc"],
                                                          "test_acc": t.info["test_acc"]} for t in teachers}}
    names = list(config.teachers)
    if config.teacher_mode == "online":
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else None
        return OnlineTeachers([t.model.to(device) for t in teachers], names, autocast), record
    built = [load_or_build_cache(t, splits, device) for t in teachers]
    record["cache_build_passes"] = sum(passes for _, passes in built)
    record["cache_bytes"] = sum(cache.nbytes for cache, _ in built)
    return CachedTeachers([cache for cache, _ in built], names), record

