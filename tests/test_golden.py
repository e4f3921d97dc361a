"""nbval regression tests: each golden notebook re-executed in fresh homes must print the same numbers.

Only cells marked `# NBVAL_CHECK_OUTPUT` (rounded metrics, parameter counts, tables) are compared
(`--nbval-lax`); tests/golden/sanitize.cfg masks times, devices, addresses and progress bars.
Regenerate the goldens with `python -m cakd goldens`.
"""
import subprocess
import sys

import nbformat
import pytest

from cakd import paths
from cakd.goldens import GOLDENS, SANITIZE, golden_environment, golden_path


@pytest.mark.parametrize("name", sorted(GOLDENS))
def test_golden_notebook_reproduces_its_outputs(name, tmp_path):
    command = [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
               f"--nbval-sanitize-with={SANITIZE}", "-q", str(golden_path(name))]
    done = subprocess.run(command, cwd=paths.ROOT, env=golden_environment(tmp_path), capture_output=True,
                          text=True)
    assert done.returncode == 0, f"nbval failed on {golden_path(name).name}:\n{done.stdout[-6000:]}"
    assert " passed" in done.stdout


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
    checked = [c for c in golden.cells if c.cell_type == "code" and c.source.startswith("# NBVAL_CHECK_OUTPUT")]
    assert checked and all(c.outputs for c in checked), "a golden with nothing to compare cannot fail"
