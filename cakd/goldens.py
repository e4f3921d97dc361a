"""Golden notebooks for the regression tests: smoke-profile papermill outputs of every notebook.

`python -m cakd goldens` regenerates them (after a change that is meant to alter reported numbers). Two kinds
of output are checked, both portable across CPUs, thread counts and operating systems:
- cells tagged `nbval-check-output` print what the mathematics alone fixes (the resolved recipe, parameter
  counts, the loss of the method on a fixed float64 batch, the learning rate of each epoch): nbval compares
  them exactly;
- cells tagged `cakd-metrics` print what training gives, which moves with the CPU and the thread count
  (float reductions run in another order and training amplifies the difference): accuracies are compared
  within METRIC_TOLERANCE points, losses within LOSS_TOLERANCE (relative), a band that catches a broken
  training loop, not a subtle change (the exact checks catch those).
Each golden records the environment it was made with, so a failure first says whether the environment differs.
Every golden runs in fresh results homes; the trained smoke teachers are shared through one cache home.
"""
from __future__ import annotations

import os
import platform
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import nbformat

from . import authors, paths
from .config import OPTIONS, PROFILES
from .manifest import get_row

PROFILE = "smoke"
THREADS = "1"
# The smoke profile small, so that every golden trains in seconds, and in float64, which narrows (but does not
# remove) how far training moves between machines: measured here on the same Method 3-size KD run, 1 vs 2
# threads vs ATEN_CPU_CAPABILITY=default moved test accuracy by 0.5 points, a teacher's accuracy by up to
# 3 points and the final loss by 1%. The tolerances below are a sanity band a few times wider than that; what
# pins the mathematics to the last digit are the exact, training-free checks.
GOLDEN_SETTINGS = {"precision": "fp64", "synthetic_size": 1200, "epochs": 2, "teacher_epochs": 2}
METRIC_TOLERANCE = 10.0  # accuracies: percentage points
LOSS_TOLERANCE = 0.1     # losses: relative
SANITIZE = paths.GOLDEN / "sanitize.cfg"
# The consistent profile's path: its student and views, teaching on the student's own views (online), and the
# report's equations where the smoke profile follows the authors' code.
CONSISTENT_PATH = {**{k: OPTIONS[k].default for k in authors.settings() if k != "precision"},
                   **{k: v for k, v in PROFILES["consistent"].items() if k not in ("profile", "dataset")},
                   "teacher_mode": "online"}


def _row(row_id: str, **overrides: Any) -> tuple[str, dict[str, Any]]:
    row = get_row(row_id)
    return row.notebook, {**row.notebook_parameters(PROFILE), **GOLDEN_SETTINGS, **overrides}


# Every notebook and every loss runs; Method 2 runs the consistent profile's path (32x32 student taught on its
# own views, online), the others the paper profile's (224-style upsampled student, fixed teacher targets).
GOLDENS: dict[str, tuple[str, dict[str, Any]]] = {
    "baseline": _row("baseline"),
    "kd_densenet121": _row("kd_densenet121"),
    "m1_drv": _row("m1_drv"),
    "m2_drv_consistent": _row("m2_drv", **CONSISTENT_PATH),
    "m3_dr_t16": _row("m3_dr_t16"),
    "teachers": ("teachers", {"profile": PROFILE, **{k: v for k, v in GOLDEN_SETTINGS.items() if k != "epochs"}}),
    "results": ("results", {"profile": PROFILE}),       # fresh homes: every row shows as missing
}
VOLATILE_METADATA = ("start_time", "end_time", "duration", "execution")


def golden_path(name: str) -> Path:
    return paths.GOLDEN / f"{name}.ipynb"


def golden_environment(results: Path, cache: Path) -> dict[str, str]:
    """Environment of a golden's kernel: its own results home, the shared cache home, fixed threads, offline."""
    return {**os.environ, paths.RESULTS_ENV: str(results), paths.CACHE_ENV: str(cache),
            paths.DATA_ENV: str(cache / "data"), "CAKD_THREADS": THREADS, "OMP_NUM_THREADS": THREADS,
            "MKL_NUM_THREADS": THREADS, "HF_HUB_OFFLINE": "1"}


def environment() -> dict[str, str]:
    """What a golden was made with (and what a check runs on)."""
    import torch

    return {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "system": platform.system(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def regenerate(names: list[str] | None = None, log=print) -> None:
    """Execute each golden's notebook with papermill in fresh homes and save it without volatile metadata."""
    from .notebook import execute

    unknown = sorted(set(names or []) - set(GOLDENS))
    if unknown:
        raise ValueError(f"golden(s) {unknown} unknown; goldens are {sorted(GOLDENS)}")
    with tempfile.TemporaryDirectory() as home:
        for name in names or list(GOLDENS):
            notebook, parameters = GOLDENS[name]
            log(f"golden {name}: notebooks/{notebook}.ipynb {parameters}")
            with _environment(golden_environment(Path(home) / name, Path(home) / "cache")):
                _, error = execute(notebook, parameters, golden_path(name))
            if error is not None:
                raise RuntimeError(f"golden {name}: notebooks/{notebook}.ipynb failed ({error})")
            finish(golden_path(name))


def finish(path: Path) -> None:
    """Drop timestamps and durations (papermill, nbclient) so a regenerated golden diffs only where it changed,
    and record the environment it was made with."""
    nb = nbformat.read(path, as_version=4)
    for holder in [nb.metadata.get("papermill", {})] + [c.metadata.get("papermill", {}) for c in nb.cells]:
        for key in VOLATILE_METADATA:
            holder.pop(key, None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nb.metadata["cakd_environment"] = environment()
    nbformat.write(nb, path)


def printed_metrics(nb: nbformat.NotebookNode) -> dict[str, float]:
    """The `name: value` lines printed by the cells tagged cakd-metrics."""
    values: dict[str, float] = {}
    for cell in nb.cells:
        if cell.cell_type == "code" and "cakd-metrics" in cell.metadata.get("tags", []):
            text = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
            for name, value in re.findall(r"^(\S+): (-?\d+(?:\.\d+)?)$", text, flags=re.M):
                values[name] = float(value)
    return values


def fresh_metrics(name: str, results: Path) -> dict[str, float]:
    """What golden `name`'s cakd-metrics cells print, read back from the results home its execution wrote."""
    from . import files
    from .config import profile_config
    from .notebook import RUN_NOTEBOOKS, printed_metrics
    from .registry import find_run

    notebook, parameters = GOLDENS[name]
    saved = os.environ.get(paths.RESULTS_ENV)
    os.environ[paths.RESULTS_ENV] = str(results)
    try:
        if notebook == "teachers":
            return files.read_json(paths.results_home() / PROFILE / "teachers.json")
        if notebook not in RUN_NOTEBOOKS:
            return {}
        params = {k: v for k, v in parameters.items() if k != "profile"}
        run = find_run(profile_config(parameters["profile"], method=RUN_NOTEBOOKS[notebook][0], **params))
        return {} if run is None else {k: float(v) for k, v in printed_metrics(run).items()}
    finally:
        os.environ[paths.RESULTS_ENV] = saved if saved is not None else ""
        if saved is None:
            del os.environ[paths.RESULTS_ENV]


def compare_metrics(golden: dict[str, float], fresh: dict[str, float], tolerance: float = METRIC_TOLERANCE
                    ) -> list[str]:
    """The differences beyond `tolerance` between two printed metric sets (missing keys count)."""
    problems = [f"{k}: missing (golden {golden[k]})" for k in golden if k not in fresh]
    problems += [f"{k}: not in the golden" for k in fresh if k not in golden]
    for k in golden:
        allowed = LOSS_TOLERANCE * abs(golden[k]) if "loss" in k else tolerance
        if k in fresh and abs(fresh[k] - golden[k]) > allowed:
            problems.append(f"{k}: {fresh[k]} vs golden {golden[k]} (tolerance {allowed:.3g})")
    return problems


@contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """os.environ replaced for the duration (papermill's kernel inherits it)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
