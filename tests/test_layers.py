"""The layers hold at run time too: reading results (the book, the figures, the run registry), making the pages and
the command line's help load no training code and no torch. Checked in a fresh interpreter, whose sys.modules is the
truth."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cakd.definitions import paths

TORCH_FREE = ("cakd.reading.report", "cakd.reading.plots", "cakd.reading.conclusions", "cakd.reading.costs",
              "cakd.reading.recipe", "cakd.definitions.registry", "cakd.definitions.profiles", "cakd.book.pages",
              "cakd_tables")   # the last: the book's Sphinx extension


def loaded_after(*modules: str) -> list[str]:
    done = subprocess.run([sys.executable, str(Path(__file__).parent / "loaded_modules.py"), *modules],
                          cwd=paths.ROOT / "book" / "_ext", capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_reading_results_and_making_pages_load_no_training_code_and_no_torch():
    loaded = loaded_after(*TORCH_FREE)
    assert set(TORCH_FREE) <= set(loaded)                                # the probe imported what it says
    assert not [m for m in loaded if m.startswith(("cakd.training", "torch"))]


def test_the_probe_sees_a_training_import():
    loaded = loaded_after("cakd.training.runs")   # one interpreter: each import of torch takes seconds
    assert "cakd.training.train" in loaded and "torch" in loaded


@pytest.mark.parametrize("args", [["--help"], ["config", "m3_dr_t8", "--profile", "paper"]])
def test_the_command_line_answers_without_torch(args):
    # -X importtime lists every module the interpreter imports, one line each: "import time: ... | name"
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "cakd", *args], capture_output=True, text=True,
                          cwd=paths.ROOT)
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert done.returncode == 0 and done.stdout.strip() and "cakd.definitions" in imported
    assert not [m for m in imported if m.split(".")[0] == "torch" or m.startswith("cakd.training")]
