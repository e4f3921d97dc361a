"""Golden notebooks for the regression tests: smoke-profile papermill outputs of every notebook, trained in float64
on generated data that a student learns in seconds (10 classes, chance 10%; the tests check that each golden
learns well above it).

`make goldens` (`python tests/goldens.py [NAME ...]`) regenerates them (after a change meant to alter reported
numbers). nbval executes each again in fresh homes and compares the cells tagged `nbval-check-output`:
- what the mathematics alone fixes (the recipe, parameter counts, the fixed-batch probe, the learning rate of
  each epoch): to the last digit;
- what training gives (the cells tagged `cakd-metrics`: every epoch's loss and accuracies, the teachers'
  accuracies) within TOLERANCES: `within_tolerance`, applied by the tests' nbval plugin before nbval compares,
  leaves a value within its tolerance equal to the golden's, so one beyond it is nbval's output mismatch.
Each golden records the environment it was made with, so a failure first says whether the environment differs.
"""
from __future__ import annotations

import os
import platform
import re
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import nbformat

from cakd.definitions import authors, paths
from cakd.definitions.config import OPTIONS
from cakd.definitions.manifest import D, R50, V, get_row
from cakd.definitions.profiles import PROFILES

PROFILE = "smoke"
# What every golden shares: generated images of 10 classes, float64, and teachers trained one epoch in batches of 16:
# the three the student goldens learn from.
GOLDEN_DATA = {"precision": "fp64", "synthetic_size": 600, "synthetic_classes": 10, "teacher_epochs": 1,
               "teacher_batch_size": 16}
GOLDEN_TEACHERS = [R50, D, V]
# The students: batches of 16 at a 24-pixel crop (resize 28), the smoke profile's code path (resize, then a random
# crop) at a smaller size, for two epochs; Method 1, whose students learn slowest, three (GOLDENS).
GOLDEN_SETTINGS = {**GOLDEN_DATA, "epochs": 2, "batch_size": 16, "resize": 28, "crop": 24}
# Training from scratch with AdamW magnifies a last-bit difference, and some CPU code paths round differently:
# torch's vectorized kernels (AVX2, AVX-512, NEON) against its scalar ones, and MKL's matrix kernels, which it
# picks by CPU and thread count. So the goldens pin torch's scalar kernels, which every CPU has, and MKL's
# conditional numerical reproducibility (one code path on every x86 CPU), whatever the environment says outside.
PINNED = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}
# Measured across thread counts (1, 2) and x86-64 CPUs (AVX2, AVX-512) with PINNED: every accuracy equal, losses
# within 1.1e-9 relative (the online-teaching golden: its fp16-rounded teacher logits can round a last bit the other
# way). A loss may move thirty times that; accuracies not at all. Each mutation of tests/test_mutations.py moves a
# compared value beyond these (that test proves it).
TOLERANCES = {"loss": 3e-8, "acc": 0.0}   # relative for losses; percentage points for accuracies; others exact
SANITIZE = paths.GOLDEN / "sanitize.cfg"
# The consistent profile's path: its student and views, teaching on the student's own views (online), and the
# report's equations where the smoke profile follows the authors' code.
CONSISTENT_PATH = {**{k: OPTIONS[k].default for k in authors.settings() if k != "precision"},
                   **{k: v for k, v in PROFILES["consistent"].settings.items() if k not in ("profile", "dataset")},
                   "teacher_mode": "online"}


def _row(row_id: str, **overrides: Any) -> tuple[str, dict[str, Any]]:
    row = get_row(row_id)
    return row.notebook, {**row.notebook_parameters(PROFILE), **GOLDEN_SETTINGS, **overrides}


# Every notebook and every loss runs; Method 2 runs the consistent profile's path (32x32 student taught on its
# own views, online), the others the paper profile's (resize-then-crop student, fixed teacher targets).
GOLDENS: dict[str, tuple[str, dict[str, Any]]] = {
    "baseline": _row("baseline"),
    "kd_densenet121": _row("kd_densenet121"),
    "m1_drv": _row("m1_drv", epochs=3),
    "m2_drv_consistent": _row("m2_drv", **CONSISTENT_PATH),
    "m3_dr_t16": _row("m3_dr_t16"),
    "teachers": ("teachers", {"profile": PROFILE, **GOLDEN_DATA, "teachers": GOLDEN_TEACHERS}),
    "results": ("results", {"profile": PROFILE}),       # fresh homes: every row shows as missing
}
VOLATILE_METADATA = ("start_time", "end_time", "duration", "execution")
METRIC_LINE = re.compile(r"^(\S+): (-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)$", re.M)


def golden_path(name: str) -> Path:
    return paths.GOLDEN / f"{name}.ipynb"


def golden_environment(results: Path, cache: Path) -> dict[str, str]:
    """Environment of a golden's kernel: its own results home, the shared cache home, offline; CAKD_THREADS as
    given (1 by default); the CPU code paths PINNED."""
    threads = os.environ.get("CAKD_THREADS", "1")
    return {**os.environ, paths.RESULTS_ENV: str(results), paths.CACHE_ENV: str(cache),
            paths.DATA_ENV: str(cache / "data"), "CAKD_THREADS": threads, "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads, "HF_HUB_OFFLINE": "1", **PINNED}


def environment() -> dict[str, str]:
    """What a golden was made with (and what a check runs on)."""
    import torch

    return {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "system": platform.system(), "threads": os.environ.get("CAKD_THREADS", "1")}


def tolerance(name: str, golden: float) -> float:
    """How far a printed training value may lie from the golden's (0: exactly)."""
    if "loss" in name:
        return TOLERANCES["loss"] * abs(golden)
    return TOLERANCES["acc"] if name.endswith("acc") else 0.0


def differs(name: str, golden: float, fresh: float) -> bool:
    """Whether a printed training value lies beyond its tolerance of the golden's (nbval would report it)."""
    return abs(fresh - golden) > tolerance(name, golden)


def within_tolerance(golden: str, fresh: str) -> str:
    """`fresh` text with each `name: value` line that lies within tolerance of the golden's line of that name
    written as the golden's: nbval then finds them equal, and a value beyond its tolerance a mismatch."""
    values = dict(METRIC_LINE.findall(golden))

    def settle(m: re.Match) -> str:
        name, value = m.groups()
        near = name in values and not differs(name, float(values[name]), float(value))
        return f"{name}: {values[name]}" if near else m.group(0)
    return METRIC_LINE.sub(settle, fresh)


def regenerate(names: list[str] | None = None, log=print) -> None:
    """Execute each golden's notebook with papermill in fresh homes and save it without volatile metadata."""
    from cakd.book.pages import execute

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
            nb = nbformat.read(golden_path(name), as_version=4)   # no timestamps: a golden diffs where it changed
            for holder in [nb.metadata.get("papermill", {})] + [c.metadata.get("papermill", {}) for c in nb.cells]:
                for key in VOLATILE_METADATA:
                    holder.pop(key, None)
            for cell in nb.cells:
                cell.metadata.pop("execution", None)
            nb.metadata["cakd_environment"] = environment()
            nbformat.write(nb, golden_path(name))


def _environment(env: dict[str, str]) -> Any:
    """os.environ replaced by `env` for the duration (papermill's kernel inherits it)."""
    return mock.patch.dict(os.environ, env, clear=True)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python tests/goldens.py", description="Execute every golden's notebook "
                                     "under the smoke profile in fresh homes and save it with its outputs as "
                                     "tests/golden/<name>.ipynb; review the diff.")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"only these (default: all): {sorted(GOLDENS)}")
    regenerate(parser.parse_args().names or None)
