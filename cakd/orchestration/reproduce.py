"""`python -m cakd reproduce`: every manifest row and seed as Ray tasks, then the results page and the book.

Each task waits for exactly what it reads: teachers trained here (smoke) -> teacher-logit caches, each built once ->
runs -> each row's page; the caches -> the teachers page. Finished work (a run in the registry, a page whose stamp is
unchanged) makes no task. A task on a lost worker or node is retried and resumes from its checkpoint; a failing task
fails alone, and the summary says which and why. On a cluster, every node must see the same results and cache homes:
that is checked first."""
from __future__ import annotations

import io
import logging
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import nbformat
import pandas as pd

from ..book.pages import RESULTS_PAGE, TEACHERS_PAGE, Page, Rendered, first_line, render_toc, row_pages, stamp_of, \
    write_placeholders
from ..definitions import files, paths
from ..definitions.config import RunConfig, TeacherTraining, check_flag, is_count
from ..definitions.manifest import Row, all_rows, select_rows, teachers_used
from ..definitions.profiles import Profile, get_profile
from ..definitions.registry import find_run

RETRIES = 2          # attempts after the first, when a worker or a node is lost (a Python error is not retried)
Log = Callable[[str], None]


@dataclass
class Outcome:
    name: str
    seed: int | None
    status: str                   # trained | reused | done | FAILED
    seconds: float = 0.0
    test_acc: float | None = None
    error: str | None = None      # one line; the whole traceback goes to results/<profile>/logs/


@dataclass(frozen=True)
class Resources:
    """Where the tasks run: `workers` CPU runs at a time, `runs_per_gpu` runs on each GPU, or a Ray cluster."""
    workers: int = 1
    runs_per_gpu: int = 1
    address: str | None = None

    def __post_init__(self) -> None:
        for name in ("workers", "runs_per_gpu"):
            value = getattr(self, name)
            if not is_count(value, 1):
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{name}={value!r} must be an integer >= 1 ({flag} 1 runs one at a time)")
        if self.address is not None:
            _check_address(self.address)
            if self.workers != 1:
                raise ValueError(f"workers={self.workers} and address={self.address!r} do not go together: on a "
                                 "cluster its nodes' CPUs and GPUs set the workers; drop --workers")


def reproduce(profile: str = "smoke", rows: list[str] | None = None, seeds: int = 1, force: bool = False,
              build: bool = True, log: Log = print, *, workers: int = 1, runs_per_gpu: int = 1,
              address: str | None = None) -> int:
    """Run the reproduction; returns the number of failed steps (0 = everything done)."""
    spec = get_profile(profile)                               # every argument is checked here, before any work
    selected = select_rows(rows, all_rows())
    if not is_count(seeds, 1):
        raise ValueError(f"seeds={seeds!r} must be an integer >= 1 (seed 0 runs in the notebooks, 1..N-1 directly)")
    check_flag("force", force)
    check_flag("build", build)
    resources = Resources(workers, runs_per_gpu, address)    # an address where nothing answers fails here
    runs = [(row, seed, row.config(profile, seed)) for seed in range(seeds) for row in selected]
    start = time.perf_counter()
    if (paths.ROOT / "_toc.yml").read_text() != render_toc():   # generated from the manifest: a stale one misses pages
        log("note: _toc.yml does not match the manifest; regenerate it with `python -m cakd notebooks`")
    with ray_session(resources, gpu=spec.needs_gpu) as where:
        log(f"runs: {where}")
        outcomes = run_grid(runs, spec, force, log, gpu_share=1 / runs_per_gpu)
    write_placeholders(profile)
    failed = [o.name if o.seed is None else f"{o.name} (seed {o.seed})" for o in outcomes if o.status == "FAILED"]
    failed += _bench(spec, force, log)
    log("results: Table 1 and Figures 2-4")
    results = Page(RESULTS_PAGE, RESULTS_PAGE, {"profile": profile, "seeds": seeds}, profile)
    log(f"  executing notebooks/{RESULTS_PAGE}.ipynb -> {_rel(results.path)}")
    outcome = _saved(results.render())
    log(f"  {describe(outcome)}")
    failed += [RESULTS_PAGE] if outcome.status == "FAILED" else []
    if build:
        log("book: jupyter-book build .")
        failed += [] if build_book() == 0 else ["book"]
    log("\n" + summary_table(outcomes) + "\n")
    log(f"done in {time.perf_counter() - start:.0f} s" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    if failed:
        log(f"a failed page keeps its traceback in book/runs/<name>.ipynb; a failed task's traceback is under "
            f"{_rel(_logs(profile))}. Run the same command again: finished work is reused, interrupted runs resume.")
    if spec.banner:
        log(f"NOTE: {spec.banner}.")
    return len(failed)


# ----------------------------------------------------------------------------- the task graph

def run_grid(runs: list[tuple[Row, int, RunConfig]], profile: Profile, force: bool, log: Log,
             gpu_share: float = 1.0) -> list[Outcome]:
    """Submit the tasks `runs` need (teachers, caches, runs, their pages, the teachers page) and wait for all;
    an Outcome per run and page, finished work (no task) included."""
    import ray

    from ..training.teaching import cache_key

    gpu = profile.needs_gpu and ray.cluster_resources().get("GPU", 0) > 0
    share = dict(num_gpus=gpu_share, num_cpus=0) if gpu else dict(num_cpus=1)
    task = lambda fn, **extra: ray.remote(max_retries=RETRIES, **{**share, **extra})(fn)   # noqa: E731
    teacher_task, cache_task, run_task = task(_train_teacher), task(_build_cache), task(_train_run)
    page_task = task(_render, num_cpus=1, num_gpus=0)   # a page reads a finished run: a CPU is enough
    teachers, caches, pending, outcomes = {}, {}, {}, []
    bars = sys.stderr.isatty()    # Ray's progress bars on a terminal; in a log, a line per epoch and per finished task

    def teacher_refs(config: RunConfig, name: str) -> list[Any]:
        if config.teacher_weights != "train":
            return []                                   # published weights: the cache task fetches them
        key = TeacherTraining.of(config, name)
        if key not in teachers:
            teachers[key] = teacher_task.options(name=f"teacher {name}").remote(config, name, force, bars)
        return [teachers[key]]

    def needs(config: RunConfig) -> list[Any]:
        """What a run reads, as task references: its teachers' caches (or, online, the teachers)."""
        if config.teacher_mode != "cache":
            return [ref for name in config.teachers for ref in teacher_refs(config, name)]
        for name in config.teachers:
            if (key := files.digest(cache_key(config, name))) not in caches:
                caches[key] = cache_task.options(name=f"cache {name}").remote(config, name, bars,
                                                                              *teacher_refs(config, name))
        return [caches[files.digest(cache_key(config, name))] for name in config.teachers]

    def submit(page: Page, *after: Any, on: Any = page_task) -> None:
        stamp = page.stamp()
        if after or force or stamp_of(page.path) != stamp:
            source = nbformat.read(paths.NOTEBOOKS / f"{page.notebook}.ipynb", as_version=4)
            pending[on.options(name=f"page {page.name}").remote(page, source, stamp, *after)] = (page.name, None)

    pages = {page.row.id: page for page in row_pages([row for row, seed, _ in runs if seed == 0], profile.name)}
    for row, seed, config in runs:
        run = None if force else find_run(config)
        if run is None:
            ref = run_task.options(name=f"{row.id} seed {seed}").remote(row.id, config, force, bars, *needs(config))
            pending[ref] = (row.id, seed)
        else:
            outcomes.append(Outcome(row.id, seed, "reused", test_acc=run.accuracy))
        if seed == 0:
            submit(pages[row.id], *([] if run else [ref]))
    if names := teachers_used([row for row, _, _ in runs]):
        config = profile.config()
        after = [r for name in names for r in teacher_refs(config, name)] + list(caches.values())
        submit(Page(TEACHERS_PAGE, TEACHERS_PAGE, {"profile": profile.name, "teachers": sorted(names)}, profile.name),
               *after, on=task(_render))                 # it loads every teacher: a run's resources
    return outcomes + _collect(pending, profile.name, log)


def _collect(pending: dict[Any, tuple[str, int | None]], profile: str, log: Log) -> list[Outcome]:
    """Wait for every task; each one's result or failure becomes its Outcome, in the order they finish."""
    import ray

    outcomes, start, left = [], time.perf_counter(), list(pending)
    while left:
        [ref], left = ray.wait(left, num_returns=1)
        name, seed = pending[ref]
        try:
            outcome = ray.get(ref)
        except Exception as e:  # noqa: BLE001 -- its error (or its dependency's) is this task's outcome
            cause = getattr(e, "cause", None) or e
            outcome = Outcome(name, seed, "FAILED", error=f"{type(cause).__name__}: {first_line(cause)}")
            files.write_text(_logs(profile) / f"{name}{'' if seed is None else f'-seed{seed}'}.log",
                             re.sub(r"\x1b\[[0-9;]*m", "", str(e)))   # Ray's remote traceback, uncoloured
        if isinstance(outcome, Rendered):
            outcome = _saved(outcome)
        outcomes.append(outcome)
        log(f"[{len(outcomes)}/{len(pending)}] {name}{'' if seed is None else f' seed {seed}'}: {describe(outcome)}; "
            f"{time.perf_counter() - start:.0f} s")
    return outcomes


def _train_teacher(config: RunConfig, name: str, force: bool, bars: bool) -> str:
    """Task: a teacher trained here (smoke), or loaded when it was."""
    from ..training.teachers import load_teacher

    load_teacher(config, name, force=force, on_epoch=_progress(f"teacher {name}", config.teacher_epochs, bars))
    return name


def _build_cache(config: RunConfig, name: str, bars: bool, *teacher: str) -> str:
    """Task: teacher `name`'s logit cache for `config` (built, or verified and loaded)."""
    from ray.experimental.tqdm_ray import tqdm

    from ..training.data import load_splits
    from ..training.runs import preflight
    from ..training.teachers import load_teacher
    from ..training.teaching import QUIET, load_or_build_cache

    device, splits = preflight(config), load_splits(config)
    cache, _ = load_or_build_cache(config, load_teacher(config, name, splits), splits, device,
                                   progress=tqdm if bars else QUIET)
    return str(cache.folder)


def _train_run(name: str, config: RunConfig, force: bool, bars: bool, *caches: str) -> Outcome:
    """Task: one run through the registry (trained, resumed from its checkpoint, or reused)."""
    from ..training.runs import load_or_train

    start = time.perf_counter()
    result = load_or_train(config, force=force, on_epoch=_progress(f"{name} seed {config.seed}", config.epochs, bars))
    return Outcome(name, config.seed, "trained" if result.trained else "reused", time.perf_counter() - start,
                   result.accuracy)


def _render(page: Page, source: nbformat.NotebookNode, stamp: dict[str, Any], *after: Any) -> Rendered:
    """Task: a page's notebook (`source`, read with its `stamp` when the task was made), once `after` is there."""
    return page.render(source, stamp)


def _saved(rendered: Rendered) -> Outcome:
    """A rendered page saved into book/runs/, as its Outcome."""
    rendered.save()
    return Outcome(rendered.page.name, None, "done" if rendered.error is None else "FAILED", rendered.seconds,
                   error=rendered.error)


def _progress(desc: str, epochs: int, bars: bool) -> Callable[[dict[str, float]], None]:
    """A task's progress: Ray's bar on a terminal, else a line per epoch, which Ray forwards to the driver's log."""
    from ray.experimental.tqdm_ray import tqdm

    from ..training.progress import epoch_progress

    return epoch_progress(desc, epochs, bar=tqdm if bars else None)


# ----------------------------------------------------------------------------- Ray

@contextmanager
def ray_session(resources: Resources, gpu: bool) -> Iterator[str]:
    """Ray started (or joined) for the tasks; yields where they run, in words. Checks first that every node sees this
    driver's results and cache homes."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")   # read when ray is imported: every run's epoch lines, not a sample
    if not sys.stdout.isatty():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")   # a log file gets the tasks' lines without colour codes
    import ray
    import torch

    env = {k: v for k, v in os.environ.items() if k.startswith(("CAKD_", "HF_"))}
    env.update({paths.RESULTS_ENV: str(paths.results_home()), paths.CACHE_ENV: str(paths.cache_home()),
                paths.DATA_ENV: str(paths.data_home())})
    kwargs: dict[str, Any] = dict(include_dashboard=False, logging_level=logging.ERROR, runtime_env={"env_vars": env})
    if resources.address is None:
        gpus = torch.cuda.device_count() if gpu and torch.cuda.is_available() else 0
        slots = gpus * resources.runs_per_gpu or resources.workers
        env.setdefault("CAKD_THREADS", str(max(1, (os.cpu_count() or 1) // slots)))
        kwargs.update(num_cpus=resources.workers, num_gpus=gpus)
    try:
        ray.init(address=resources.address, **kwargs)
    except ConnectionError as e:
        raise ValueError(f"address={resources.address!r}: {first_line(e)}") from None
    try:
        check_shared_homes()
        res = ray.cluster_resources()
        where = f"Ray cluster {resources.address}" if resources.address else "Ray on this machine"
        yield (f"{where}: {res.get('GPU', 0):g} GPU(s) x {resources.runs_per_gpu} run(s) per GPU"
               if gpu and res.get("GPU") else f"{where}: {res.get('CPU', 0):g} CPU worker(s)")
    finally:
        ray.shutdown()


def check_shared_homes() -> list[str]:
    """Every alive node reads a token this driver wrote into the results and the cache home, or a ValueError names it
    and the path; returns the nodes' addresses."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = uuid.uuid4().hex
    homes = [paths.results_home(), paths.cache_home()]
    for home in homes:
        files.write_text(home / ".cakd-nodes" / token, token)
    try:
        sees = ray.remote(num_cpus=0)(missing_homes)
        nodes = [n for n in ray.nodes() if n["Alive"]]
        reports = ray.get([sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                           .remote([str(h) for h in homes], token) for n in nodes])
    finally:
        for home in homes:
            (home / ".cakd-nodes" / token).unlink(missing_ok=True)
    for node, missing in zip(nodes, reports):
        if missing:
            raise ValueError(f"node {node['NodeManagerAddress']} does not see {missing[0]} as this machine does: "
                             f"the results and cache homes ({paths.RESULTS_ENV}, {paths.CACHE_ENV}) must be one "
                             "shared folder, at the same path, on every node")
    return [n["NodeManagerAddress"] for n in nodes]


def missing_homes(homes: list[str], token: str) -> list[str]:
    """The homes in which this machine cannot read `token` from .cakd-nodes/<token> (a node's own check)."""
    def sees(home: str) -> bool:
        try:
            return (Path(home) / ".cakd-nodes" / token).read_text() == token
        except OSError:
            return False
    return [home for home in homes if not sees(home)]


def _check_address(address: str) -> None:
    """'auto', or host:port / ray://host:port with something listening (ray.init waits minutes on a dead one)."""
    if address == "auto":
        return
    m = re.fullmatch(r"(?:ray://)?(?P<host>[^\s:/]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})", str(address))
    if m is None or not 0 < int(m["port"]) < 65536:
        raise ValueError(f"address={address!r} is not 'auto', 'HOST:PORT' or 'ray://HOST:PORT'; "
                         "use the address `ray start --head` printed, e.g. 10.0.0.5:6379")
    try:
        with socket.create_connection((m["host"].strip("[]"), int(m["port"])), timeout=5):
            pass
    except OSError as e:
        raise ValueError(f"address={address!r}: nothing answers there ({type(e).__name__}: {e.strerror or e}); "
                         "start the head with `ray start --head` and pass the address it prints") from None


# ----------------------------------------------------------------------------- the rest of the book

def _bench(profile: Profile, force: bool, log: Log) -> list[str]:
    """The Performance page's numbers: `python -m cakd bench` when this profile has none yet (or with --force), on a
    GPU for a profile of full-size models."""
    import torch

    out = paths.results_home() / profile.name / "bench.json"
    if out.exists() and not force:
        log(f"performance: reused {_rel(out)}")
        return []
    if profile.needs_gpu and not torch.cuda.is_available():
        log(f"performance: no GPU here; run `python -m cakd bench --profile {profile.name} --device cuda` on one")
        return []
    command = f"python -m cakd bench --profile {profile.name} --device auto"
    log(f"performance: {command} -> {_rel(out)}")
    try:
        from .bench import run_benchmark                  # inside: a broken benchmark must not lose the runs

        with redirect_stdout(io.StringIO()):   # its tables are on the Performance page
            run_benchmark("auto", profile.name, out=out, command=command)
    except Exception as e:  # noqa: BLE001 -- reported; the page then says there is no benchmark
        log(f"  FAILED: {type(e).__name__}: {e}")
        return ["bench"]
    return []


def build_book() -> int:
    """`jupyter-book build .` at the repository root; its exit code. Without a terminal, Sphinx's output comes without
    colour codes, as `sphinx-build`'s does (Jupyter Book does not switch them off)."""
    plain = "" if sys.stdout.isatty() else "from sphinx.util.console import nocolor; nocolor(); "
    command = [sys.executable, "-c", f"{plain}from jupyter_book.cli.main import main; main()", "build", "."]
    return subprocess.run(command, cwd=paths.ROOT).returncode


def describe(outcome: Outcome) -> str:
    if outcome.status == "FAILED":
        return f"FAILED: {outcome.error}"
    acc = "" if outcome.test_acc is None else f", test {outcome.test_acc:.2f}%"
    return f"{outcome.status}{acc} ({outcome.seconds / 60:.1f} min)"


def summary_table(outcomes: list[Outcome]) -> str:
    """Row, seed, test accuracy, minutes, status of every run and page; then each failure's error."""
    frame = pd.DataFrame([{"row": o.name, "seed": "-" if o.seed is None else o.seed,
                           "test acc": "-" if o.test_acc is None else f"{o.test_acc:.2f}",
                           "minutes": f"{o.seconds / 60:.1f}", "status": o.status} for o in outcomes],
                         columns=["row", "seed", "test acc", "minutes", "status"])
    failures = [f"FAILED {o.name}{'' if o.seed is None else f' seed {o.seed}'}: {o.error}"
                for o in outcomes if o.status == "FAILED"]
    return "\n".join([frame.to_string(index=False), *failures])


def _logs(profile: str) -> Path:
    return paths.results_home() / profile / "logs"


def _rel(path: Path) -> str:
    return str(path.relative_to(paths.ROOT)) if paths.ROOT in path.parents else str(path)
