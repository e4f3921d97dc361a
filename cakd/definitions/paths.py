"""Every path cakd reads or writes, in one place, so notebooks, papermill, nbval and Sphinx agree.

Small result files go under the results home (read by the book); heavy files (teacher checkpoints, logit caches, student
checkpoints, datasets) under the cache home. Both can be moved with environment variables, read at call time so tests
can point them at temporary folders."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]    # the repository (cakd is installed in editable mode)
PACKAGE = ROOT / "cakd"                        # its code: a book page is made again when it changes
NOTEBOOKS = ROOT / "notebooks"
BOOK = ROOT / "book"
BOOK_RUNS = BOOK / "runs"                      # executed notebooks the book shows, one per manifest row
GOLDEN = ROOT / "tests" / "golden"             # smoke-profile notebooks committed with outputs (nbval)

RESULTS_ENV = "CAKD_RESULTS"
CACHE_ENV = "CAKD_CACHE"
DATA_ENV = "CAKD_DATA"


def results_home() -> Path:
    """Run registry: config.json, history.csv, metrics.json per run; figures; the benchmark file."""
    return Path(os.environ.get(RESULTS_ENV, ROOT / "results")).resolve()


def cache_home() -> Path:
    """Teacher checkpoints, teacher-logit caches, student checkpoints (resume)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cakd"
    return Path(os.environ.get(CACHE_ENV, default)).resolve()


def data_home() -> Path:
    """Where torchvision keeps (or downloads) CIFAR-100: the folder that holds `cifar-100-python/`."""
    return Path(os.environ.get(DATA_ENV, cache_home() / "data")).resolve()


def runs_dir(profile: str) -> Path:
    return results_home() / profile / "runs"


def figures_dir(profile: str) -> Path:
    return results_home() / profile / "figures"


def checkpoints_dir(profile: str) -> Path:
    return cache_home() / profile / "checkpoints"


def teachers_dir(profile: str) -> Path:
    return cache_home() / profile / "teachers"


def logit_cache_dir(profile: str) -> Path:
    return cache_home() / profile / "logits"


def pretrained_dir() -> Path:
    """The public teacher checkpoints, downloaded once (shared by every profile)."""
    return cache_home() / "pretrained"


def inside(base: Path, relative: str, what: str) -> Path:
    """`base / relative`, refusing anything that escapes `base` (`..`, absolute paths, links out)."""
    path = (base / relative).resolve()
    if path != base.resolve() and base.resolve() not in path.parents:
        raise ValueError(f"{what}={relative!r} escapes {base}; use a plain name such as 'my-run'")
    return path
