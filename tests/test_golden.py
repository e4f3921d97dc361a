"""Golden notebooks executed again in fresh homes must print what they printed, on any machine: nbval compares
the cells tagged `nbval-check-output`, the mathematics exactly and the training within tolerance
(tests/goldens.py, through the nbval_tolerance plugin). A failure says first whether this machine differs from the
golden's. Regenerate with `make goldens`."""
import os
import subprocess
import sys

import nbformat
import pytest

from cakd.definitions import paths
from goldens import GOLDENS, PROFILE, SANITIZE, TOLERANCES, environment, golden_environment
from goldens import golden_path, tolerance, within_tolerance

TESTS = os.path.dirname(__file__)


def own_cache(shared, folder):
    """A cache home for one golden's kernel: the shared trained teachers, logit caches and data (read), its own
    student checkpoints (written). A golden and its mutations train the same run at the same time: sharing the
    checkpoint folder, one kernel could resume (or delete) the other's resume state."""
    profile = folder / PROFILE
    profile.mkdir(parents=True)
    for part in ("teachers", "logits"):
        if (shared / PROFILE / part).exists():
            (profile / part).symlink_to(shared / PROFILE / part)
    if (shared / "data").exists():
        (folder / "data").symlink_to(shared / "data")
    return folder


def nbval(name, home, shared_cache, *extra, pythonpath=()):
    """nbval on golden `name`, its kernel's results and checkpoints in `home`, the trained teachers and logit
    caches from `shared_cache`; the completed process."""
    env = golden_environment(home / "results", own_cache(shared_cache, home / "cache"))
    env["PYTHONPATH"] = os.pathsep.join([*pythonpath, TESTS])
    # --noconftest: the tests' conftest (which imports torch, 3 s) is for the test process; nbval needs none of it
    command = [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
               "--noconftest", "-p", "nbval_tolerance", f"--nbval-sanitize-with={SANITIZE}", "-q", *extra,
               str(golden_path(name))]
    done = subprocess.run(command, cwd=paths.ROOT, env=env, capture_output=True, text=True)
    # a kernel that died before it answered at all (seen once, under full load) gets one more start; a kernel
    # that dies later, or a second time, still fails the test
    if "Kernel died before replying to kernel_info" in done.stdout:
        done = subprocess.run(command, cwd=paths.ROOT, env=env, capture_output=True, text=True)
    return done


def environment_note(golden):
    made, here = golden.metadata.get("cakd_environment", {}), environment()
    differs = {k: (made.get(k), v) for k, v in here.items() if made.get(k) != v}
    return (f"environment differs from the golden's: {differs}\n" if differs
            else "environment equals the golden's: the change is in the code\n")


# the online-teaching golden first: it is the longest, and the goldens run last (conftest), so started last it
# would leave one core idle for its whole run
@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(GOLDENS, key=lambda n: (GOLDENS[n][1].get("teacher_mode") != "online", n)))
def test_golden_notebook_reproduces_its_outputs(name, tmp_path, golden_cache):
    done = nbval(name, tmp_path, golden_cache)
    golden = nbformat.read(golden_path(name), as_version=4)
    assert done.returncode == 0, environment_note(golden) + f"nbval failed on {name}:\n{done.stdout[-6000:]}"


def _code_cells(nb):
    return [c.source for c in nb.cells if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]


@pytest.mark.parametrize("name", sorted(GOLDENS))
def test_golden_code_equals_its_source_notebook(name):
    notebook, parameters = GOLDENS[name]
    golden = nbformat.read(golden_path(name), as_version=4)
    source = nbformat.read(paths.NOTEBOOKS / f"{notebook}.ipynb", as_version=4)
    assert _code_cells(golden) == _code_cells(source), "regenerate: make goldens, or python tests/goldens.py " + name
    injected = [c for c in golden.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and golden.metadata.papermill["parameters"] == parameters


@pytest.mark.parametrize("name", sorted(GOLDENS))
def test_golden_checks_some_outputs(name):
    golden = nbformat.read(golden_path(name), as_version=4)
    checked = [c for c in golden.cells if "nbval-check-output" in c.metadata.get("tags", [])]
    assert checked and all(c.outputs for c in checked), "a golden with nothing to compare cannot fail"


def test_a_golden_kernel_reads_the_shared_teachers_and_keeps_its_checkpoints_to_itself(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    for part in ("teachers", "logits"):
        (shared / PROFILE / part).mkdir(parents=True)
    env = golden_environment(tmp_path / "results", own_cache(shared, tmp_path / "own"))
    monkeypatch.setenv(paths.CACHE_ENV, env[paths.CACHE_ENV])
    assert paths.teachers_dir(PROFILE).resolve() == (shared / PROFILE / "teachers").resolve()
    assert paths.logit_cache_dir(PROFILE).resolve() == (shared / PROFILE / "logits").resolve()
    assert (tmp_path / "own").resolve() in paths.checkpoints_dir(PROFILE).resolve().parents


def test_every_file_under_tests_golden_is_a_registered_golden():
    assert sorted(p.stem for p in paths.GOLDEN.glob("*.ipynb")) == sorted(GOLDENS)
    assert sorted(p.name for p in paths.GOLDEN.iterdir() if p.suffix != ".ipynb") == ["sanitize.cfg"]


def training_lines(name):
    """What golden `name` prints in its cells tagged `cakd-metrics`."""
    golden = nbformat.read(golden_path(name), as_version=4)
    return "".join(o.get("text", "") for c in golden.cells if "cakd-metrics" in c.metadata.get("tags", [])
                   for o in c.outputs)


@pytest.mark.parametrize("name", [n for n in sorted(GOLDENS) if GOLDENS[n][0] != "results"])
def test_a_trained_golden_learns_well_above_chance_and_its_loss_falls(name):
    # 10 classes: chance is 10%, with a standard deviation of 3 points on the 100 test images and 4 on the 50
    # validation images, so 25% is 5 and 3.5 sd above it; the students reach 33-81%, the teachers 61-97%
    values = {k: float(v) for k, v in (line.split(": ") for line in training_lines(name).splitlines())}
    accuracies = [v for k, v in values.items() if k.endswith("test_acc") or k.endswith(".val_acc")]
    assert max(accuracies) >= 25, values
    if name != "teachers":
        losses = [values[f"epoch{e}.loss"] for e in range(1, GOLDENS[name][1]["epochs"] + 1)]
        assert losses[-1] < 0.6 * losses[0], losses


def test_within_tolerance_keeps_near_values_and_leaves_far_ones_for_nbval_to_report():
    golden = "epoch1.loss: 2.0\nepoch1.val_acc: 50.0\nepochs: 4\n"
    near = f"epoch1.loss: {2.0 * (1 + TOLERANCES['loss'] / 2)}\nepoch1.val_acc: {50.0 + TOLERANCES['acc']}\nepochs: 4\n"
    assert within_tolerance(golden, near) == golden
    far = f"epoch1.loss: {2.0 * (1 + 2 * TOLERANCES['loss'])}\nepoch1.val_acc: 50.0\nepochs: 5\n"
    assert within_tolerance(golden, far) == far                      # both changed lines stay as they are
    assert tolerance("epochs", 4) == 0 and tolerance("teacher_forward_passes", 0) == 0
