"""The run registry: a finished run is a folder of config.json, history.csv and metrics.json, keyed by the hash of its
config. Reading it needs no torch (the results page, the figures and the book read runs here); cakd.training.runs
trains the runs that are not in it. metrics.json is written last: its presence marks a finished run."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import files, paths
from .config import RunConfig

History = list[dict[str, float]]


@dataclass
class RunResult:
    config: RunConfig
    history: History
    metrics: dict[str, Any]
    folder: Path
    trained: bool     # False when loaded from the registry

    @property
    def accuracy(self) -> float:
        """The report's number: test accuracy at the best-validation epoch, in percent."""
        return self.metrics["test_acc"]

    def headline(self) -> dict[str, float]:
        """What a notebook prints: rounded metrics."""
        m = self.metrics
        return {"test_acc": round(m["test_acc"], 2), "best_val_acc": round(m["best_val_acc"], 2),
                "best_epoch": int(m["best_epoch"]), "last_test_acc": round(m["last_test_acc"], 2),
                "last_train_loss": float(f"{m['last_train_loss']:.6g}"),
                "epochs": int(m["epochs"]), "teacher_forward_passes": int(m["teacher_forward_passes"])}


def run_folder(config: RunConfig) -> Path:
    return paths.inside(paths.runs_dir(config.profile), config.run_id, "run_id")


def find_run(config: RunConfig) -> RunResult | None:
    """The finished run of `config`, or None (never trains)."""
    folder = run_folder(config)
    return load_run(folder) if (folder / "metrics.json").exists() else None


def load_run(folder: Path) -> RunResult:
    config = RunConfig.from_dict(files.read_json(folder / "config.json"))
    history = [{k: float(v) for k, v in row.items() if v != ""}
               for row in csv.DictReader(io.StringIO((folder / "history.csv").read_text()))]
    return RunResult(config, history, files.read_json(folder / "metrics.json"), folder, trained=False)


def save_run(config: RunConfig, history: History, metrics: dict[str, Any]) -> RunResult:
    """Write a finished run (metrics.json last) and return it."""
    folder = run_folder(config)
    columns = list(dict.fromkeys(key for row in history for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    files.write_json(folder / "config.json", config.to_dict())
    files.write_text(folder / "history.csv", buffer.getvalue())
    files.write_json(folder / "metrics.json", metrics)
    return RunResult(config, history, metrics, folder, trained=True)


def registry_seeds(profile: str) -> list[int]:
    """Every seed of any finished run of `profile` (read from the runs' config.json)."""
    root = paths.runs_dir(profile)
    found = {files.read_json(f.parent / "config.json").get("seed", 0)
             for f in root.glob("*/metrics.json") if (f.parent / "config.json").exists()} if root.exists() else set()
    return sorted(s for s in found if isinstance(s, int))
