"""The papermill command line, as users type it: `papermill notebooks/method3.ipynb OUT -p temperature 16 ...`.

A bad parameter stops the notebook in its first code cell with one line naming it; a profile that cannot run
here says what to do; with OUT `-` the executed notebook goes to stdout, so the run registry is the only record.
"""
import os
import subprocess
import sys

import nbformat
import pytest

from cakd.definitions import paths
from cakd.definitions.profiles import profile_config
from cakd.definitions.registry import find_run
from support import SESSION_TEACHERS, SMALL

pytestmark = pytest.mark.notebook


def papermill(notebook: str, output, *args: str, cwd) -> subprocess.CompletedProcess:
    """`python -m papermill notebooks/<notebook>.ipynb OUTPUT ARGS...` with no GPU visible."""
    command = [sys.executable, "-m", "papermill", str(paths.NOTEBOOKS / f"{notebook}.ipynb"), str(output), *args,
               "--cwd", str(cwd)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=cwd,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def written(homes) -> list[str]:
    return sorted(str(p.relative_to(home)) for home in homes.values() for p in home.rglob("*"))


@pytest.mark.parametrize("args, message", [
    (["-p", "batch_size", "0"], "cakd: RunConfig.batch_size=0 is invalid: must be >= 1"),
    (["-p", "teacher", "nope"], "cakd: unknown parameter of notebooks/method3.ipynb(s) 'teacher' "
                                "(did you mean 'teachers'?)"),
], ids=["batch_size-0", "teacher-nope"])
def test_bad_parameter_fails_fast_with_one_line_naming_it(args, message, isolated_homes, tmp_path):
    done = papermill("method3", tmp_path / "out.ipynb", *args, cwd=tmp_path)
    assert done.returncode != 0
    assert last_line(done.stderr).startswith(message), done.stderr[-2000:]
    assert "During handling of the above exception" not in done.stderr
    assert written(isolated_homes) == []                             # nothing trained, cached or downloaded


def test_paper_profile_on_a_cpu_ends_with_what_to_do(isolated_homes, tmp_path):
    # the notebooks' default profile is paper: on this machine (no GPU) the first code cell says what to do
    done = papermill("method3", tmp_path / "out.ipynb", "-p", "temperature", "16", cwd=tmp_path)
    assert done.returncode != 0
    line = last_line(done.stderr)
    assert line.startswith("cakd: ") and "-p profile smoke" in line and "-p device cpu" in line, done.stderr[-2000:]
    assert "During handling of the above exception" not in done.stderr
    assert written(isolated_homes) == []


def _smoke_args(**extra) -> list[str]:
    values = {"profile": "smoke", **SMALL, **extra}
    return [arg for name, value in values.items() for arg in ("-p", name, str(value))]


@pytest.mark.slow
def test_method3_with_a_changed_lr_streamed_to_stdout_leaves_its_own_run_in_the_registry(smoke_teachers, tmp_path):
    teachers = list(SESSION_TEACHERS)
    done = papermill("method3", "-", *_smoke_args(temperature=16, lr=0.001), "-y", f"teachers: {teachers}",
                     cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    changed, default = (profile_config("smoke", method="adaptive_alpha", teachers=teachers, temperature=16.0,
                                       **{**SMALL, **lr}) for lr in ({"lr": 0.001}, {}))
    assert changed.run_id != default.run_id                        # another run, not the default lr's
    assert sorted(p.name for p in paths.runs_dir("smoke").iterdir()) == [changed.run_id]
    run = find_run(changed)
    assert run.config.lr == 0.001 and run.config.temperature == 16.0
    executed = nbformat.reads(done.stdout, as_version=4)           # stdout is the executed notebook itself
    printed = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert f"test_acc: {round(run.metrics['test_acc'], 2)}\n" in printed
    assert list(tmp_path.iterdir()) == []                          # and no stray file beside it
