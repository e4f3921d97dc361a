"""`python -m cakd reproduce`: the teachers page, every manifest row and seed (seed 0 through its notebook,
papermill, seeds 1..N-1 through load_or_train), the results notebook (Table 1, Figures 2-4), then the Jupyter
Book. The runs go through `cakd.engine`: several at a time, on GPUs or a Ray cluster.

Finished work is reused: a run is skipped when the registry holds it and, for seed 0, its executed notebook in
book/runs/ came from the same notebook source and parameters. A failed run loses no other: each lands in the
registry as it finishes. Rows not run get a placeholder page, so the book always builds.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import nbformat

from . import files, kernel, paths
from .config import RunConfig, check_flag, profile_config
from .engine import Engine, EngineOptions, Job, LineSink, Outcome, Progress, default_runs_per_gpu, summary_table
from .manifest import ROWS, Row, all_rows, get_row
from .runs import find_run, load_or_train
from .models import TEACHERS
from .teachers import TeacherTraining, teacher_folder

TEACHERS_PAGE, RESULTS_PAGE = "teachers", "results"
Log = Callable[[str], None]


def reproduce(profile: str = "smoke", rows: list[str] | None = None, seeds: int = 1, force: bool = False,
              build: bool = True, log: Log = print, *, workers: int = 1, runs_per_gpu: int | None = None,
              address: str | None = None, terminal: bool | None = None) -> int:
    """Run the reproduction; returns the number of failed steps (0 = everything done).

    Runs go through `cakd.engine`: `workers` CPU runs at a time, `runs_per_gpu` runs on each GPU (default: the
    profile's), or the Ray cluster at `address`. `terminal` (default: stderr is one) picks bars over lines.
    """
    profile_config(profile)                                   # every argument is checked here, before any work
    if isinstance(rows, str):
        raise ValueError(f"rows={rows!r} must be a list of row ids, e.g. [{rows!r}] (CLI: --rows {rows})")
    selected = [get_row(r) for r in rows] if rows else all_rows()
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise ValueError(f"seeds={seeds!r} must be an integer >= 1 (seed 0 runs in the notebooks, 1..N-1 directly)")
    check_flag("force", force)
    check_flag("build", build)
    options = EngineOptions(workers, default_runs_per_gpu(profile) if runs_per_gpu is None else runs_per_gpu,
                            address)                          # an address where nothing answers fails here
    for row in selected:
        for seed in range(seeds):
            row.config(profile, seed)                         # a broken row fails now, not after hours of others
    engine = Engine(options, gpu=profile_config(profile).device != "cpu")
    start, failed = time.perf_counter(), []
    with engine:
        kernel.ensure()
        _check_toc(log)
        paths.BOOK_RUNS.mkdir(parents=True, exist_ok=True)
        log(f"runs: {engine.where}")
        outcomes = run_all(engine, selected, profile, seeds, force, log, terminal)
    failed += [o.name if o.seed is None else f"{o.name} (seed {o.seed})" for o in outcomes if o.failed]
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

    log("\n" + summary_table(outcomes) + "\n")
    log(f"done in {time.perf_counter() - start:.0f} s" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    if failed:
        log("a failed notebook keeps its traceback: see book/runs/<name>.ipynb (also shown in the book); "
            f"a failed direct run's log is under {_rel(_logs(profile))}. Run the same command again: finished "
            "runs are reused and interrupted ones resume.")
    if profile == "smoke":
        log("NOTE: smoke-profile numbers come from synthetic data and tiny models; they are not the paper's "
            "(use --profile paper on a GPU for the report's setting).")
    return len(failed)


@dataclass(frozen=True)
class RunTask:
    """What a worker needs for one job (sent to it whole: it reads neither the manifest nor notebooks/)."""
    config: RunConfig | None              # the run the job makes; None for the teachers page
    force: bool = False
    source: str | None = None             # the notebook (JSON) to execute; None: load_or_train directly
    parameters: dict[str, Any] = field(default_factory=dict)
    stamp: dict[str, Any] | None = None   # the page's stamp (what it was made from), written by the driver
    row: Row | None = None                # the row a page is titled by


def run_all(engine: Engine, rows: list[Row], profile: str, seeds: int, force: bool, log: Log,
            terminal: bool | None = None) -> list[Outcome]:
    """The teachers page, then every (row, seed) on `engine`; finished ones are reused without a job.

    Seed 0 executes the row's notebook (its page in book/runs/ is the record); seeds 1..N-1 call
    load_or_train. Each run lands in the registry as it finishes, whatever happens to the others.
    """
    outcomes, teachers_ok = [], True
    if any(row.params.get("teachers") for row in rows):
        teachers = _teachers_stage(engine, profile, force, log, terminal)
        outcomes.append(teachers)
        teachers_ok = not teachers.failed
    entries: list[Outcome | Job] = []
    builders: dict[str, int] = {}     # teacher -> the job that builds its logit cache (the others wait for it)
    jobs: list[Job] = []
    for seed in range(seeds):
        for row in rows:
            config = row.config(profile, seed)
            entries.append(_plan(row, seed, config, profile, force, teachers_ok))
            if isinstance(entries[-1], Job):
                job = _after_cache_builders(entries[-1], config, len(jobs), builders)
                entries[-1] = job
                jobs.append(job)
    if len(jobs) < len(entries):
        log(f"{len(entries) - len(jobs)} of {len(entries)} runs finished before: reused")
    progress = Progress(jobs, log=log, terminal=terminal)
    try:   # each page is written as its job finishes: an interrupted reproduction keeps the finished ones
        done = iter(engine.run(jobs, run_job, progress, lambda i, outcome: _save_page(jobs[i], outcome, profile)))
    finally:
        progress.close()
    return outcomes + [next(done) if isinstance(entry, Job) else entry for entry in entries]


def run_job(job: Job) -> Outcome:
    """One job, on a worker: a notebook executed by papermill, or load_or_train. Its stderr is the engine's."""
    task: RunTask = job.payload
    if task.source is None:
        result = load_or_train(task.config, force=task.force)
        return Outcome(job.name, job.seed, "trained" if result.trained else "reused", test_acc=result.accuracy)
    kernel.ensure()
    finished_before = task.config is not None and not task.force and find_run(task.config) is not None
    page, error = execute_source(task.source, task.parameters, stderr_file=sys.stderr)
    if error is None and task.config is not None and (run := find_run(task.config)) is not None:
        return Outcome(job.name, job.seed, "reused" if finished_before else "trained", test_acc=run.accuracy,
                       page=page)
    if error is None and task.config is not None:
        error = "the notebook finished but its run is not in the registry (its parameters differ from the row's)"
    return Outcome(job.name, job.seed, "done" if error is None else "FAILED", error=error, page=page)


def execute(notebook: str, output: Path, parameters: dict[str, Any]) -> None:
    """papermill `notebooks/<notebook>.ipynb` -> `output` with `parameters`, on this interpreter's kernel."""
    _papermill(str(paths.NOTEBOOKS / f"{notebook}.ipynb"), output, parameters)


def execute_source(source: str, parameters: dict[str, Any], stderr_file: Any = None) -> tuple[str | None, str | None]:
    """Execute a notebook given as JSON text; returns (the executed notebook as JSON, None) or, when it
    failed, (the notebook with its traceback or None, 'ErrorName: first line'). The kernel's stderr stream
    goes to `stderr_file` (the engine reads the epoch lines there)."""
    import papermill

    with tempfile.TemporaryDirectory(prefix="cakd-page-") as folder:
        output = Path(folder) / "page.ipynb"
        error = None
        try:
            _papermill(nbformat.reads(source, as_version=4), output, parameters, stderr_file)
        except papermill.PapermillExecutionError as e:       # the page keeps the traceback
            error = f"{e.ename}: {(e.evalue or '').strip().splitlines()[0] if (e.evalue or '').strip() else ''}"
        except Exception as e:  # noqa: BLE001 -- a dead kernel, a kernel that did not start
            error = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"
        return (output.read_text() if output.exists() else None), error


def _papermill(notebook: Any, output: Path, parameters: dict[str, Any], stderr_file: Any = None) -> None:
    import papermill

    papermill.execute_notebook(notebook, str(output), parameters=parameters, kernel_name=kernel.KERNEL,
                               cwd=str(paths.NOTEBOOKS), progress_bar=False, stderr_file=stderr_file)


def build_book() -> int:
    """`jupyter-book build .` at the repository root; returns its exit code."""
    command = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", "."]
    return subprocess.run(command, cwd=paths.ROOT).returncode


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

def _teachers_stage(engine: Engine, profile: str, force: bool, log: Log, terminal: bool | None) -> Outcome:
    """The teachers page, once, before any run: it trains (smoke) or loads every teacher the manifest uses."""
    names = [t for t in TEACHERS if any(t in row.params.get("teachers", ()) for row in all_rows())]
    log("teachers: " + ", ".join(names))
    config = profile_config(profile)
    parameters = {"profile": profile, "teachers": names}
    # teachers trained here (smoke) must be on disk; published ones are loaded by the page itself
    finished = config.teacher_weights == "public" or all(
        (teacher_folder(TeacherTraining.of(config, name)) / "teacher.json").exists() for name in names)
    stamp = _page_stamp(TEACHERS_PAGE, parameters, profile)
    if finished and not force and _stamp(_page(TEACHERS_PAGE)) == stamp:
        log(f"  reused {_rel(_page(TEACHERS_PAGE))}")
        return Outcome(TEACHERS_PAGE, None, "reused")
    task = RunTask(None, force, _source(TEACHERS_PAGE), {**parameters, "force": True} if force else parameters, stamp)
    job = Job(TEACHERS_PAGE, None, task, gpu=config.device != "cpu")
    progress = Progress([job], log=log, terminal=terminal)
    try:
        [outcome] = engine.run([job], run_job, progress, lambda i, outcome: _save_page(job, outcome, profile))
    finally:
        progress.close()
    return outcome


def _plan(row: Row, seed: int, config: RunConfig, profile: str, force: bool, teachers_ok: bool) -> Outcome | Job:
    """A job for (row, seed), or its outcome when nothing needs doing (finished before; teachers missing)."""
    if config.teachers and not teachers_ok:
        return Outcome(row.id, seed, "FAILED", error=f"not run: the teachers page failed "
                                                     f"(see {_rel(_page(TEACHERS_PAGE))})")
    parameters = row.notebook_parameters(profile)
    stamp = _page_stamp(row.notebook, parameters, profile)
    run = None if force else find_run(config)
    if run is not None and (seed > 0 or _stamp(_page(row.id)) == stamp):
        return Outcome(row.id, seed, "reused", test_acc=run.accuracy)
    if seed > 0:
        task = RunTask(config, force)
    else:
        task = RunTask(config, force, _source(row.notebook), {**parameters, "force": True} if force else parameters,
                       stamp, row)
    return Job(row.id, seed, task, gpu=config.device != "cpu")


def _after_cache_builders(job: Job, config: RunConfig, index: int, builders: dict[str, int]) -> Job:
    """The first job that uses a teacher whose logit cache is not built yet builds it; the other jobs using that
    teacher wait for it, so runs side by side never build the same (large) cache twice."""
    if config.teacher_mode != "cache":
        return job
    after = set()
    for name in config.teachers:
        if _cache_built(config, name):
            continue
        if name in builders:
            after.add(builders[name])
        else:
            builders[name] = index
    return Job(job.name, job.seed, job.payload, job.gpu, tuple(sorted(after)))


def _cache_built(config: RunConfig, name: str) -> bool:
    """Whether a logit cache of `name` exists for the profile (cakd.teaching.load_or_build_cache keeps them as
    <teacher>-<fingerprint>/, meta.json written last). One that turns out stale is rebuilt by its first user."""
    return any(paths.logit_cache_dir(config.profile).glob(f"{name}-*/meta.json"))


def _save_page(job: Job, outcome: Outcome, profile: str) -> None:
    """After a job: its executed page into book/runs/ (titled, stamped; the stamp says if it failed), and the
    log of a failed job under results/<profile>/logs/."""
    task: RunTask = job.payload
    if outcome.failed and outcome.log:
        name = job.name if job.seed is None else f"{job.name}-seed{job.seed}"
        files.write_text(_logs(profile) / f"{name}.log", outcome.log)
    if outcome.page is None or task.stamp is None:
        return
    nb = nbformat.reads(outcome.page, as_version=4)
    _fold_parameters(nb)
    if task.row is not None:
        _retitle(nb, task.row, profile, task.row.notebook)
    _label_profile(nb, profile)
    nb.metadata["cakd"] = task.stamp if not outcome.failed else {**task.stamp, "failed": True}
    nbformat.write(nb, _page(job.name))
    outcome.page = None                     # written: the summary does not need to carry it


def _bench(profile: str, force: bool, log: Log) -> list[str]:
    """The Performance page's numbers: `python -m cakd bench` when this profile has none yet (or with --force).

    The paper profile's benchmark is only meaningful on a GPU, so on a CPU it is left to the user.
    """
    import torch

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
        from .bench import run_benchmark                  # inside: a broken benchmark must not lose the runs

        with contextlib.redirect_stdout(io.StringIO()):   # its tables are on the Performance page
            run_benchmark("auto", profile, out=out, command=f"python -m cakd bench --profile {profile} --device auto")
    except Exception as e:  # noqa: BLE001 -- report it and go on: the page then says there is no benchmark
        log(f"  FAILED: {type(e).__name__}: {e}")
        return ["bench"]
    log(f"  done ({time.perf_counter() - step:.1f} s)")
    return []


def _write_placeholders(profile: str) -> None:
    """A page for every toc entry this profile has not executed (the toc lists all of them)."""
    pages = [(row.id, row.label, f"--rows {row.id}") for row in all_rows()] + [(TEACHERS_PAGE, "Teachers", "")]
    for name, title, option in pages:
        if _page_profile(name) != profile and _stamp(_page(name)) != _placeholder_stamp(profile):
            write_placeholder(name, title, profile, option)


def _run_page(name: str, notebook: str, parameters: dict[str, Any], profile: str, *, reuse: bool,
              log: Log) -> bool:
    """Execute one notebook here into book/runs/<name>.ipynb unless an identical finished page can be reused."""
    output = _page(name)
    stamp = _page_stamp(notebook, parameters, profile)
    if reuse and _stamp(output) == stamp:
        log(f"  reused {_rel(output)}")
        return True
    step = time.perf_counter()
    log(f"  executing notebooks/{notebook}.ipynb -> {_rel(output)}")
    page, error = execute_source(_source(notebook), parameters, stderr_file=LineSink(lambda line: None))
    if error is not None:
        log(f"  FAILED: {error}")
    if page is None:
        return False
    nb = nbformat.reads(page, as_version=4)
    _fold_parameters(nb)
    _label_profile(nb, profile)
    nb.metadata["cakd"] = stamp if error is None else {**stamp, "failed": True}
    nbformat.write(nb, output)
    log(f"  {'done' if error is None else 'failed'} in {time.perf_counter() - step:.1f} s")
    return error is None


def _page_stamp(notebook: str, parameters: dict[str, Any], profile: str) -> dict[str, Any]:
    """What a page was made from: a page whose stamp matches is reused instead of executed again."""
    return {"notebook": notebook, "source": _digest(paths.NOTEBOOKS / f"{notebook}.ipynb"),
            "parameters": parameters, "profile": profile}


def _source(notebook: str) -> str:
    return (paths.NOTEBOOKS / f"{notebook}.ipynb").read_text()


def _logs(profile: str) -> Path:
    return paths.results_home() / profile / "logs"


def _check_toc(log: Log) -> None:
    """_toc.yml is generated from the manifest: say so if it is out of date (the book would miss pages)."""
    from .book import render_toc

    if (paths.ROOT / "_toc.yml").read_text() != render_toc():
        log("note: _toc.yml does not match the manifest; regenerate it with `python -m cakd.book`")


def _retitle(nb: nbformat.NotebookNode, row: Row, profile: str, notebook: str) -> None:
    """The page of a row is titled by the row (several rows share a notebook) and says where it came from; a
    profile that cannot be compared with the report says so at the top, and the report's number is left out."""
    from .report import profile_note

    note = profile_note(profile)
    figures = ", ".join(f"Figure {f[-1]}" for f in row.figures)
    kind = "Table 1 row" if row in ROWS else f"a point of {figures}" + (" (ours, not in the report)" if row.ours else "")
    report = ("" if row.report_acc is None or not note.comparable
              else f" The report's test accuracy for this row: {row.report_acc:.2f}%.")
    text = (f"# {row.label}\n\n{kind} `{row.id}`: the notebook `notebooks/{notebook}.ipynb` executed by "
            f"papermill with profile `{profile}` and this row's parameters (the cell tagged "
            f"`injected-parameters` below the defaults).{report}")
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("# "):
            cell.source = text
            return
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(text))


def _label_profile(nb: nbformat.NotebookNode, profile: str) -> None:
    """Under the page's title, a warning box when the profile cannot be compared with the report (smoke)."""
    from .report import profile_note

    banner = profile_note(profile).banner
    titles = [cell for cell in nb.cells if cell.cell_type == "markdown" and cell.source.lstrip().startswith("# ")]
    if banner and titles:
        title, _, rest = titles[0].source.strip().partition("\n")
        titles[0].source = f"{title}\n\n```{{warning}}\n{banner}\n```\n\n{rest.strip()}".strip()


def _fold_parameters(nb: nbformat.NotebookNode) -> None:
    """The book shows the parameters and papermill's injected ones folded, like every other code cell of a page."""
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if {"parameters", "injected-parameters"} & set(tags) and "hide-input" not in tags:
            tags.append("hide-input")


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
    return {"kernelspec": {"name": kernel.KERNEL, "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"}}


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(paths.ROOT))
    except ValueError:
        return str(path)
