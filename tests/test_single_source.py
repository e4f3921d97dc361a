"""Each option is defined once: what a run reads decides its hash, a new loss needs only its registration, and
the notebooks' parameters are generated from the config (cakd.definitions, cakd.training.losses, cakd.book.pages)."""
from __future__ import annotations

import dataclasses
import shutil

import nbformat
import pytest
import torch

from cakd.book import notebook, pages
from cakd.book.notebook import NotebookStop
from cakd.book.pages import NOTEBOOKS, RUN_NOTEBOOKS, default_parameters, parameter_names, parameters_source
from cakd.definitions import methods, paths
from cakd.definitions.config import RunConfig
from cakd.definitions.methods import Method
from cakd.definitions.profiles import profile_config
from cakd.training import losses, runs
from cakd.training.losses import kl_per_sample, register_loss
from cakd.training.runs import RequirementError, load_or_train
from support import D, R18, SESSION_TEACHERS, smoke_config


# ----------------------------------------------------------------------------- options a run does not read

@pytest.mark.slow
def test_baseline_with_another_gamma_reuses_the_default_run():
    # a baseline reads no loss option: gamma=3 is the same run, loaded from the registry
    first = load_or_train(smoke_config(method="baseline"))
    again = load_or_train(smoke_config(method="baseline", gamma=3.0))
    assert again.config.run_id == first.config.run_id and first.trained and not again.trained


@pytest.mark.slow
def test_method_3_with_another_alpha_reuses_the_default_run(smoke_teachers):
    # alpha is single-teacher KD's; Method 3 computes its own from the teachers' confidence
    first = load_or_train(smoke_config(method="adaptive_alpha", teachers=SESSION_TEACHERS))
    again = load_or_train(smoke_config(method="adaptive_alpha", teachers=SESSION_TEACHERS, alpha=0.9))
    assert again.config.run_id == first.config.run_id and first.trained and not again.trained


# ----------------------------------------------------------------------------- a new loss, registered in a test

def _my_kd(student_logits, teacher_logits, labels, *, temperature):
    """Pure KD from one teacher: tau^2 KL, no CE."""
    teacher_logits = teacher_logits[0] if teacher_logits.dim() == 3 else teacher_logits
    kd = kl_per_sample(student_logits, teacher_logits[None], temperature)[0].mean()
    return kd, {"kd": kd.detach()}


@pytest.fixture
def my_kd(monkeypatch):
    """Adds method 'my_kd' for the test only (monkeypatch removes it afterwards): its entry in
    cakd.definitions.methods, its loss, a run notebook."""
    monkeypatch.setitem(methods.METHODS, "my_kd", Method("My KD", "one", "my_kd_notebook", "-p temperature 2",
                                                         lambda c: f"L = KL, tau {c.temperature:g}", ("temperature",)))
    monkeypatch.setitem(losses.LOSSES, "my_kd", None)     # undo deletes the key: it was absent before
    register_loss("my_kd")(_my_kd)
    monkeypatch.setitem(RUN_NOTEBOOKS, "my_kd_notebook", "my_kd")
    return "my_kd"


def test_a_registered_loss_is_a_valid_method(my_kd):
    config = RunConfig(method=my_kd, teachers=(D,))
    assert losses.LOSSES[config.method] is _my_kd and config.loss_options() == {"temperature": 4.0}
    with pytest.raises(ValueError, match="exactly one teacher"):
        RunConfig(method=my_kd, teachers=(D, R18))


def test_a_registered_losss_hash_covers_what_it_reads_only(my_kd):
    config = RunConfig(method=my_kd, teachers=(D,))
    assert dataclasses.replace(config, temperature=8.0).digest() != config.digest()
    assert dataclasses.replace(config, alpha=0.9).digest() == config.digest()


def test_a_registered_loss_gets_its_notebook_parameters(my_kd):
    names = parameter_names("my_kd_notebook")
    assert "temperature" in names and "teachers" in names and "alpha" not in names and "gamma" not in names


@pytest.mark.slow
def test_a_registered_loss_trains_end_to_end(my_kd, smoke_teachers):
    result = load_or_train(smoke_config(method=my_kd, teachers=[D]))
    assert result.trained and result.metrics["method"] == my_kd and result.metrics["epochs"] == 1
    assert "kd" in result.history[0] and "ce" not in result.history[0]


# ----------------------------------------------------------------------------- notebooks

@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_parameters_cell_is_generated_from_the_config(name):
    nb = nbformat.read(paths.NOTEBOOKS / f"{name}.ipynb", as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1 and cells[0].source == parameters_source(name), "rerun: python -m cakd notebooks"


@pytest.mark.parametrize("name", sorted(RUN_NOTEBOOKS))
def test_every_run_notebook_is_the_shared_cells_in_step(name):
    # every cell of every run notebook, the title and introduction included, as cakd.notebook writes it
    committed = nbformat.read(paths.NOTEBOOKS / f"{name}.ipynb", as_version=4)
    generated = pages.run_notebook(name)
    assert [(c.cell_type, c.source, c.metadata) for c in committed.cells] == \
        [(c.cell_type, c.source, c.metadata) for c in generated.cells], "rerun: python -m cakd notebooks"


def test_a_changed_template_cell_reaches_every_run_notebook(tmp_path, monkeypatch):
    template = nbformat.read(paths.NOTEBOOKS / "run_template.ipynb", as_version=4)
    template.cells[-1].source += "  # changed"
    for path in paths.NOTEBOOKS.glob("*.ipynb"):
        shutil.copy(path, tmp_path)
    nbformat.write(template, tmp_path / "run_template.ipynb")
    monkeypatch.setattr(paths, "NOTEBOOKS", tmp_path)
    assert sorted(pages.write_notebooks()) == sorted(RUN_NOTEBOOKS)
    for name in RUN_NOTEBOOKS:
        nb = nbformat.read(tmp_path / f"{name}.ipynb", as_version=4)
        assert nb.cells[-1].source.endswith("  # changed") and nb.cells[:2] == pages.run_notebook(name).cells[:2]
    assert pages.write_notebooks() == []                     # written: in step


def _namespace(name: str, **injected) -> dict:
    """A notebook's globals after its parameters cell and papermill's injected cell."""
    return {**default_parameters(name), **injected}


def test_notebook_refuses_an_injected_unknown_name_with_the_closest_match():
    with pytest.raises(NotebookStop, match=r"'teacher' \(did you mean 'teachers'\?\)"):
        notebook.run_config("method3", _namespace("method3", profile="smoke", teacher=[D, R18]))


@pytest.mark.parametrize("name, value", [("temperature", 0), ("batch_size", 0), ("epochs", -1)])
def test_notebook_refuses_a_bad_value_naming_the_parameter(name, value):
    with pytest.raises(NotebookStop, match=rf"RunConfig\.{name}={value!r} is invalid"):
        notebook.run_config("method3", _namespace("method3", profile="smoke", **{name: value}))


def test_notebook_stop_shows_one_line_and_no_traceback():
    with pytest.raises(NotebookStop) as error:
        notebook.run_config("baseline", _namespace("baseline", profile="smoke", epochs=0))
    lines = error.value._render_traceback_()
    assert len(lines) == 1 and lines[0].startswith("cakd: RunConfig.epochs=0")
    assert error.value.__cause__ is None and error.value.__suppress_context__


def test_notebook_with_good_smoke_parameters_gives_the_config():
    config = notebook.run_config("method3", _namespace("method3", profile="smoke", temperature=16, epochs=1))
    assert (config.method, config.temperature, config.epochs, config.profile) == ("adaptive_alpha", 16.0, 1, "smoke")


# ----------------------------------------------------------------------------- GPU profiles on a CPU

@pytest.mark.parametrize("profile", ["paper", "consistent"])
def test_gpu_profile_on_a_cpu_says_what_to_do(profile, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RequirementError) as error:
        runs.preflight(profile_config(profile))
    assert "-p profile smoke" in str(error.value) and "-p device cpu" in str(error.value)


def test_gpu_profile_on_a_cpu_runs_when_device_cpu_is_asked_for(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runs.preflight(profile_config("paper", device="cpu")) == torch.device("cpu")


def test_paper_notebook_on_a_cpu_stops_with_the_requirement(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(NotebookStop, match="-p profile smoke"):
        notebook.run_config("method3", _namespace("method3"))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_default_parameters_are_what_the_parameters_cell_sets(name):
    cell = next(c for c in nbformat.read(paths.NOTEBOOKS / f"{name}.ipynb", as_version=4).cells
                if "parameters" in c.metadata.get("tags", []))
    namespace: dict = {}
    exec(cell.source, namespace)   # the notebook's own cell, as its kernel runs it
    for builtin in ("__builtins__", "__annotations__"):
        namespace.pop(builtin, None)
    assert namespace == default_parameters(name)
