"""The papermill command line, as users type it: `papermill notebooks/method3.ipynb OUT -p temperature 16 ...`.

With OUT `-` the executed notebook goes to stdout and nowhere else, so the run registry is the only record:
the run must be there whatever OUT is.
"""
import subprocess
import sys

import nbformat

from cakd import paths
from cakd.config import profile_config
from cakd.runs import find_run

TEACHERS = ["densenet121", "resnet18"]   # the two cheapest tiny teachers: K >= 2 is all Method 3 needs


def test_method3_streamed_to_stdout_leaves_its_run_in_the_registry(tmp_path):
    command = [sys.executable, "-m", "papermill", str(paths.NOTEBOOKS / "method3.ipynb"), "-",
               "-p", "temperature", "16", "-p", "profile", "smoke", "-p", "epochs", "1",
               "-p", "teacher_mode", "online", "-y", f"teachers: {TEACHERS}", "--cwd", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    config = profile_config("smoke", method="adaptive_alpha", teachers=TEACHERS, temperature=16.0, epochs=1,
                            teacher_mode="online")
    run = find_run(config)
    assert run is not None, "the tau=16 Method 3 run is not in the registry"
    assert run.config.temperature == 16.0 and run.metrics["epochs"] == 1

    executed = nbformat.reads(done.stdout, as_version=4)           # stdout is the executed notebook itself
    printed = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert f"test_acc: {round(run.metrics['test_acc'], 2)}\n" in printed
    assert list(tmp_path.iterdir()) == []                          # and no stray file beside it
