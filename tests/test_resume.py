"""Nothing is lost: resumed runs equal uninterrupted ones (bitwise on CPU); writes are atomic."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from cakd import files, paths, train
from cakd.config import profile_config
from cakd.runs import checkpoint_path, load_or_train

KD = dict(method="kd", teachers=["densenet121"], synthetic_size=160, epochs=4, batch_size=16, teacher_epochs=2)
RUN_SCRIPT = """
import json, sys
from cakd.config import profile_config
from cakd.runs import load_or_train
result = load_or_train(profile_config("smoke", **json.loads(sys.argv[1])))
print(json.dumps({"history": result.history, "metrics": result.metrics}))
"""


def _without_times(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def test_resumed_run_equals_uninterrupted_run_bitwise(monkeypatch):
    config = profile_config("smoke", **KD)
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
    state = files.torch_load(checkpoint_path(config))
    assert len(state["history"]) == 2           # two complete epochs survived
    monkeypatch.setattr(train, "evaluate", real_evaluate)
    resumed = load_or_train(config)
    assert resumed.trained
    assert _without_times(resumed.history) == _without_times(reference.history)
    assert {k: v for k, v in resumed.metrics.items() if k not in ("train_seconds", "cache_build_passes")} == \
        {k: v for k, v in reference.metrics.items() if k not in ("train_seconds", "cache_build_passes")}


def test_finished_run_is_loaded_not_retrained():
    config = profile_config("smoke", method="baseline", synthetic_size=120, epochs=1, batch_size=16)
    first = load_or_train(config)
    again = load_or_train(config)
    assert first.trained and not again.trained
    assert again.metrics == first.metrics
    assert again.history == first.history       # the CSV round trip keeps every float exactly


def test_force_retrains():
    config = profile_config("smoke", method="baseline", synthetic_size=120, epochs=1, batch_size=16)
    load_or_train(config)
    assert load_or_train(config, force=True).trained


def test_interrupted_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "atomic" / "ckpt.pt"
    files.torch_save({"epoch": 1}, target)

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        files.torch_save({"epoch": 2}, target)
    monkeypatch.undo()
    assert files.torch_load(target) == {"epoch": 1}
    assert [p.name for p in target.parent.iterdir()] == ["ckpt.pt"]  # no temporary file left behind


def test_atomic_writes_get_the_permissions_of_a_plain_write(tmp_path):
    plain, atomic = tmp_path / "plain.json", tmp_path / "atomic.json"
    plain.write_text("{}")
    files.write_json(atomic, {})
    assert atomic.stat().st_mode == plain.stat().st_mode   # not mkstemp's owner-only 0o600


def test_truncated_checkpoint_is_reported_not_used(tmp_path):
    target = tmp_path / "ckpt.pt"
    files.torch_save({"w": torch.ones(1000)}, target)
    target.write_bytes(target.read_bytes()[:500])
    with pytest.raises(ValueError, match="unreadable"):
        files.torch_load(target)


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    target = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, target)
    with pytest.raises(ValueError, match="unreadable"):
        files.torch_load(target)


def test_corrupt_metrics_json_is_reported(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text('{"test_acc": 7')
    with pytest.raises(ValueError, match="corrupt"):
        files.read_json(path)


def _run(args: list[str], env: dict[str, str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", RUN_SCRIPT, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, **kwargs)


def test_killed_at_random_moments_resumes_to_the_same_metrics(tmp_path):
    """SIGKILL a run (teacher fine-tune, cache build, student epochs, checkpoint writes) and start it again."""
    args = [json.dumps(KD)]
    env = {**os.environ, paths.RESULTS_ENV: str(tmp_path / "ref-r"), paths.CACHE_ENV: str(tmp_path / "ref-c")}
    start = time.perf_counter()
    reference = json.loads(_run(args, env).communicate()[0])
    duration = time.perf_counter() - start
    rng = random.Random(0)
    for trial in range(3):
        env = {**os.environ, paths.RESULTS_ENV: str(tmp_path / f"t{trial}-r"),
               paths.CACHE_ENV: str(tmp_path / f"t{trial}-c")}
        victim = _run(args, env)
        time.sleep(rng.uniform(0.3, 1.0) * duration)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        finished = _run(args, env).communicate()[0]
        result = json.loads(finished)
        assert _without_times(result["history"]) == _without_times(reference["history"]), f"trial {trial}"
        assert result["metrics"]["test_acc"] == reference["metrics"]["test_acc"]
