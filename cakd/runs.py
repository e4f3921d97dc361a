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
from .data import load_splits
from .models import count_parameters, create_student
from .teachers import teacher_logits
from .train import FitConfig, fit, resolve_device, student_loss, summarize


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
    device = resolve_device(config.device)   # a bad device or missing data fails here, before anything is deleted
    splits = load_splits(config)
    if force:
        shutil.rmtree(folder, ignore_errors=True)
        checkpoint_path(config).unlink(missing_ok=True)
    teachers, teacher_record = teacher_logits(config, splits, device) if config.teachers else (None, {})
    torch.manual_seed(config.seed)
    student = create_student(config.student, splits.num_classes, config.model_scale)
    fit_cfg = FitConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                        weight_decay=config.weight_decay, schedule=config.schedule, augment=config.augment,
                        seed=config.seed, device=device, compile=config.compile,
                        eval_batch_size=config.eval_batch_size)
    result = fit(student, splits, student_loss(config.method, config.to_dict()), fit_cfg, teachers=teachers,
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


def load_run(folder: Path) -> RunResult:
    config = RunConfig.from_dict(files.read_json(folder / "config.json"))
    history = _from_csv((folder / "history.csv").read_text())
    return RunResult(config, history, files.read_json(folder / "metrics.json"), folder, trained=False)


def find_run(config: RunConfig) -> RunResult | None:
    """The finished run of `config`, or None (never trains)."""
    folder = run_folder(config)
    return load_run(folder) if (folder / "metrics.json").exists() else None


def list_runs(profile: str) -> list[RunResult]:
    root = paths.runs_dir(profile)
    return [load_run(f) for f in sorted(root.glob("*")) if (f / "metrics.json").exists()] if root.exists() else []


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
