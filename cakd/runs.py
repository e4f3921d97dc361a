"""The run registry: a run is a folder of config.json, history.csv, metrics.json keyed by its config hash.

An identical config is loaded, not retrained (unless `force`); an interrupted run resumes from its last
complete epoch. metrics.json is written last, so its presence marks a finished run.
"""
from __future__ import annotations

import csv
import io
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import files, paths
from .config import RunConfig, check_flag
from .data import check_available, load_splits
from .models import count_parameters, create_student, public_weights_path
from .teaching import teacher_logits
from .train import FitConfig, fit, resolve_device, summarize


@dataclass
class RunResult:
    config: RunConfig
    history: list[dict[str, float]]
    metrics: dict[str, Any]
    folder: Path
    trained: bool     # False when loaded from the registry

    @property
    def accuracy(self) -> float:
        """The report's number: test accuracy at the best-validation epoch, in percent."""
        return self.metrics["test_acc"]

    def headline(self) -> dict[str, float]:
        """What a notebook prints (and the golden tests compare, within their tolerance): rounded metrics."""
        m = self.metrics
        return {"test_acc": round(m["test_acc"], 2), "best_val_acc": round(m["best_val_acc"], 2),
                "best_epoch": int(m["best_epoch"]), "last_test_acc": round(m["last_test_acc"], 2),
                "last_train_loss": float(f"{m['last_train_loss']:.6g}"),
                "epochs": int(m["epochs"]), "teacher_forward_passes": int(m["teacher_forward_passes"])}


def run_folder(config: RunConfig) -> Path:
    return paths.inside(paths.runs_dir(config.profile), config.run_id, "run_id")


def checkpoint_path(config: RunConfig) -> Path:
    return paths.inside(paths.checkpoints_dir(config.profile), f"{config.run_id}.pt", "run_id")


def load_or_train(config: RunConfig, *, force: bool = False) -> RunResult:
    """The finished run of `config` from the registry, or train it now (resuming an interrupted one)."""
    check_flag("force", force)
    folder = run_folder(config)
    if not force and (folder / "metrics.json").exists():
        return load_run(folder)
    device = preflight(config)   # no GPU, no data, no weights: one clear error here, before anything is deleted
    splits = load_splits(config)
    if force:
        shutil.rmtree(folder, ignore_errors=True)
        checkpoint_path(config).unlink(missing_ok=True)
    teachers, teacher_record = teacher_logits(config, splits, device) if config.teachers else (None, {})
    torch.manual_seed(config.seed)
    student = create_student(config.student, splits.num_classes, config.model_scale)
    result = fit(student, splits, step_loss(config), FitConfig.of(config, device), teachers=teachers,
                 checkpoint=checkpoint_path(config), desc=config.run_id)
    history = [_name_teacher_columns(row, list(config.teachers)) for row in result.history]
    metrics = {"run_id": config.run_id, "method": config.method, "profile": config.profile,
               **summarize(history), "student_params": count_parameters(student), "device": str(device),
               "teacher_forward_passes": int(history[-1].get("teacher_passes", 0)), **teacher_record}
    files.write_json(folder / "config.json", config.to_dict())
    files.write_text(folder / "history.csv", _to_csv(history))
    files.write_json(folder / "metrics.json", metrics)
    checkpoint_path(config).unlink()      # finished: the registry holds the result; the resume state is spent
    return RunResult(config, history, metrics, folder, trained=True)


def step_loss(config: RunConfig):
    """The run's loss with the options its method declared (losses.register_loss), bound by name."""
    fn, options = config.loss.fn, config.loss_options()
    return lambda logits, teacher_logits, labels: fn(logits, teacher_logits, labels, **options)


def preflight(config: RunConfig, check_inputs: bool = False) -> torch.device:
    """The run's device; a paper/consistent run refuses to fall back to a CPU (days of training) unless
    device='cpu' is asked for. With `check_inputs`, also the data and the teachers' published weights
    (downloaded when online): whatever is missing fails here with one message that says what to do."""
    device = resolve_device(config.device)
    if device.type == "cpu" and config.profile != "smoke" and config.device == "auto":
        raise RequirementError(
            f"the {config.profile} profile trains full-size models for up to {config.epochs} epochs and needs a "
            "CUDA GPU, and none was found. Add -p profile smoke for the offline demo, or -p device cpu to "
            "train on the CPU anyway (days).")
    if check_inputs:
        check_available(config)
        if config.teachers and config.teacher_weights == "public":
            for name in config.teachers:
                public_weights_path(name)
    return device


class RequirementError(RuntimeError):
    """A run cannot start here (no GPU, no data, no teacher weights); the message says what to do."""


def load_run(folder: Path) -> RunResult:
    config = RunConfig.from_dict(files.read_json(folder / "config.json"))
    history = _from_csv((folder / "history.csv").read_text())
    return RunResult(config, history, files.read_json(folder / "metrics.json"), folder, trained=False)


def find_run(config: RunConfig) -> RunResult | None:
    """The finished run of `config`, or None (never trains)."""
    folder = run_folder(config)
    return load_run(folder) if (folder / "metrics.json").exists() else None


def _name_teacher_columns(row: dict[str, float], names: list[str]) -> dict[str, float]:
    """'teacher_weights.0' -> 'teacher_weights.densenet121' (columns the book plots by teacher)."""
    out = {}
    for key, value in row.items():
        stem, _, index = key.rpartition(".")
        out[f"{stem}.{names[int(index)]}" if stem and index.isdigit() else key] = value
    return out


def _to_csv(rows: list[dict[str, float]]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _from_csv(text: str) -> list[dict[str, float]]:
    return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(io.StringIO(text))]
