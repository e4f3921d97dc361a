"""`reproduce`'s task graph on Ray: a tiny manifest on 2 local workers (a failing row among them), reuse on a
rerun, a page rebuilt when the code that renders it changes (and its run not retrained), Ray's two-node test
cluster with a node lost mid-run, and the command line's checks before any work."""
from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

import nbformat
import pytest

from cakd.__main__ import main
from cakd.definitions import paths
from cakd.definitions.manifest import Row
from cakd.definitions.profiles import get_profile
from cakd.definitions.registry import find_run
from cakd.orchestration import reproduce

SMOKE = get_profile("smoke")
TINY = {"method": "baseline", "epochs": 1, "synthetic_size": 120, "synthetic_classes": 10}
ROWS = [Row("tiny_a", "Tiny A", "tiny", dict(TINY)),
        # valid, but fails once training starts (more images per batch than the split has)
        Row("tiny_broken", "Tiny broken", "tiny", {**TINY, "batch_size": 100_000}),
        Row("tiny_b", "Tiny B", "tiny", {**TINY, "synthetic_size": 150})]


@pytest.fixture
def tiny_manifest(tmp_path, monkeypatch):
    """notebooks/ with tests/notebooks/tiny.ipynb (a page as thin as the real ones: its run read from the registry),
    book/runs/ and a copy of cakd's code (what the stamps read) in tmp_path; Ray's files in a short folder (a socket's
    path must stay under 108 bytes)."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    shutil.copy(Path(__file__).parent / "notebooks" / "tiny.ipynb", notebooks)
    monkeypatch.setattr(paths, "NOTEBOOKS", notebooks)
    monkeypatch.setattr(paths, "BOOK_RUNS", tmp_path / "runs")
    monkeypatch.setattr(paths, "PACKAGE", shutil.copytree(paths.PACKAGE, tmp_path / "cakd"))
    # book/runs/ is not made here: reproduce makes it, as on a fresh clone
    ray_files = tempfile.mkdtemp(prefix="r", dir="/tmp")   # short: pytest's own folders are too deep for it
    monkeypatch.setenv("RAY_TMPDIR", ray_files)
    yield ROWS
    import ray
    ray.shutdown()                                     # ray_session shuts it down; this is for a failed test
    shutil.rmtree(ray_files, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.xdist_group("ray")   # one Ray at a time on the machine
def test_tasks_land_every_run_a_failure_is_reported_and_a_rerun_reuses_finished_work_or_renders_changed_code(
        tiny_manifest):
    a, broken, b = tiny_manifest
    grid = [(a, 0, a.config("smoke", 0)), (a, 1, a.config("smoke", 1)), (broken, 0, broken.config("smoke", 0)),
            (broken, 1, broken.config("smoke", 1)), (b, 0, b.config("smoke", 0))]
    logged, rerun_logged = [], []
    plots = paths.PACKAGE / "reading" / "plots.py"
    with reproduce.ray_session(reproduce.Resources(workers=2), gpu=False) as where:
        outcomes = reproduce.run_grid(grid, SMOKE, False, logged.append)
        a_run = find_run(a.config("smoke", 0))
        trained_at = (a_run.folder / "metrics.json").stat().st_mtime_ns
        page = nbformat.read(paths.BOOK_RUNS / "tiny_a.ipynb", as_version=4)
        # a rerun after a function that draws the pages changed: the pages again, the runs reused (not
        # retrained); then a rerun with nothing changed: finished runs and pages reused without a task, the
        # broken row fails again (one Ray session for all three: a page's stamp is taken when its task is made)
        plots.write_text(plots.read_text().replace("fig.savefig(png, dpi=150", "fig.savefig(png, dpi=151"))
        changed = reproduce.run_grid(grid, SMOKE, False, rerun_logged.append)
        again = reproduce.run_grid(grid, SMOKE, False, rerun_logged.append)

    assert where == "Ray on this machine: 2 CPU worker(s)"

    by_task = {(o.name, o.seed): o for o in outcomes}
    assert len(outcomes) == 8 and set(by_task) == ({(row.id, seed) for row, seed, _ in grid}
                                                   | {(r.id, None) for r in tiny_manifest})   # 5 runs, 3 pages
    for row, seed in ((a, 0), (a, 1), (b, 0)):
        run = find_run(row.config("smoke", seed))
        assert run is not None and by_task[row.id, seed].status == "trained"
        assert by_task[row.id, seed].test_acc == run.accuracy
    for seed in (0, 1):                                  # the failure: one line, its traceback in the logs
        failed = by_task["tiny_broken", seed]
        assert failed.status == "FAILED" and "batch_size=100000" in failed.error and "\n" not in failed.error
        assert find_run(broken.config("smoke", seed)) is None
    log = (paths.results_home() / "smoke" / "logs" / "tiny_broken-seed1.log").read_text()
    assert 'File "' in log and "ValueError: batch_size=100000" in log and "\x1b" not in log   # the traceback
    assert by_task["tiny_broken", None].status == "FAILED"        # its page waited for the run, which failed

    # seed 0's page: in book/runs/, stamped, titled by the row under the profile's label
    stamp = page.metadata["cakd"]
    assert stamp["parameters"] == {"profile": "smoke", "epochs": 1, "synthetic_size": 120, "synthetic_classes": 10}
    assert page.cells[0].source.startswith("# Tiny A\n\n```{warning}\n" + SMOKE.banner + "\n```\n\n")
    assert "test_acc: " in "".join(o.get("text", "") for c in page.cells if c.cell_type == "code" for o in c.outputs)
    assert not (paths.BOOK_RUNS / "tiny_a-seed1.ipynb").exists()
    assert len(logged) == 8 and all(line.startswith("[") for line in logged), logged
    table = reproduce.summary_table(outcomes)
    assert table.count("FAILED tiny_broken") == 3 and table.count(" trained") == 3

    reused = {(row.id, seed, "reused") for row, seed in ((a, 0), (a, 1), (b, 0))}
    failing = {("tiny_broken", s, "FAILED") for s in (0, 1)} | {("tiny_broken", None, "FAILED")}
    assert {(o.name, o.seed, o.status) for o in changed} == reused | failing | {(a.id, None, "done"),
                                                                               (b.id, None, "done")}
    assert len(again) == 6 and {(o.name, o.seed, o.status) for o in again} == reused | failing
    assert len(rerun_logged) == 5 + 3                    # tasks only: 2 pages and 3 failing, then 3 failing
    assert (a_run.folder / "metrics.json").stat().st_mtime_ns == trained_at
    new_stamp = nbformat.read(paths.BOOK_RUNS / "tiny_a.ipynb", as_version=4).metadata["cakd"]
    assert new_stamp["code"] != stamp["code"] and new_stamp["source"] == stamp["source"]


@pytest.mark.slow
@pytest.mark.xdist_group("ray")   # one Ray at a time on the machine
def test_two_nodes_land_two_runs_and_a_run_on_a_lost_node_is_retried_on_the_other(tiny_manifest, tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    # a run on each node, six epochs of 220 images of 10 classes: seconds, so the node is lost while its run is
    # mid-way
    rows = [Row(f"tiny_{i}", f"Tiny {i}", "tiny", {**TINY, "epochs": 6, "synthetic_size": 300 + 30 * i})
            for i in range(2)]
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=1)
    result: dict = {}

    def drive():
        with reproduce.ray_session(reproduce.Resources(address=cluster.address), gpu=False) as where:
            result["where"] = where
            result["nodes"] = reproduce.check_shared_homes()
            # seed 1: a run without its page (seed 0's), which the test above covers
            result["outcomes"] = reproduce.run_grid([(row, 1, row.config("smoke", 1)) for row in rows], SMOKE,
                                                    False, print)
    driver = threading.Thread(target=drive)
    raylet = worker.all_processes["raylet"][0].process.pid   # a task's worker process is its node raylet's child
    try:
        driver.start()
        deadline = time.monotonic() + 240
        while driver.is_alive() and time.monotonic() < deadline and not _runs_under(raylet):
            time.sleep(0.2)
        assert driver.is_alive() and time.monotonic() < deadline, f"no run started on the worker node: {result}"
        while len(list(paths.checkpoints_dir("smoke").glob("*.pt"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)                                 # mid-run: both runs have an epoch's checkpoint on disk
        lost = _runs_under(raylet)
        cluster.remove_node(worker)                         # the node is lost with its run on it
        driver.join(timeout=300)
        assert not driver.is_alive(), "reproduce did not finish after the node was lost"
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert lost, "the worker node's run finished before the node was removed"
    assert len(result["nodes"]) == 2 and "Ray cluster" in result["where"]
    assert sorted(o.status for o in result["outcomes"]) == ["trained"] * 2, result["outcomes"]   # the lost one too
    for row in rows:                                        # every run landed whole, nothing half-written
        run = find_run(row.config("smoke", 1))
        assert run is not None and [h["epoch"] for h in run.history] == [1, 2, 3, 4, 5, 6]
    assert not [p for p in paths.results_home().rglob("*") if p.name.endswith(".tmp")]
    assert not list(paths.checkpoints_dir("smoke").glob("*.pt"))   # spent resume states deleted


def _runs_under(raylet: int) -> list[str]:
    """The runs (Ray task names) executing in worker processes of the node whose raylet is `raylet`."""
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline", "ppid"]):
        title = " ".join(process.info["cmdline"] or [])
        if title.startswith("ray::tiny_") and process.info["ppid"] == raylet:
            found.append(title.removeprefix("ray::").strip())
    return found


def test_a_node_that_does_not_see_the_homes_is_named_with_the_path(tmp_path):
    token = "t0k3n"
    (tmp_path / "shared" / ".cakd-nodes").mkdir(parents=True)
    (tmp_path / "shared" / ".cakd-nodes" / token).write_text(token)
    assert reproduce.missing_homes([str(tmp_path / "shared")], token) == []
    assert reproduce.missing_homes([str(tmp_path / "shared"), str(tmp_path / "elsewhere")], token) == [
        str(tmp_path / "elsewhere")]


# ----------------------------------------------------------------------------- command line

@pytest.mark.parametrize("args, message", [
    (["--workers", "0"], "workers=0 must be an integer >= 1"),
    (["--runs-per-gpu", "0"], "runs_per_gpu=0 must be an integer >= 1"),
    (["--address", "127.0.0.1:1"], "address='127.0.0.1:1': nothing answers there"),
    (["--address", "nowhere"], "address='nowhere' is not 'auto', 'HOST:PORT'"),
    (["--address", "auto", "--workers", "3"], "workers=3 and address='auto' do not go together"),
])
def test_bad_engine_flags_are_one_line_and_exit_2_before_any_work(args, message, capsys, monkeypatch,
                                                                  isolated_homes, tmp_path):
    monkeypatch.setattr(reproduce, "ray_session", lambda *a, **k: pytest.fail("work started before validation"))
    monkeypatch.setattr(paths, "BOOK_RUNS", tmp_path / "runs")
    assert main(["reproduce", "--profile", "smoke", *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("cakd reproduce: error: ") and message in err, err
    assert not (tmp_path / "runs").exists()
    assert json.dumps(sorted(str(p) for p in isolated_homes["results"].rglob("*"))) == "[]"


def test_the_book_command_is_jupyter_books_own(monkeypatch):
    # `python -m jupyter_book.cli.main` (no __main__ block) once exited 0 without building anything
    import subprocess

    commands, run = [], subprocess.run
    monkeypatch.setattr(subprocess, "run", lambda command, **kwargs: commands.append(command) or
                        subprocess.CompletedProcess(command, 0))
    assert reproduce.build_book() == 0
    assert commands[0][-2:] == ["build", "."]
    shown = run([*commands[0][:-2], "build", "--help"], capture_output=True, text=True)
    assert shown.returncode == 0 and "Convert your book's or page's content to HTML" in shown.stdout, shown.stdout
    assert "nocolor()" in commands[0][2]          # pytest's output is not a terminal: a log without colour codes


# ----------------------------------------------------------------------------- progress in a log

def test_a_task_in_a_log_says_per_epoch_where_its_run_stands(capsys):
    # not a terminal: a line per epoch (Ray forwards a task's output to the driver's), from the epoch's record
    on_epoch = reproduce._progress("kd_vit seed 0", 100, bars=False)
    on_epoch({"epoch": 3, "loss": 2.34012, "val_acc": 41.2, "seconds": 725.0})
    on_epoch({"epoch": 100, "loss": 0.5, "val_acc": 70.0, "seconds": 3600.0})
    # 725 s for 3 epochs: 97 more take 725 / 3 x 97 = 23,441.7 s = 6:30:42
    assert capsys.readouterr().out.splitlines() == [
        "kd_vit seed 0: epoch 3/100, loss 2.3401, val 41.20%, 0:12:05 elapsed, at most 6:30:42 left",
        "kd_vit seed 0: epoch 100/100, loss 0.5000, val 70.00%, 1:00:00 elapsed, at most 0:00:00 left"]
