"""Nothing is lost: a run killed at any write resumes to the uninterrupted run's numbers; writes are atomic."""
import contextlib
import multiprocessing
import os
import shutil
from pathlib import Path
from unittest import mock

import pytest
import torch

from cakd.training import checkpoints, train

from cakd.definitions import files, paths
from cakd.training.runs import checkpoint_path, load_or_train
from support import R18, SESSION_TEACHERS, smoke_config

pytestmark = pytest.mark.xdist_group("resume")   # one worker builds the module fixture, not each

TIMES = ("seconds", "train_seconds")
# metrics.json records the cache passes spent by the process that finished the run: 0 when it found the cache
# built (by the killed process, or by an earlier run). Work done, not a result: left out of the comparisons.
NOT_RESULTS = TIMES + ("cache_build_passes",)


def _without_times(rows, dropped=TIMES):
    return [{k: v for k, v in row.items() if k not in dropped} for row in rows]


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run_bitwise(smoke_teachers, monkeypatch):
    config = smoke_config(method="kd", teachers=[SESSION_TEACHERS[0]], epochs=3)
    reference = load_or_train(config)
    calls = {"n": 0}
    real_evaluate = train.evaluate

    def dies_in_epoch_three(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:                     # val of epoch 3 (two evaluations per epoch)
            raise KeyboardInterrupt("killed")
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(train, "evaluate", dies_in_epoch_three)
    with pytest.raises(KeyboardInterrupt):
        load_or_train(config, force=True)      # starts afresh (teachers and cache are reused)
    state = checkpoints.load(checkpoint_path(config))
    assert len(state["history"]) == 2           # two complete epochs survived
    monkeypatch.setattr(train, "evaluate", real_evaluate)
    resumed = load_or_train(config)
    assert resumed.trained
    assert _without_times(resumed.history) == _without_times(reference.history)
    assert _without_times([resumed.metrics], NOT_RESULTS) == _without_times([reference.metrics], NOT_RESULTS)


@pytest.mark.slow
def test_finished_run_is_loaded_not_retrained():
    config = smoke_config(method="baseline")
    first = load_or_train(config)
    again = load_or_train(config)
    assert first.trained and not again.trained
    assert again.metrics == first.metrics
    assert again.history == first.history       # the CSV round trip keeps every float exactly


@pytest.mark.slow
def test_force_retrains():
    config = smoke_config(method="baseline")
    load_or_train(config)
    assert load_or_train(config, force=True).trained


def test_interrupted_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "atomic" / "ckpt.pt"
    checkpoints.save({"epoch": 1}, target)

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        checkpoints.save({"epoch": 2}, target)
    monkeypatch.undo()
    assert checkpoints.load(target) == {"epoch": 1}
    assert [p.name for p in target.parent.iterdir()] == ["ckpt.pt"]  # no temporary file left behind


def test_atomic_writes_get_the_permissions_of_a_plain_write(tmp_path):
    plain, atomic = tmp_path / "plain.json", tmp_path / "atomic.json"
    plain.write_text("{}")
    files.write_json(atomic, {})
    assert atomic.stat().st_mode == plain.stat().st_mode   # not mkstemp's owner-only 0o600


def test_truncated_checkpoint_is_reported_not_used(tmp_path):
    target = tmp_path / "ckpt.pt"
    checkpoints.save({"w": torch.ones(1000)}, target)
    target.write_bytes(target.read_bytes()[:500])
    with pytest.raises(ValueError, match="unreadable"):
        checkpoints.load(target)


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    target = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, target)
    with pytest.raises(ValueError, match="unreadable"):
        checkpoints.load(target)


def test_corrupt_metrics_json_is_reported(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text('{"test_acc": 7')
    with pytest.raises(ValueError, match="corrupt"):
        files.read_json(path)


# ----------------------------------------------------------------------------- killed at the N-th write

# A KD run whose teacher is trained here; its atomic writes, in order:
#   teacher: resume.pt x 2 epochs (1, 2), model.pt (3), teacher.json (4)
#   logit cache: train.npy (5), val.npy (6), test.npy (7), meta.json (8)
#   student: checkpoint x 3 epochs (9, 10, 11), config.json (12), history.csv (13), metrics.json (14)
KD = dict(method="kd", teachers=[R18], epochs=3, teacher_epochs=2)
WRITES = 14
# What a run killed after a stage's last write leaves of it: that stage's files, as the uninterrupted run wrote
# them (training and caching are deterministic), so a later kill point starts from a copy, not by redoing them.
DONE_STAGES = ((4, Path("cache", "smoke", "teachers")), (8, Path("cache", "smoke", "logits")))


@contextlib.contextmanager
def _homes(home):
    """The run's results, cache and data homes in `home`, its seed fixed, and one torch thread whatever
    CAKD_THREADS says outside: the killed run is a forked child, and GNU OpenMP's thread pool does not survive a
    fork (with the parent's pool of 2 threads, the child's first parallel region hung)."""
    folders = {paths.RESULTS_ENV: "results", paths.CACHE_ENV: "cache", paths.DATA_ENV: "data"}
    env = {train.THREADS_ENV: "1", **{env: str(home / name) for env, name in folders.items()}}
    with mock.patch.dict(os.environ, env):
        torch.set_num_threads(1)
        torch.manual_seed(0)
        yield


@contextlib.contextmanager
def _counting_writes(die_at: int = 0):
    """Counts the atomic writes; with die_at > 0 the process dies (os._exit(9): no cleanup, like SIGKILL) at the
    die_at-th, after its temporary file is complete and before it replaces the target."""
    writes, real = [0], files.atomic_path

    @contextlib.contextmanager
    def counted(path):
        with real(path) as tmp:
            yield tmp
            writes[0] += 1
            if writes[0] == die_at:
                os._exit(9)
    with mock.patch.object(files, "atomic_path", counted):
        yield writes


def _run(home):
    with _homes(home), _counting_writes() as writes:
        result = load_or_train(smoke_config(**KD))
    return {"history": result.history, "metrics": result.metrics, "writes": writes[0]}


def _killed(home, die_at: int) -> int:
    """The KD run in a forked process (this one's imports, nothing loaded again) that dies at its die_at-th
    atomic write; its exit code."""
    def child():
        with _homes(home), _counting_writes(die_at):
            load_or_train(smoke_config(**KD))
        os._exit(0)
    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join(timeout=600)
    return process.exitcode


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    home = tmp_path_factory.mktemp("uninterrupted")
    result = _run(home)
    assert result["writes"] == WRITES            # the write list above is the run's
    return home, result


@pytest.mark.slow
@pytest.mark.parametrize("die_at", [2, 4, 6, 8, 10, 13])   # teacher, cache, student, registry
def test_run_killed_at_a_write_resumes_to_the_uninterrupted_result(die_at, uninterrupted, tmp_path):
    reference_home, reference = uninterrupted
    done = [(writes, folder) for writes, folder in DONE_STAGES if writes < die_at]
    for _, folder in done:
        shutil.copytree(reference_home / folder, tmp_path / folder)
    assert _killed(tmp_path, die_at - max((writes for writes, _ in done), default=0)) == 9
    resumed = _run(tmp_path)
    assert _without_times(resumed["history"]) == _without_times(reference["history"])
    assert _without_times([resumed["metrics"]], NOT_RESULTS) == _without_times([reference["metrics"]], NOT_RESULTS)
