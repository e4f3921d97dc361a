"""`reproduce` on the engine: (row, seed) jobs through 2 local Ray workers on a tiny manifest, one of them failing;
and the CLI's checks of --workers / --runs-per-gpu / --address (one line, exit 2, before any work)."""
from __future__ import annotations

import json
import re

import nbformat
import pytest

from cakd import paths, reproduce
from cakd.__main__ import main
from cakd.engine import Engine, EngineOptions, summary_table
from cakd.manifest import Row
from cakd.report import profile_note
from cakd.runs import find_run

# A notebook as small as the real ones are thin: the parameters cell, then one load_or_train. It also writes an
# epoch line to stderr, so the test sees the kernel's stderr reach the driver (cakd.train prints them likewise).
TINY_PARAMETERS = """profile = "smoke"
seed = 0
epochs = None
synthetic_size = None
batch_size = None
force = False"""
TINY_BODY = """import sys
import cakd.config, cakd.runs
config = cakd.config.profile_config(profile, method="baseline", seed=seed, epochs=epochs,
                                    synthetic_size=synthetic_size, batch_size=batch_size)
print("tiny epoch 1/1 val 12.5% test 11.0% lr 0.001 eta 0s", file=sys.stderr)
result = cakd.runs.load_or_train(config, force=force)
print(f"test_acc: {result.accuracy:.2f}")"""
TINY = {"method": "baseline", "epochs": 1, "synthetic_size": 600}
ROWS = [Row("tiny_a", "Tiny A", "tiny", dict(TINY), None),
        # Valid, but fails once training starts (more images per batch than the split has): in both paths.
        Row("tiny_broken", "Tiny broken", "tiny", {**TINY, "batch_size": 100_000}, None),
        Row("tiny_b", "Tiny B", "tiny", {**TINY, "synthetic_size": 660}, None)]


@pytest.fixture
def tiny_manifest(tmp_path, tmp_path_factory, monkeypatch):
    """notebooks/ and book/runs/ in tmp_path, holding the tiny notebook; Ray's files there too."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_markdown_cell("# Tiny"),
                nbformat.v4.new_code_cell(TINY_PARAMETERS, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(TINY_BODY)]
    nbformat.write(nb, notebooks / "tiny.ipynb")
    monkeypatch.setattr(paths, "NOTEBOOKS", notebooks)
    monkeypatch.setattr(paths, "BOOK_RUNS", tmp_path / "runs")
    paths.BOOK_RUNS.mkdir()
    # Ray's sockets, logs and spill files: a short folder, as a socket's path must stay under 108 bytes
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path_factory.mktemp("r")))
    yield ROWS
    import ray
    ray.shutdown()                                     # the engine shuts it down; this is for a failed test


@pytest.mark.slow
def test_two_ray_workers_land_every_run_a_failure_is_reported_and_a_rerun_skips_finished_runs(tiny_manifest):
    logged = []
    with Engine(EngineOptions(workers=2), gpu=False) as engine:
        assert engine.ray is not None and "2 CPU worker(s)" in engine.where
        outcomes = reproduce.run_all(engine, tiny_manifest, "smoke", 2, False, logged.append, terminal=False)

    by_run = {(o.name, o.seed): o for o in outcomes}
    assert sorted(by_run) == sorted((row.id, seed) for row in tiny_manifest for seed in (0, 1))
    for row in (tiny_manifest[0], tiny_manifest[2]):
        for seed in (0, 1):
            run = find_run(row.config("smoke", seed))
            assert run is not None, f"{row.id} seed {seed} is not in the registry"
            assert by_run[row.id, seed].status == "trained"
            assert by_run[row.id, seed].test_acc == run.accuracy
    for seed in (0, 1):                                  # the failure, in both paths, with its one-line error
        failed = by_run["tiny_broken", seed]
        assert failed.status == "FAILED" and "batch_size=100000" in failed.error, failed.error
        assert "\n" not in failed.error
        assert find_run(tiny_manifest[1].config("smoke", seed)) is None
    assert (paths.results_home() / "smoke" / "logs" / "tiny_broken-seed1.log").read_text().count("Traceback") == 1

    # seed 0 ran the notebook: its page is in book/runs/, stamped (a failed one says so), titled by the row
    page = nbformat.read(paths.BOOK_RUNS / "tiny_a.ipynb", as_version=4)
    assert page.metadata["cakd"]["parameters"] == {"profile": "smoke", "epochs": 1, "synthetic_size": 600}
    assert page.cells[0].source.startswith("# Tiny A\n\n```{warning}\n" + profile_note("smoke").banner + "\n```\n\n")
    assert nbformat.read(paths.BOOK_RUNS / "tiny_broken.ipynb", as_version=4).metadata["cakd"]["failed"] is True
    assert not (paths.BOOK_RUNS / "tiny_a-seed1.ipynb").exists()

    # the kernel's stderr epoch line reached the driver, prefixed with the job; nothing else of the kernel did
    assert any(re.fullmatch(r"\[\d/6\] tiny_a seed 0 tiny epoch 1/1 val 12\.5% eta 0s", line) for line in logged)
    assert not any("Warning" in line or "Traceback" in line for line in logged), logged
    table = summary_table(outcomes)
    assert table.count("FAILED tiny_broken") == 2 and table.count(" trained") == 4

    # a rerun: the 4 finished runs are reused without a job; only the broken row runs (and fails) again
    logged.clear()
    with Engine(EngineOptions(workers=2), gpu=False) as engine:
        again = reproduce.run_all(engine, tiny_manifest, "smoke", 2, False, logged.append, terminal=False)
    assert {(o.name, o.seed): o.status for o in again} == {**{(r.id, s): "reused" for r in ROWS for s in (0, 1)},
                                                          ("tiny_broken", 0): "FAILED", ("tiny_broken", 1): "FAILED"}
    assert "4 of 6 runs finished before: reused" in logged
    assert sum(line.endswith(": started") for line in logged) == 2


# ----------------------------------------------------------------------------- CLI checks

@pytest.mark.parametrize("args, message", [
    (["--workers", "0"], "workers=0 must be an integer >= 1"),
    (["--runs-per-gpu", "0"], "runs_per_gpu=0 must be an integer >= 1"),
    (["--address", "127.0.0.1:1"], "address='127.0.0.1:1': nothing answers there"),
    (["--address", "nowhere"], "address='nowhere' is not 'auto', 'HOST:PORT'"),
    (["--address", "auto", "--workers", "3"], "workers=3 and address='auto' do not go together"),
])
def test_bad_engine_flags_are_one_line_and_exit_2_before_any_work(args, message, capsys, monkeypatch,
                                                                  isolated_homes, tmp_path):
    monkeypatch.setattr(reproduce.kernel, "ensure", lambda: pytest.fail("work started before validation"))
    monkeypatch.setattr(paths, "BOOK_RUNS", tmp_path / "runs")
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert main(["reproduce", "--profile", "smoke", *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("cakd reproduce: error: ")
    assert message in err, err
    assert not (tmp_path / "runs").exists()
    assert json.dumps(sorted(str(p) for p in isolated_homes["results"].rglob("*"))) == "[]"
