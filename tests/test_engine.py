"""cakd.engine without Ray: the epoch-line parser, the line sink, progress lines, the summary table, the options'
checks and the in-process path (one slot). The Ray path is in test_reproduce.py (slow)."""
from __future__ import annotations

import sys

import pytest

from cakd import engine
from cakd.engine import (Engine, EngineOptions, EpochLine, Job, LineSink, Outcome, Progress, format_duration,
                         parse_duration, parse_epoch_line, summary_table)

LINE = "kd_vit-3f2a epoch 3/100 val 54.3% test 53.9% lr 0.0098 eta 3m10s"


# ----------------------------------------------------------------------------- the epoch line

def test_epoch_line_is_parsed_into_its_fields():
    assert parse_epoch_line(LINE) == EpochLine("kd_vit-3f2a", 3, 100, 54.3, 53.9, 190.0)


def test_epoch_line_desc_may_hold_spaces_and_the_tail_after_val_is_optional():
    assert parse_epoch_line("teacher resnet50 epoch 1/5 val 7.0%") == EpochLine("teacher resnet50", 1, 5, 7.0)


@pytest.mark.parametrize("line", ["", "Loading weights", "epochs 3/100 val 54.3%", "x epoch 3/100",
                                  "x epoch 101/100 val 1.0%", "x epoch 1/0 val 1.0%",
                                  "x epoch 3/100 val 54.3% test 53.9% lr 0.0098 eta 3m10s extra",
                                  "TqdmWarning: IProgress not found. Please update jupyter and ipywidgets."])
def test_other_lines_are_not_epoch_lines(line):
    assert parse_epoch_line(line) is None


@pytest.mark.parametrize("text, seconds", [("3m10s", 190), ("45s", 45), ("0s", 0), ("1h02m", 3720),
                                           ("2h", 7200), ("1.5s", 1.5), ("?", None), ("", None), ("3x", None)])
def test_durations_parse(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("seconds, text", [(190, "3m10s"), (45, "45s"), (3720, "1h02m"), (None, "?")])
def test_durations_format_as_the_training_loop_writes_them(seconds, text):
    assert format_duration(seconds) == text


def test_line_sink_forwards_complete_epoch_lines_only_and_keeps_everything():
    sent = []
    sink = LineSink(sent.append)
    sink.write("noise\nkd epoch 1/2 val 5.0%")      # second line not complete yet
    assert sent == []
    sink.write(" eta 4s\r\nprogress 10%\rprogress 20%\n")
    sink.write("kd epoch 2/2 val 6.0%")
    sink.flush()
    assert sent == ["kd epoch 1/2 val 5.0% eta 4s", "kd epoch 2/2 val 6.0%"]
    assert sink.text().splitlines() == ["noise", "kd epoch 1/2 val 5.0% eta 4s", "progress 10%", "progress 20%",
                                        "kd epoch 2/2 val 6.0%"]
    assert not sink.isatty()                          # so the training loop prints lines, not a bar


# ----------------------------------------------------------------------------- progress and summary

def test_progress_lines_say_which_run_its_epoch_accuracy_and_time_left():
    jobs = [Job("baseline", 0, None), Job("kd_vit", 1, None)]
    logged = []
    progress = Progress(jobs, log=logged.append, terminal=False)
    progress.line(1, LINE)
    progress.line(1, "UserWarning: something the console does not need")
    progress.finished(1, Outcome("kd_vit", 1, "trained", seconds=90, test_acc=61.234))
    assert logged[0] == "[2/2] kd_vit seed 1: started"
    assert logged[1] == "[2/2] kd_vit seed 1 kd_vit-3f2a epoch 3/100 val 54.3% eta 3m10s"
    assert logged[2].startswith("[2/2] kd_vit seed 1: trained, test 61.23% (1.5 min); 1/2 done, about ")
    assert len(logged) == 3


def test_summary_table_lists_every_run_and_each_failure_in_one_line():
    table = summary_table([Outcome("baseline", 0, "trained", 150.0, 66.291),
                           Outcome("kd_vit", 1, "reused", 0.0, 74.0),
                           Outcome("teachers", None, "done", 30.0),
                           Outcome("m1_drv", 2, "FAILED", 6.0, error="ValueError: batch_size=9 exceeds 4")])
    lines = table.splitlines()
    assert lines[0].split() == ["row", "seed", "test", "acc", "minutes", "status"]
    assert lines[2].split() == ["baseline", "0", "66.29", "2.5", "trained"]
    assert lines[3].split() == ["kd_vit", "1", "74.00", "0.0", "reused"]
    assert lines[4].split() == ["teachers", "-", "-", "0.5", "done"]
    assert lines[5].split() == ["m1_drv", "2", "-", "0.1", "FAILED"]
    assert lines[6] == "FAILED m1_drv seed 2: ValueError: batch_size=9 exceeds 4"
    assert len(lines) == 7


# ----------------------------------------------------------------------------- options

@pytest.mark.parametrize("kwargs, name", [(dict(workers=0), "workers"), (dict(workers=True), "workers"),
                                          (dict(workers=1.5), "workers"), (dict(runs_per_gpu=0), "runs_per_gpu"),
                                          (dict(address="not an address"), "address"),
                                          (dict(address="host:99999"), "address"),
                                          (dict(address=""), "address")])
def test_bad_engine_options_name_the_option(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name}="):
        EngineOptions(**kwargs)


def test_an_address_where_nothing_listens_fails_at_once():
    with pytest.raises(ValueError, match=r"address='127\.0\.0\.1:1': nothing answers there"):
        EngineOptions(address="127.0.0.1:1")


def test_workers_and_address_do_not_go_together(monkeypatch):
    monkeypatch.setattr(engine, "_check_address", lambda address: None)
    with pytest.raises(ValueError, match="workers=2 and address='auto'"):
        EngineOptions(workers=2, address="auto")


def test_several_workers_without_ray_say_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)           # `import ray` raises ImportError
    with pytest.raises(ValueError, match=r"workers=2 .*needs Ray: pip install"):
        Engine(EngineOptions(workers=2), gpu=False)
    assert Engine(EngineOptions(workers=1), gpu=False).ray is None   # one slot: no Ray needed


# ----------------------------------------------------------------------------- the in-process path

def _work(job: Job) -> Outcome:
    """A stand-in for cakd.reproduce.run_job: prints epoch lines and noise to stderr, fails on request."""
    for epoch in (1, 2):
        print(f"run{job.seed} epoch {epoch}/2 val {10 * epoch}.0% eta 1s", file=sys.stderr)
    print("TqdmWarning: IProgress not found", file=sys.stderr)
    if job.payload == "fail":
        raise RuntimeError("injected failure\nsecond line of the message")
    return Outcome(job.name, job.seed, "trained", test_acc=50.0 + job.seed)


def test_in_process_path_reports_every_job_and_a_failure_does_not_stop_the_others(capfd):
    jobs = [Job("a", 0, None), Job("a", 1, "fail"), Job("a", 2, None, after=(0,))]
    logged = []
    with Engine(EngineOptions(workers=1), gpu=False) as eng:
        outcomes = eng.run(jobs, _work, Progress(jobs, log=logged.append, terminal=False))
    assert [o.status for o in outcomes] == ["trained", "FAILED", "trained"]
    assert [o.test_acc for o in outcomes] == [50.0, None, 52.0]
    assert outcomes[1].error == "RuntimeError: injected failure"
    assert "TqdmWarning" in outcomes[1].log and "Traceback" in outcomes[1].log   # the failure's log keeps it
    assert "[2/3] a seed 1 run1 epoch 2/2 val 20.0% eta 1s" in logged
    assert not any("Tqdm" in line for line in logged)
    assert capfd.readouterr().err == ""                 # the jobs' stderr went to the engine, not the console


def test_a_job_may_wait_only_for_earlier_jobs():
    jobs = [Job("a", 0, None, after=(1,)), Job("a", 1, None)]
    with pytest.raises(ValueError, match="only for earlier jobs"):
        Engine(EngineOptions(), gpu=False).run(jobs, _work, Progress(jobs, log=lambda s: None, terminal=False))


def test_terminal_progress_draws_a_bar_per_running_job_and_prints_each_result(capsys):
    jobs = [Job("baseline", 0, None), Job("kd_vit", 1, None)]
    progress = Progress(jobs, terminal=True)
    progress.line(1, LINE)
    bars = capsys.readouterr().err
    assert "[2/2] kd_vit seed 1" in bars and "3/100" in bars and "val 54.3% eta 3m10s" in bars
    progress.finished(1, Outcome("kd_vit", 1, "trained", seconds=90, test_acc=61.234))
    progress.close()
    assert capsys.readouterr().out == "[2/2] kd_vit seed 1: trained, test 61.23% (1.5 min)\n"


def test_every_profile_has_a_runs_per_gpu_default():
    from cakd.config import PROFILES
    from cakd.engine import default_runs_per_gpu

    assert all(default_runs_per_gpu(name) >= 1 for name in PROFILES)
    with pytest.raises(ValueError, match="profile='mars'"):
        default_runs_per_gpu("mars")
