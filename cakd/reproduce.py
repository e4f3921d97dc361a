"""`python -m cakd reproduce`: every manifest row through its notebook (papermill), extra seeds, the results
notebook (Table 1, Figures 2-4), then the Jupyter Book (DESIGN section 8).

Finished work is reused: a row is skipped when its executed notebook in book/runs/ came from the same
notebook source and parameters and its run is in the registry. Rows not run get a placeholder page, so the
book always builds.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import nbformat

from . import paths
from .config import TEACHERS, check_flag, profile_config
from .manifest import ROWS, Row, all_rows, get_row
from .runs import find_run, load_or_train
from .teachers import teacher_folder

KERNEL = "python3"
TEACHERS_PAGE, RESULTS_PAGE = "teachers", "results"
Log = Callable[[str], None]


def reproduce(profile: str = "smoke", rows: list[str] | None = None, seeds: int = 1, force: bool = False,
              build: bool = True, log: Log = print) -> int:
    """Run the reproduction; returns the number of failed steps (0 = everything done)."""
    profile_config(profile)                                   # every argument is checked here, before any work
    if isinstance(rows, str):
        raise ValueError(f"rows={rows!r} must be a list of row ids, e.g. [{rows!r}] (CLI: --rows {rows})")
    selected = [get_row(r) for r in rows] if rows else all_rows()
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise ValueError(f"seeds={seeds!r} must be an integer >= 1 (seed 0 runs in the notebooks, 1..N-1 directly)")
    check_flag("force", force)
    check_flag("build", build)
    ensure_kernel()
    _check_toc(log)
    paths.BOOK_RUNS.mkdir(parents=True, exist_ok=True)
    start, failed = time.perf_counter(), []

    if any(row.params.get("teachers") for row in selected):
        failed += _teachers(profile, force, log)
    for i, row in enumerate(selected, 1):
        log(f"[{i}/{len(selected)}] {row.id}: {row.label}")
        params = row.notebook_parameters(profile)
        done = not force and find_run(row.config(profile)) is not None
        if not _run_page(row.id, row.notebook, params, profile, reuse=done, log=log, row=row, force=force):
            failed.append(row.id)
    failed += _extra_seeds([row for row in selected if row.id not in failed], profile, seeds, force, log)
    _write_placeholders(profile)
    failed += _bench(profile, force, log)

    log("results: Table 1 and Figures 2-4")
    if not _run_page(RESULTS_PAGE, RESULTS_PAGE, {"profile": profile, "seeds": seeds}, profile, reuse=False,
                     log=log):
        failed.append(RESULTS_PAGE)
    if build:
        log("book: jupyter-book build .")
        if build_book() != 0:
            failed.append("book")
        else:
            log(f"book: {paths.BOOK_BUILD / 'index.html'}")

    log(f"done in {time.perf_counter() - start:.0f} s" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    if failed:
        log("a failed notebook keeps its traceback: see book/runs/<name>.ipynb (also shown in the book)")
    if profile == "smoke":
        log("NOTE: smoke-profile numbers come from synthetic data and tiny models; they are not the paper's "
            "(use --profile paper on a GPU for the report's setting).")
    return len(failed)


def execute(notebook: str, output: Path, parameters: dict[str, Any]) -> None:
    """papermill `notebooks/<notebook>.ipynb` -> `output` with `parameters`, on this interpreter's kernel."""
    import papermill

    papermill.execute_notebook(str(paths.NOTEBOOKS / f"{notebook}.ipynb"), str(output), parameters=parameters,
                               kernel_name=KERNEL, cwd=str(paths.NOTEBOOKS), progress_bar=False,
                               kernel_manager_class=_kernel_manager_class())


def build_book() -> int:
    """`jupyter-book build .` at the repository root; returns its exit code."""
    command = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", "."]
    return subprocess.run(command, cwd=paths.ROOT).returncode


def ensure_kernel() -> None:
    """Make papermill's `python3` kernel this interpreter (the one that has cakd installed).

    jupyter_client maps a kernelspec argv of plain `python`/`python3` to sys.executable; any other spec
    named python3 (say, a user-wide one for another Python) is shadowed by one written under the cache home.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    aliases = {"python", f"python{sys.version_info[0]}", "python%d.%d" % sys.version_info[:2]}
    try:
        argv0 = KernelSpecManager().get_kernel_spec(KERNEL).argv[0]
        if argv0 in aliases or os.path.abspath(argv0) == os.path.abspath(sys.executable):
            return
    except NoSuchKernel:
        pass
    folder = paths.cache_home() / "jupyter"
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (cakd)", "language": "python"}
    (folder / "kernels" / KERNEL).mkdir(parents=True, exist_ok=True)
    (folder / "kernels" / KERNEL / "kernel.json").write_text(json.dumps(spec, indent=1))
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(folder), os.environ.get("JUPYTER_PATH")]))


def _kernel_manager_class() -> type:
    """nbclient's kernel manager, with CurveZMQ-encrypted sockets where jupyter_client and zmq offer them
    (local only either way; it also keeps ipykernel from warning about plain TCP once per notebook)."""
    import zmq
    from jupyter_client.manager import AsyncKernelManager

    if "transport_encryption" not in AsyncKernelManager.class_trait_names() or not zmq.has("curve"):
        return AsyncKernelManager

    class CurveKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any):
            super().__init__(**kwargs)
            self.transport_encryption = "auto"

    return CurveKernelManager


def write_placeholder(name: str, title: str, profile: str, rows_option: str) -> None:
    """A page for a notebook that was not executed for this profile, so the book's toc stays complete."""
    command = f"python -m cakd reproduce --profile {profile} {rows_option}".strip()
    nb = nbformat.v4.new_notebook(metadata=_notebook_metadata())
    nb.cells.append(nbformat.v4.new_markdown_cell(
        f"# {title}\n\nNot run yet for the `{profile}` profile. To run it and rebuild the book:\n\n"
        f"```bash\n{command}\n```\n"))
    nb.metadata["cakd"] = _placeholder_stamp(profile)
    nbformat.write(nb, _page(name))


def _placeholder_stamp(profile: str) -> dict[str, Any]:
    return {"placeholder": True, "profile": profile}


# ----------------------------------------------------------------------------- helpers

def _teachers(profile: str, force: bool, log: Log) -> list[str]:
    """The teachers page: fine-tunes (or loads) every teacher the manifest uses. Returns failures."""
    names = [t for t in TEACHERS if any(t in row.params.get("teachers", ()) for row in all_rows())]
    log("teachers: " + ", ".join(names))
    config = profile_config(profile)
    finished = all((teacher_folder(config.teacher_config(name)) / "teacher.json").exists() for name in names)
    ok = _run_page(TEACHERS_PAGE, TEACHERS_PAGE, {"profile": profile, "teachers": names}, profile,
                   reuse=finished and not force, log=log)
    return [] if ok else [TEACHERS_PAGE]


def _bench(profile: str, force: bool, log: Log) -> list[str]:
    """The Performance page's numbers: `python -m cakd bench` when this profile has none yet (or with --force).

    The paper profile's benchmark is only meaningful on a GPU, so on a CPU it is left to the user.
    """
    import torch

    from .bench import run_benchmark

    out = paths.results_home() / profile / "bench.json"
    if out.exists() and not force:
        log(f"performance: reused {_rel(out)}")
        return []
    if profile != "smoke" and not torch.cuda.is_available():
        log(f"performance: no GPU here; run `python -m cakd bench --profile {profile} --device cuda` on one")
        return []
    log(f"performance: python -m cakd bench --profile {profile} --device auto -> {_rel(out)}")
    step = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):   # its tables are on the Performance page
            run_benchmark("auto", profile, out=out)
    except Exception as e:  # noqa: BLE001 -- report it and go on: the page then says there is no benchmark
        log(f"  FAILED: {type(e).__name__}: {e}")
        return ["bench"]
    log(f"  done ({time.perf_counter() - step:.1f} s)")
    return []


def _extra_seeds(rows: list[Row], profile: str, seeds: int, force: bool, log: Log) -> list[str]:
    """Seeds 1..seeds-1 of every row, trained directly (no notebook page). Returns failures."""
    failed = []
    for seed in range(1, seeds):
        for row in rows:
            step = time.perf_counter()
            try:
                result = load_or_train(row.config(profile, seed), force=force)
            except Exception as e:  # noqa: BLE001 -- report it and go on with the other runs
                log(f"  seed {seed} {row.id}: FAILED: {type(e).__name__}: {e}")
                failed.append(f"{row.id} (seed {seed})")
                continue
            log(f"  seed {seed} {row.id}: {'trained' if result.trained else 'reused'} "
                f"({time.perf_counter() - step:.1f} s)")
    return failed


def _write_placeholders(profile: str) -> None:
    """A page for every toc entry this profile has not executed (the toc lists all of them)."""
    pages = [(row.id, row.label, f"--rows {row.id}") for row in all_rows()] + [(TEACHERS_PAGE, "Teachers", "")]
    for name, title, option in pages:
        if _page_profile(name) != profile and _stamp(_page(name)) != _placeholder_stamp(profile):
            write_placeholder(name, title, profile, option)


def _run_page(name: str, notebook: str, parameters: dict[str, Any], profile: str, *, reuse: bool, log: Log,
              row: Row | None = None, force: bool = False) -> bool:
    """Execute one notebook into book/runs/<name>.ipynb unless an identical finished page can be reused."""
    import papermill

    output = _page(name)
    stamp = {"notebook": notebook, "source": _digest(paths.NOTEBOOKS / f"{notebook}.ipynb"),
             "parameters": parameters, "profile": profile}
    if reuse and _stamp(output) == stamp:
        log(f"  reused {_rel(output)}")
        return True
    step = time.perf_counter()
    log(f"  executing notebooks/{notebook}.ipynb -> {_rel(output)}")
    ok = True
    try:
        execute(notebook, output, {**parameters, "force": True} if force else parameters)
    except papermill.PapermillExecutionError as e:   # the page keeps the traceback
        log(f"  FAILED: {e.ename}: {(e.evalue or '').splitlines()[0] if e.evalue else ''}")
        ok = False
    except Exception as e:  # noqa: BLE001 -- a dead kernel or an unwritable page: report, go on
        log(f"  FAILED: {type(e).__name__}: {e}")
        if not output.exists():
            return False
        ok = False
    nb = nbformat.read(output, as_version=4)
    if row is not None:
        _retitle(nb, row, profile, notebook)
    nb.metadata["cakd"] = stamp if ok else {**stamp, "failed": True}
    nbformat.write(nb, output)
    log(f"  {'done' if ok else 'failed'} in {time.perf_counter() - step:.1f} s")
    return ok


def _check_toc(log: Log) -> None:
    """The book lists run pages by hand in _toc.yml: say so if a manifest row has no page there."""
    toc = (paths.ROOT / "_toc.yml").read_text()
    missing = [row.id for row in all_rows() if f"book/runs/{row.id}\n" not in toc]
    if missing:
        log(f"note: _toc.yml has no page for manifest row(s) {missing}; add `- file: book/runs/<id>` entries")


def _retitle(nb: nbformat.NotebookNode, row: Row, profile: str, notebook: str) -> None:
    """The page of a row is titled by the row (several rows share a notebook) and says where it came from."""
    report = "" if row.report_acc is None else f" The report's test accuracy for this row: {row.report_acc:.2f}%."
    kind = "Table 1 row" if row in ROWS else "Figure 4 sweep point"
    text = (f"# {row.label}\n\n{kind} `{row.id}`: the notebook `notebooks/{notebook}.ipynb` executed by "
            f"papermill with profile `{profile}` and this row's parameters (the cell tagged "
            f"`injected-parameters` below the defaults).{report}")
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("# "):
            cell.source = text
            return
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(text))


def _page(name: str) -> Path:
    return paths.inside(paths.BOOK_RUNS, f"{name}.ipynb", "row")


def _stamp(output: Path) -> dict[str, Any] | None:
    if not output.exists():
        return None
    try:
        return dict(nbformat.read(output, as_version=4).metadata.get("cakd", {}))
    except Exception:  # noqa: BLE001 -- an unreadable page is simply executed again
        return None


def _page_profile(name: str) -> str | None:
    """The profile an executed (or failed) page was made for; None for a placeholder or no page."""
    stamp = _stamp(_page(name)) or {}
    return None if stamp.get("placeholder") else stamp.get("profile")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _notebook_metadata() -> dict[str, Any]:
    return {"kernelspec": {"name": KERNEL, "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"}}


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(paths.ROOT))
    except ValueError:
        return str(path)
