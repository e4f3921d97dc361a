"""Training runs: `load_or_train` returns a run from the registry (cakd.definitions.registry) or trains it now, resuming
an interrupted run from its last complete epoch; `preflight` says, before any work, what a run still needs."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import torch

from ..definitions import paths
from ..definitions.config import RunConfig, check_flag
from ..definitions.profiles import get_profile
from ..definitions.registry import RunResult, find_run, run_folder, save_run
from .data import check_available, load_splits
from .losses import LOSSES
from .models import count_parameters, create_student, public_weights_path
from .precision import created_in
from .teachers import load_teacher
from .teaching import teacher_logits
from .train import EpochRecord, FitConfig, fit, resolve_device, summarize


def checkpoint_path(config: RunConfig) -> Path:
    return paths.inside(paths.checkpoints_dir(config.profile), f"{config.run_id}.pt", "run_id")


def load_or_train(config: RunConfig, *, force: bool = False,
                  on_epoch: Callable[[EpochRecord], None] | None = None) -> RunResult:
    """The finished run of `config` from the registry, else trained now (resuming an interrupted one)."""
    check_flag("force", force)
    if not force and (run := find_run(config)) is not None:
        return run
    device = preflight(config)   # no GPU, no data, no weights: one clear error here, before anything is deleted
    splits = load_splits(config)
    if force:
        shutil.rmtree(run_folder(config), ignore_errors=True)
        checkpoint_path(config).unlink(missing_ok=True)
    teachers = [load_teacher(config, name, splits) for name in config.teachers]
    source, teacher_record = teacher_logits(config, teachers, splits, device) if teachers else (None, {})
    torch.manual_seed(config.seed)
    with created_in(config.precision):
        student = create_student(config.student, splits.num_classes, config.model_scale)
    result = fit(student, splits, step_loss(config), FitConfig.of(config, device), teachers=source,
                 checkpoint=checkpoint_path(config), on_epoch=on_epoch)
    history = [_name_teacher_columns(row, list(config.teachers)) for row in result.history]
    metrics = {"run_id": config.run_id, "method": config.method, "profile": config.profile,
               **summarize(history), "student_params": count_parameters(student), "device": str(device),
               "teacher_forward_passes": int(history[-1].get("teacher_passes", 0)), **teacher_record}
    run = save_run(config, history, metrics)
    checkpoint_path(config).unlink()      # finished: the registry holds the result; the resume state is spent
    return run


def step_loss(config: RunConfig) -> Callable:
    """The run's loss with the options its method reads, bound by name (checked once, by its RunConfig)."""
    fn, options = LOSSES[config.method], config.loss_options()
    return lambda logits, teacher_logits, labels: fn(logits, teacher_logits, labels, **options)


def preflight(config: RunConfig, check_inputs: bool = False) -> torch.device:
    """The run's device (a profile of full-size models trains on a CPU, for days, only if asked); `check_inputs` also
    checks (or downloads) the data and the teachers' public weights: what is missing fails here, saying what to do."""
    device = resolve_device(config.device)
    if device.type == "cpu" and get_profile(config.profile).needs_gpu and config.device == "auto":
        raise RequirementError(f"the {config.profile} profile trains full-size models for up to {config.epochs} "
                               "epochs and needs a CUDA GPU, and none was found. Add -p profile smoke for the offline "
                               "demo, or -p device cpu to train on the CPU anyway (days).")
    if check_inputs:
        check_available(config)
        if config.teachers and config.teacher_weights == "public":
            for name in config.teachers:
                public_weights_path(name)
    return device


class RequirementError(RuntimeError):
    """A run cannot start here (no GPU, no data, no teacher weights); the message says what to do."""


def _name_teacher_columns(row: dict[str, float], names: list[str]) -> dict[str, float]:
    """'teacher_weights.0' -> 'teacher_weights.densenet121' (columns the book plots by teacher)."""
    out = {}
    for key, value in row.items():
        stem, _, index = key.rpartition(".")
        out[f"{stem}.{names[int(index)]}" if stem and index.isdigit() else key] = value
    return out
