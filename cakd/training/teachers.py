"""Teachers as a run needs them: the published CIFAR-100 checkpoints, frozen (paper and consistent profiles), or small
stand-ins trained here from scratch, once per profile and shared by every run (smoke profile)."""
from __future__ import annotations

import dataclasses
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..definitions import files, paths
from ..definitions.config import RunConfig, TeacherTraining, Views, check_flag
from ..definitions.profiles import profile_config
from . import checkpoints
from .data import Splits, load_splits
from .losses import LOSSES
from .models import create_teacher, load_public_weights
from .precision import created_in
from .train import EpochRecord, FitConfig, fit, resolve_device, summarize

# A teacher trained here sees the standard CIFAR views (pad 4, crop 32, flip) of the 32x32 image.
TEACHER_TRAINING_VIEWS = Views(resize=0, pad=4, crop=32, augment="crop_flip")
PUBLIC_CLASSES = 100   # the published checkpoints are CIFAR-100 classifiers


@dataclass
class LoadedTeacher:
    name: str
    model: nn.Module
    weights_digest: str     # content hash of the weights: part of every logit cache's fingerprint
    info: dict[str, Any]    # where the weights came from (and, when trained here, its history)


def load_teacher(config: RunConfig, name: str, splits: Splits | None = None, *, force: bool = False,
                 on_epoch: Callable[[EpochRecord], None] | None = None) -> LoadedTeacher:
    """Teacher `name` as `config.teacher_weights` says: published weights, frozen, or trained here."""
    check_flag("force", force)
    if config.teacher_weights == "public":
        if splits is not None and splits.num_classes != PUBLIC_CLASSES:
            raise ValueError(f"teacher_weights='public': the published teachers predict {PUBLIC_CLASSES} classes, "
                             f"the dataset has {splits.num_classes}; use teacher_weights='train'")
        model = load_public_weights(create_teacher(name, PUBLIC_CLASSES, config.model_scale), name)
        return LoadedTeacher(name, model, checkpoints.weights_digest(model.net.state_dict()), {"weights": "public"})
    return load_or_train_teacher(TeacherTraining.of(config, name), config.device, splits, force=force,
                                 on_epoch=on_epoch)


def teacher_folder(training: TeacherTraining) -> Path:
    paths.inside(paths.cache_home(), training.profile, "TeacherTraining.profile")   # not validated elsewhere
    return paths.inside(paths.teachers_dir(training.profile), training.run_id, "teacher")


def load_or_train_teacher(training: TeacherTraining, device: str = "auto", splits: Splits | None = None, *,
                          force: bool = False, on_epoch: Callable[[EpochRecord], None] | None = None) -> LoadedTeacher:
    """The teacher of `training`: loaded (weights verified against their hash) or trained now."""
    check_flag("force", force)
    folder = teacher_folder(training)
    weights, info_path = folder / "model.pt", folder / "teacher.json"
    if not force and info_path.exists() and weights.exists():
        info = files.read_json(info_path)
        state = checkpoints.load(weights)
        if checkpoints.weights_digest(state) == info["weights"]:
            with created_in(training.precision):   # as it was trained: an fp64 teacher never passes through fp32
                model = create_teacher(training.name, info["num_classes"], training.model_scale)
            model.load_state_dict(state)
            return LoadedTeacher(training.name, model, info["weights"], info)
        warnings.warn(f"teacher checkpoint {weights} does not match its recorded hash; training it again")
    resolved = resolve_device(device)   # a bad device or missing data fails here, before anything is deleted
    if splits is None:   # the data options of `training`
        splits = load_splits(profile_config(training.profile, dataset=training.dataset, data_dir=training.data_dir,
                                            synthetic_size=training.synthetic_size,
                                            synthetic_classes=training.synthetic_classes))
    if force and folder.exists():
        shutil.rmtree(folder)
    torch.manual_seed(training.seed)   # the same initial weights whatever the process ran before
    with created_in(training.precision):
        model = create_teacher(training.name, splits.num_classes, training.model_scale)
    cfg = FitConfig(views=TEACHER_TRAINING_VIEWS, device=resolved, epochs=training.epochs, lr=training.lr,
                    batch_size=training.batch_size, weight_decay=1e-4, schedule="cosine", eta_min=0.0, patience=0,
                    cosine_epochs=training.epochs, precision=training.precision, seed=training.seed)
    result = fit(model, splits, LOSSES["baseline"], cfg, checkpoint=folder / "resume.pt", on_epoch=on_epoch)
    state = {k: v.cpu() for k, v in result.model.state_dict().items()}
    info = {"name": training.name, "run_id": training.run_id, "weights": checkpoints.weights_digest(state),
            "training": dataclasses.asdict(training), "num_classes": splits.num_classes,
            **summarize(result.history), "history": result.history}
    checkpoints.save(state, weights)
    files.write_json(info_path, info)                     # written last: marks the teacher complete
    (folder / "resume.pt").unlink(missing_ok=True)
    return LoadedTeacher(training.name, result.model.cpu(), info["weights"], info)
