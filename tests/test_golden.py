"""Golden notebooks re-executed in fresh homes must print the same numbers, on any machine.

nbval (`--nbval-lax`) compares the cells tagged `nbval-check-output` exactly: numbers fixed by the mathematics
alone (recipe, parameter counts, fixed-batch loss, lr per epoch). The training metrics (cells tagged
`cakd-metrics`) are then read back from the registry the execution wrote and compared with the golden's within
cakd.goldens.METRIC_TOLERANCE. A failure says first whether this machine differs from the golden's.
Regenerate with `python -m cakd goldens`.
"""
import subprocess
import sys

import nbformat
import pytest

from cakd import paths
from cakd.goldens import (GOLDENS, METRIC_TOLERANCE, SANITIZE, compare_metrics, environment, fresh_metrics,
                          golden_environment, golden_path, printed_metrics)

pytestmark = [pytest.mark.notebook, pytest.mark.slow]


@pytest.fixture(scope="module")
def shared_smoke_cache(tmp_path_factory):
    """One cache home for every golden of the run: the smoke teachers are trained once, then reused."""
    return tmp_path_factory.mktemp("golden-cache")


def nbval(name, results, cache, *extra):
    """Run nbval on golden `name` with its kernel in `results` / `cache`; the completed process."""
    command = [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
               f"--nbval-sanitize-with={SANITIZE}", "-q", *extra, str(golden_path(name))]
    return subprocess.run(command, cwd=paths.ROOT, env=golden_environment(results, cache), capture_output=True,
                          text=True)


def environment_note(golden):
    made, here = golden.metadata.get("cakd_environment", {}), environment()
    differs = {k: (made.get(k), v) for k, v in here.items() if made.get(k) != v}
    return (f"environment differs from the golden's: {differs}\n" if differs
            else "environment equals the golden's: the change is in the code\n")


@pytest.mark.parametrize("name", sorted(GOLDENS))
def test_golden_notebook_reproduces_its_outputs(name, tmp_path, shared_smoke_cache):
    golden = nbformat.read(golden_path(name), as_version=4)
    done = nbval(name, tmp_path / "results", shared_smoke_cache)
    assert done.returncode == 0, environment_note(golden) + f"nbval failed on {name}:\n{done.stdout[-6000:]}"
    problems = compare_metrics(printed_metrics(golden), fresh_metrics(name, tmp_path / "results"))
    assert not problems, environment_note(golden) + f"{name}: training metrics moved beyond " \
                                                    f"{METRIC_TOLERANCE} points: {problems}"


def _code_cells(nb):
    return [c.source for c in nb.cells if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]


@pytest.mark.parametrize("name", sorted(GOLDENS))
def test_golden_code_equals_its_source_notebook(name):
    notebook, parameters = GOLDENS[name]
    golden = nbformat.read(golden_path(name), as_version=4)
    source = nbformat.read(paths.NOTEBOOKS / f"{notebook}.ipynb", as_version=4)
    assert _code_cells(golden) == _code_cells(source), "regenerate: python -m cakd goldens " + name
    injected = [c for c in golden.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and golden.metadata.papermill["parameters"] == parameters


@pytest.mark.parametrize("name", sorted(GOLDENS))
def test_golden_checks_some_outputs(name):
    golden = nbformat.read(golden_path(name), as_version=4)
    checked = [c for c in golden.cells if "nbval-check-output" in c.metadata.get("tags", [])]
    assert checked and all(c.outputs for c in checked), "a golden with nothing to compare cannot fail"
    if GOLDENS[name][0] != "results":
        assert printed_metrics(golden), "a golden that trains must print its metrics"


def test_metric_comparison_flags_a_move_beyond_the_tolerance():
    assert compare_metrics({"test_acc": 50.0}, {"test_acc": 50.0 + METRIC_TOLERANCE}) == []
    assert compare_metrics({"test_acc": 50.0}, {"test_acc": 50.0 + 2 * METRIC_TOLERANCE})
    assert compare_metrics({"test_acc": 50.0}, {}) == ["test_acc: missing (golden 50.0)"]
