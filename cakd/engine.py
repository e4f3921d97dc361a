"""Where the runs of `python -m cakd reproduce` execute: one job per (row, seed), spread by Ray, watched live.

Why Ray: a job asks for `1/K` of a GPU and Ray packs K of them on each GPU of the machine (fractional GPUs),
the same code runs on a cluster with `address=`, and a CPU machine gets N local workers. submitit would
only cover SLURM clusters, and a process pool knows nothing of GPUs. With one slot (`workers=1` on a CPU, one
GPU and one run per GPU) jobs run one after another in this process, without Ray: same `_attempt`, same
results, a plain traceback for a debugger, and Ray stays an optional dependency there.

A job's epochs reach the driver as the training loop's per-epoch stderr lines (`cakd.train.fit` prints one
line per epoch when stderr is not a terminal), parsed by `parse_epoch_line` on the worker.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import re
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from . import paths
from .config import PROFILES

# Runs packed on one GPU per profile (`--runs-per-gpu`); a profile not listed packs 1. Measured on an H100:
# one 224 x 224 paper run fills the GPU (5,900 images/s, compute-bound), and the consistent profile's graphed
# 32 x 32 step gives 20,000 images/s in one process where 4-8 eager processes side by side gave 18-19,000 in
# all, so one run per GPU is the default everywhere; --runs-per-gpu K packs more.
RUNS_PER_GPU: dict[str, int] = {}
POLL_SECONDS = 0.5          # how often the driver drains progress events while it waits for jobs
EPOCH_LINE = re.compile(r"^(?P<desc>.*?)\s*\bepoch (?P<epoch>\d+)/(?P<epochs>\d+) val (?P<val>[\d.]+)%"
                        r"(?: test (?P<test>[\d.]+)%)?(?: lr (?P<lr>\S+))?(?: eta (?P<eta>\S+))?\s*$")


def default_runs_per_gpu(profile: str) -> int:
    """`--runs-per-gpu` when it is not given: the profile's entry in RUNS_PER_GPU, else 1."""
    if profile not in tuple(PROFILES):
        raise ValueError(f"profile={profile!r} is not one of {sorted(tuple(PROFILES))}")
    return RUNS_PER_GPU.get(profile, 1)


@dataclass(frozen=True)
class Job:
    """One unit of work: a (row, seed) run or a notebook page. `payload` is what `work` needs (picklable)."""
    name: str                    # the row id or page name
    seed: int | None             # None for a page that is not a run (teachers)
    payload: Any
    gpu: bool = False            # trains on a GPU when the engine has one
    after: tuple[int, ...] = ()  # indices (in the same `run` call) of jobs that must finish first

    @property
    def label(self) -> str:
        return self.name if self.seed is None else f"{self.name} seed {self.seed}"


@dataclass
class Outcome:
    name: str
    seed: int | None
    status: str                          # "trained", "reused", "done" (a page) or "FAILED"
    seconds: float = 0.0
    test_acc: float | None = None
    error: str | None = None             # one line: "ValueError: batch_size=... exceeds ..."
    log: str | None = None               # the job's full stderr and traceback, when it failed
    page: str | None = None              # an executed notebook (JSON) for the driver to write

    @property
    def failed(self) -> bool:
        return self.status == "FAILED"


@dataclass(frozen=True)
class EpochLine:
    desc: str
    epoch: int
    epochs: int
    val_acc: float
    test_acc: float | None = None
    eta_seconds: float | None = None


@dataclass(frozen=True)
class EngineOptions:
    workers: int = 1              # concurrent CPU runs on this machine
    runs_per_gpu: int = 1         # concurrent runs per GPU (each asks Ray for 1/K of a GPU)
    address: str | None = None    # a Ray cluster ('auto', 'host:port', 'ray://host:port'); None: this machine

    def __post_init__(self) -> None:
        for name in ("workers", "runs_per_gpu"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{name}={value!r} must be an integer >= 1 ({flag} 1 runs one at a time)")
        if self.address is not None:
            _check_address(self.address)
            if self.workers != 1:
                raise ValueError(f"workers={self.workers} and address={self.address!r} do not go together: on a "
                                 "cluster its nodes' CPUs and GPUs set the workers; drop --workers")


Work = Callable[[Job], Outcome]   # a module-level function (Ray sends it to the workers by name)


class Engine:
    """`with Engine(options, gpu=...) as engine: engine.run(jobs, work, progress)`; starts Ray only if needed."""

    def __init__(self, options: EngineOptions, *, gpu: bool):
        self.options, self.gpu_jobs = options, gpu
        self.gpus = _local_gpus() if gpu and options.address is None else 0
        slots = self.gpus * options.runs_per_gpu if self.gpus else options.workers
        self.ray = None if options.address is None and slots == 1 else _import_ray(options)
        # A cluster's nodes differ from this one: there only an explicit CAKD_THREADS is passed on.
        self.threads = os.environ.get(_threads_env()) if options.address else _threads_per_run(slots)

    def __enter__(self) -> "Engine":
        if self.ray is not None:
            self._start_ray()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.ray is not None and self.ray.is_initialized():
            self.ray.shutdown()

    @property
    def where(self) -> str:
        """Where the jobs run, in words (read while the engine is started)."""
        if self.ray is None:
            return "in this process, one run at a time"
        resources = self.ray.cluster_resources()
        where = f"Ray cluster {self.options.address}" if self.options.address else "Ray on this machine"
        if self.gpu_jobs and resources.get("GPU"):
            return f"{where}: {resources['GPU']:g} GPU(s) x {self.options.runs_per_gpu} run(s) per GPU"
        return f"{where}: {resources.get('CPU', 0):g} CPU worker(s)"

    def run(self, jobs: Sequence[Job], work: Work, progress: "Progress",
            on_done: Callable[[int, Outcome], None] | None = None) -> list[Outcome]:
        """Every job through `work`; an Outcome per job (in job order), failures included, never raised.

        `on_done(index, outcome)` runs here, in the driver, as each job finishes (to write what it made).
        """
        progress = _Finishing(progress, on_done)
        for i, job in enumerate(jobs):
            if any(not 0 <= k < i for k in job.after):
                raise ValueError(f"job {job.label!r} (#{i}) waits for {job.after}: jobs may wait only for earlier jobs")
        if self.ray is None:
            outcomes = []
            for i, job in enumerate(jobs):
                progress.started(i)
                outcome = _attempt(work, job, lambda line, i=i: progress.line(i, line))
                progress.finished(i, outcome)
                outcomes.append(outcome)
            return outcomes
        return self._run_ray(jobs, work, progress)

    # ------------------------------------------------------------------ Ray
    def _start_ray(self) -> None:
        import logging

        env = {name: value for name, value in os.environ.items() if name.startswith(("CAKD_", "HF_"))}
        # The workers must read and write the same registry as this driver, whatever their own defaults
        # (on a cluster these folders must be shared by its nodes).
        env.update({paths.RESULTS_ENV: str(paths.results_home()), paths.CACHE_ENV: str(paths.cache_home()),
                    paths.DATA_ENV: str(paths.data_home())})
        if self.threads is not None:
            env[_threads_env()] = str(self.threads)
        kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                                      runtime_env={"env_vars": env})
        if self.options.address is None:
            kwargs.update(num_cpus=self.options.workers, num_gpus=self.gpus)   # Ray's files: $RAY_TMPDIR/ray
        try:
            self.ray.init(address=self.options.address, **kwargs)
        except ConnectionError as e:
            raise ValueError(f"address={self.options.address!r}: {_first_line(e)}") from None
        if self.gpu_jobs and self.options.address and not self.ray.cluster_resources().get("GPU"):
            self.gpu_jobs = False    # a CPU-only cluster: jobs ask for CPUs (device 'auto' trains on the CPU)

    def _run_ray(self, jobs: Sequence[Job], work: Work, progress: "Progress") -> list[Outcome]:
        ray = self.ray
        events = ray.remote(num_cpus=0)(_Events).remote()
        use_gpu = self.gpu_jobs and ray.cluster_resources().get("GPU", 0) > 0
        # max_retries: a worker that dies (out of memory, a lost node) is tried once more; the run resumes
        # from its checkpoint. A Python exception is not retried: it is the job's outcome.
        on_cpu = ray.remote(num_cpus=1, max_retries=1)(_remote_attempt)
        # 1/K of a GPU: Ray packs K runs on each GPU; no CPU slot, so --workers bounds only CPU runs.
        on_gpu = ray.remote(num_gpus=1 / self.options.runs_per_gpu, num_cpus=0, max_retries=1)(_remote_attempt)
        refs: dict[Any, int] = {}
        submitted: list[Any] = []
        for i, job in enumerate(jobs):
            task = on_gpu if use_gpu and job.gpu else on_cpu
            # A job's `after` jobs are passed as arguments: Ray starts it only once they have finished.
            ref = task.remote(work, job, i, events, *[submitted[k] for k in job.after])
            refs[ref] = i
            submitted.append(ref)
        outcomes: dict[int, Outcome] = {}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=POLL_SECONDS)
            _drain(events, progress)
            for ref in done:
                i = refs[ref]
                try:
                    outcome = ray.get(ref)
                except Exception as e:  # noqa: BLE001 -- a worker that died (killed, out of memory)
                    outcome = Outcome(jobs[i].name, jobs[i].seed, "FAILED", error=_one_line(e))
                _drain(events, progress)
                progress.finished(i, outcome)
                outcomes[i] = outcome
        return [outcomes[i] for i in range(len(jobs))]


def _remote_attempt(work: Work, job: Job, index: int, events: Any, *after: Any) -> Outcome:
    """The Ray task: `_attempt`, its epoch lines sent to the driver as (job index, kind, value) events.

    Sent without waiting for a reply: a task blocked in ray.get lends its CPU to another task, which would
    run more jobs at once than there are workers.
    """
    events.put.remote((index, "started", None))
    return _attempt(work, job, lambda line: events.put.remote((index, "line", line)))


class _Events:
    """A Ray actor holding progress events until the driver takes them (ray.util.queue.Queue's put waits)."""

    def __init__(self) -> None:
        self.items: list[tuple[int, str, Any]] = []

    def put(self, item: tuple[int, str, Any]) -> None:
        self.items.append(item)

    def take(self) -> list[tuple[int, str, Any]]:
        items, self.items = self.items, []
        return items


def _drain(events: Any, progress: "Progress") -> None:
    import ray

    for index, kind, value in ray.get(events.take.remote()):
        if kind == "started":
            progress.started(index)
        else:
            progress.line(index, value)


def _attempt(work: Work, job: Job, send: Callable[[str], None]) -> Outcome:
    """One job, on whichever process runs it: stderr is captured line by line (epoch lines go to `send`, the
    rest is kept for a failure's log), and an exception becomes a FAILED outcome instead of stopping the others."""
    sink = LineSink(send)
    start = time.perf_counter()
    try:
        with contextlib.redirect_stderr(sink):
            outcome = work(job)
    except Exception as e:  # noqa: BLE001 -- reported in the summary; the other jobs go on
        sink.flush()
        outcome = Outcome(job.name, job.seed, "FAILED", error=_one_line(e),
                          log=sink.text() + traceback.format_exc())
    sink.flush()
    outcome.seconds = outcome.seconds or time.perf_counter() - start
    if outcome.failed and outcome.log is None:
        outcome.log = sink.text()
    return outcome


class _Finishing:
    """`progress`, whose `finished` first hands the outcome to `on_done`."""

    def __init__(self, progress: "Progress", on_done: Callable[[int, Outcome], None] | None):
        self.progress, self.on_done = progress, on_done
        self.started, self.line = progress.started, progress.line

    def finished(self, index: int, outcome: Outcome) -> None:
        if self.on_done is not None:
            self.on_done(index, outcome)
        self.progress.finished(index, outcome)


class LineSink(io.TextIOBase):
    """A write-only text stream: complete lines that parse as epoch lines go to `send`; every line is kept.

    It is sys.stderr while a job runs (a notebook job hands it to papermill as `stderr_file`, the kernel's
    stderr stream). It is not a terminal, so the training loop prints its epoch lines rather than a bar, and
    nothing else (kernel warnings, tqdm, library noise) reaches the console.
    """

    KEEP = 400   # lines kept for a failure's log

    def __init__(self, send: Callable[[str], None]):
        super().__init__()
        self.send, self.partial, self.lines = send, "", []

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        self.partial += text
        *complete, self.partial = re.split(r"\r\n|\n|\r", self.partial)
        for line in complete:
            self.write_line(line)
        return len(text)

    def write_line(self, line: str) -> None:
        line = line.rstrip()
        if not line:
            return
        self.lines = (self.lines + [line])[-self.KEEP:]
        if parse_epoch_line(line) is not None:
            self.send(line)

    def flush(self) -> None:
        if self.partial:
            line, self.partial = self.partial, ""
            self.write_line(line)

    def text(self) -> str:
        return "".join(f"{line}\n" for line in self.lines)


def parse_epoch_line(line: str) -> EpochLine | None:
    """`'<desc> epoch 3/100 val 54.3% test 53.9% lr 0.0098 eta 3m10s'` -> EpochLine; None for any other line."""
    m = EPOCH_LINE.match(line.strip())
    if m is None:
        return None
    epoch, epochs = int(m["epoch"]), int(m["epochs"])
    if epochs < 1 or not 0 <= epoch <= epochs:
        return None
    return EpochLine(m["desc"], epoch, epochs, float(m["val"]), float(m["test"]) if m["test"] else None,
                     parse_duration(m["eta"]) if m["eta"] else None)


def parse_duration(text: str) -> float | None:
    """'1h02m', '3m10s', '45s', '0s' -> seconds; None for anything else ('?', '')."""
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", text)
    if m is None or not any(m.groups()):
        return None
    hours, minutes, seconds = (float(g) if g else 0.0 for g in m.groups())
    return hours * 3600 + minutes * 60 + seconds


def format_duration(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "?"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """What a person watching sees: per job its place (i/N), epoch (e/E), last validation accuracy and time
    left. In a terminal, tqdm bars (one for all jobs, one per running job); otherwise one line per event."""

    def __init__(self, jobs: Sequence[Job], *, log: Callable[[str], None] = print, terminal: bool | None = None):
        self.jobs, self.log = list(jobs), log
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self.start, self.done, self.running = time.perf_counter(), 0, set()
        self.bars: dict[int, Any] = {}        # job index -> its tqdm bar (terminal only)
        self.positions: dict[int, int] = {}   # job index -> its bar's line under the overall bar
        self.overall = None
        if self.terminal and self.jobs:
            from tqdm import tqdm
            self.overall = tqdm(total=len(self.jobs), desc="runs", unit="run", position=0, leave=False,
                                dynamic_ncols=True)

    def tag(self, index: int) -> str:
        return f"[{index + 1}/{len(self.jobs)}] {self.jobs[index].label}"

    def started(self, index: int) -> None:
        if index in self.running:
            return
        self.running.add(index)
        if self.terminal:
            from tqdm import tqdm
            taken = set(self.positions.values())
            self.positions[index] = position = min(p for p in range(1, len(self.jobs) + 2) if p not in taken)
            self.bars[index] = tqdm(total=1, desc=self.tag(index), position=position, leave=False,
                                    dynamic_ncols=True, bar_format="{desc} {bar} {n_fmt}/{total_fmt} {postfix}")
        else:
            self.log(f"{self.tag(index)}: started")

    def line(self, index: int, line: str) -> None:
        epoch = parse_epoch_line(line)
        if epoch is None:
            return
        self.started(index)
        eta = format_duration(epoch.eta_seconds)
        if self.terminal:
            bar = self.bars[index]
            bar.total, bar.n = epoch.epochs, epoch.epoch
            bar.set_postfix_str(f"{epoch.desc} val {epoch.val_acc:.1f}% eta {eta}", refresh=False)
            bar.refresh()
        else:
            self.log(f"{self.tag(index)} {epoch.desc} epoch {epoch.epoch}/{epoch.epochs} "
                     f"val {epoch.val_acc:.1f}% eta {eta}")

    def finished(self, index: int, outcome: Outcome) -> None:
        self.running.discard(index)
        self.done += 1
        if index in self.bars:
            self.bars.pop(index).close()
            self.positions.pop(index)
        text = f"{self.tag(index)}: {describe(outcome)}"
        if self.terminal:
            from tqdm import tqdm
            tqdm.write(text, file=sys.stdout)
            self.overall.update(1)
        else:
            self.log(f"{text}; {self.done}/{len(self.jobs)} done, about {format_duration(self.left())} left")

    def left(self) -> float | None:
        """Time left for all jobs at the pace so far (finished jobs per second of wall time)."""
        if not self.done:
            return None
        return (time.perf_counter() - self.start) / self.done * (len(self.jobs) - self.done)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        if self.overall is not None:
            self.overall.close()


def describe(outcome: Outcome) -> str:
    if outcome.failed:
        return f"FAILED: {outcome.error}"
    acc = "" if outcome.test_acc is None else f", test {outcome.test_acc:.2f}%"
    return f"{outcome.status}{acc} ({outcome.seconds / 60:.1f} min)"


def summary_table(outcomes: Sequence[Outcome]) -> str:
    """A plain-text table: row, seed, test accuracy, minutes, status (trained / reused / done / FAILED)."""
    header = ("row", "seed", "test acc", "minutes", "status")
    rows = [(o.name, "-" if o.seed is None else str(o.seed), "-" if o.test_acc is None else f"{o.test_acc:.2f}",
             f"{o.seconds / 60:.1f}", o.status) for o in outcomes]
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    align = ["<", ">", ">", ">", "<"]
    lines = ["  ".join(f"{v:{a}{w}}" for v, a, w in zip(r, align, widths)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    failures = [f"FAILED {o.name}" + ("" if o.seed is None else f" seed {o.seed}") + f": {o.error}"
                for o in outcomes if o.failed]
    return "\n".join(lines + failures)


# ----------------------------------------------------------------------------- helpers

def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""


def _one_line(e: BaseException) -> str:
    """'ValueError: first line of the message', for the error Ray wraps (RayTaskError.cause) too."""
    e = getattr(e, "cause", None) or e
    return f"{type(e).__name__}: {_first_line(e)}".rstrip(": ")


def _local_gpus() -> int:
    try:
        import torch
        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001 -- no usable CUDA: CPU workers
        return 0


def _threads_per_run(slots: int) -> str:
    """Torch CPU threads per run: CAKD_THREADS when set, else this machine's cores shared by the runs."""
    return os.environ.get(_threads_env()) or str(max(1, (os.cpu_count() or 1) // slots))


def _threads_env() -> str:
    """cakd.train's variable for torch's CPU threads per run (imported late: the CLI parser needs no torch)."""
    from .train import THREADS_ENV
    return THREADS_ENV


def _import_ray(options: EngineOptions) -> Any:
    try:
        import ray
    except ImportError:
        what = f"address={options.address!r}" if options.address else \
            f"workers={options.workers} (or several runs on the GPUs)"
        raise ValueError(f"{what} needs Ray: pip install 'ray>=2.10'; or run one at a time with --workers 1 "
                         "--runs-per-gpu 1 on one GPU") from None
    return ray


def _check_address(address: str) -> None:
    """A Ray cluster address that can answer: 'auto', or host:port / ray://host:port with something listening.

    Checked before anything starts: ray.init waits minutes on an address where nothing listens.
    """
    if not isinstance(address, str) or not address:
        raise ValueError(f"address={address!r} must be 'auto', 'HOST:PORT' or 'ray://HOST:PORT' (a Ray head node)")
    if address == "auto":
        return
    m = re.fullmatch(r"(?:ray://)?(?P<host>[^\s:/]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})", address)
    if m is None or not 0 < int(m["port"]) < 65536:
        raise ValueError(f"address={address!r} is not 'auto', 'HOST:PORT' or 'ray://HOST:PORT'; "
                         "use the address `ray start --head` printed, e.g. 10.0.0.5:6379")
    try:
        with socket.create_connection((m["host"].strip("[]"), int(m["port"])), timeout=5):
            pass
    except OSError as e:
        raise ValueError(f"address={address!r}: nothing answers there ({type(e).__name__}: "
                         f"{e.strerror or e}); start the head with `ray start --head` and pass the address "
                         "it prints, or 'auto' on a node of the cluster") from None

