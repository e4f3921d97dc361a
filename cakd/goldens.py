"""Golden notebooks for the nbval regression tests: smoke-profile papermill outputs of every notebook.

`python -m cakd goldens` regenerates them (after a change that is meant to alter reported numbers).
Each golden runs in fresh results and cache homes with a fixed thread count, exactly as
tests/test_golden.py re-executes it, so it reads nothing from an earlier run and its numbers are
reproducible. The rows are chosen so that every notebook and every loss runs.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import nbformat

from . import paths
from .manifest import get_row

PROFILE = "smoke"
THREADS = "1"        # the same thread count when generating and checking: bitwise-equal CPU numerics
SANITIZE = paths.GOLDEN / "sanitize.cfg"
_ROWS = ("baseline", "kd_densenet121", "m1_drv", "m2_drv", "m3_dr_t16")   # CE, KD, Methods 1, 2, 3
GOLDENS: dict[str, tuple[str, dict[str, Any]]] = {
    **{row: (get_row(row).notebook, get_row(row).notebook_parameters(PROFILE)) for row in _ROWS},
    "teachers": ("teachers", {"profile": PROFILE}),
    "results": ("results", {"profile": PROFILE}),       # fresh homes: every row shows as missing
}
VOLATILE_METADATA = ("start_time", "end_time", "duration", "execution")


def golden_path(name: str) -> Path:
    return paths.GOLDEN / f"{name}.ipynb"


def golden_environment(home: Path) -> dict[str, str]:
    """Environment of a golden's kernel: fresh homes under `home`, fixed threads, no network."""
    return {**os.environ, paths.RESULTS_ENV: str(home / "results"), paths.CACHE_ENV: str(home / "cache"),
            paths.DATA_ENV: str(home / "data"), "CAKD_THREADS": THREADS, "OMP_NUM_THREADS": THREADS,
            "MKL_NUM_THREADS": THREADS, "HF_HUB_OFFLINE": "1"}


def regenerate(names: list[str] | None = None, log=print) -> None:
    """Execute each golden's notebook with papermill in fresh homes and save it without volatile metadata."""
    from .reproduce import ensure_kernel, execute

    unknown = sorted(set(names or []) - set(GOLDENS))
    if unknown:
        raise ValueError(f"golden(s) {unknown} unknown; goldens are {sorted(GOLDENS)}")
    ensure_kernel()
    for name in names or list(GOLDENS):
        notebook, parameters = GOLDENS[name]
        log(f"golden {name}: notebooks/{notebook}.ipynb {parameters}")
        with tempfile.TemporaryDirectory() as home, _environment(golden_environment(Path(home))):
            execute(notebook, golden_path(name), parameters)
        strip_volatile(golden_path(name))


def strip_volatile(path: Path) -> None:
    """Drop timestamps and durations (papermill, nbclient) so a regenerated golden diffs only where it changed."""
    nb = nbformat.read(path, as_version=4)
    for holder in [nb.metadata.get("papermill", {})] + [c.metadata.get("papermill", {}) for c in nb.cells]:
        for key in VOLATILE_METADATA:
            holder.pop(key, None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)


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
