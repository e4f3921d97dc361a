"""The layers hold at run time too: reading results (the book, the figures, the run registry) loads no training
code, and the registry not even torch. Checked in a fresh interpreter, whose sys.modules is the truth."""
import json
import subprocess
import sys

import pytest

from cakd import paths

TRAINING = ("cakd.train", "cakd.teaching", "cakd.teachers", "cakd.graphed", "cakd.runs", "torch")


def loaded_after(code: str) -> list[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=paths.ROOT / "book" / "_ext", capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("code", ["import cakd.report, cakd.plots, cakd.conclusions",
                                  "import cakd.registry, cakd.costs, cakd.tables",
                                  "import cakd_tables   # the book's Sphinx extension"])
def test_reading_results_loads_no_training_code_and_no_torch(code):
    loaded = loaded_after(code)
    assert "cakd.report" in loaded or "cakd.registry" in loaded            # the probe imported what it says
    assert not [m for m in loaded if m in TRAINING or m.startswith("torch.")]


def test_the_probe_sees_a_training_import():
    loaded = loaded_after("import cakd.runs")   # one interpreter: each import of torch takes seconds
    assert "cakd.train" in loaded and "torch" in loaded
