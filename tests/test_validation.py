"""Bad input fails before any work (issue "Validation before any work").

Every bad notebook parameter or CLI argument raises a ValueError that names the field, the bad value and what
is allowed: from papermill (the notebook stops in the config cell right after its parameters, nothing trained
or written), from the CLI (non-zero exit, one line on stderr, no traceback), and from Python. Names that
become paths (run folders, teacher folders, book pages) cannot leave their homes.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import nbformat
import papermill
import pytest
import torch
import yaml

from cakd.book.notebook import teachers_config
from cakd.book.pages import Page, default_parameters
from cakd.definitions import paths, registry
from cakd.definitions.config import RunConfig, TeacherTraining
from cakd.definitions.profiles import profile_config
from cakd.training import runs, teachers
from cakd.training.data import DataUnavailableError
from support import D, R50, smoke_config


def written(homes: dict[str, Path]) -> list[str]:
    """Everything under the results, cache and data homes (all empty when no work started)."""
    return sorted(str(p.relative_to(home)) for home in homes.values() for p in home.rglob("*"))


def papermill_cli_parameters(*args: str) -> dict:
    """The parameters the papermill CLI passes for `-p name value` and `-y yaml` arguments, converted by its own
    functions (so `-p gamma nan` is float('nan') and `-p teachers resnet50` a plain string, as on the command line)."""
    from papermill.cli import _resolve_type
    from papermill.iorw import NoDatesSafeLoader

    parameters, rest = {}, list(args)
    while rest:
        flag, *rest = rest
        if flag == "-p":
            (name, value), rest = rest[:2], rest[2:]
            parameters[name] = _resolve_type(value)
        elif flag == "-y":
            (text,), rest = rest[:1], rest[1:]
            parameters.update(yaml.load(text, Loader=NoDatesSafeLoader))
        else:
            raise AssertionError(f"unexpected papermill argument {flag!r}")
    return parameters


def execute(notebook: Path, output: Path, parameters: dict, cwd: Path) -> None:
    papermill.execute_notebook(str(notebook), str(output), parameters=parameters,
                               progress_bar=False, cwd=str(cwd))


# ----------------------------------------------------------------------------- papermill

# (id, notebook, papermill arguments after `-p profile smoke`, field, the bad value, what is allowed), as
# the message must show them. One kernel start (~3 s) each, nothing trained.
PAPERMILL_CASES = [
    ("method3-temperature-0", "method3", ["-p", "temperature", "0"], "temperature", "temperature=0 ", "> 0"),
    ("single-teacher-profile-mars", "single_teacher", ["-p", "profile", "mars"], "profile", "'mars'", "'smoke'"),
    ("method1-one-teacher", "method1", ["-y", f"teachers: [{R50}]"], "teachers", f"('{R50}',)", "K >= 2"),
    ("single-teacher-alpha-1.5", "single_teacher", ["-p", "alpha", "1.5"], "alpha", "alpha=1.5", "<= 1"),
    ("baseline-epochs-0", "baseline", ["-p", "epochs", "0"], "epochs", "epochs=0 ", ">= 1"),
    ("method3-unknown-name", "method3", ["-p", "tempreature", "4"], "temperature", "'tempreature'",
     "did you mean"),
    ("teachers-unknown-name", "teachers", ["-y", "teachers: [resnet51]"], "teachers", "'resnet51'", D),
    ("results-seeds-0", "results", ["-p", "seeds", "0"], "seeds", "seeds=0 ", ">= 1"),
    ("method2-gamma-nan", "method2", ["-p", "gamma", "nan"], "gamma", "gamma=nan", "finite number"),
    ("method3-teachers-as-a-string", "method3", ["-p", "teachers", R50], "teachers", f"teachers='{R50}'",
     "list of teacher names"),
    ("method3-force-yes", "method3", ["-p", "force", "yes"], "force", "force='yes'", "True or False"),
]


def _check_message(message, field, value, allowed):
    assert re.search(rf"\b{field}\b", message) and value in message and allowed in message, message


@pytest.mark.parametrize("notebook, args, field, value, allowed", [c[1:] for c in PAPERMILL_CASES],
                         ids=[c[0] for c in PAPERMILL_CASES])
def test_bad_notebook_parameter_stops_the_config_cell(notebook, args, field, value, allowed, isolated_homes):
    """Every case in this process: the notebook's parameters cell, the parameters papermill injects (as its command
    line converts them) and its first code cell, executed as the kernel executes them."""
    from cakd.book.notebook import NotebookStop

    code = [c.source for c in nbformat.read(paths.NOTEBOOKS / f"{notebook}.ipynb", as_version=4).cells
            if c.cell_type == "code"]
    namespace: dict = {}
    exec(code[0], namespace)                                           # the notebook's own cells
    namespace.update(papermill_cli_parameters("-p", "profile", "smoke", *args))
    with pytest.raises((NotebookStop, ValueError)) as error:
        exec(code[1], namespace)
    _check_message(str(error.value), field, value, allowed)
    assert written(isolated_homes) == []          # no run, no teacher, no cache, no data


# A kernel for one case of each kind of page (a run notebook, the teachers page, the results page)
KERNEL_CASES = ("method3-unknown-name", "teachers-unknown-name", "results-seeds-0")


@pytest.mark.notebook
@pytest.mark.parametrize("notebook, args, field, value, allowed",
                         [c[1:] for c in PAPERMILL_CASES if c[0] in KERNEL_CASES], ids=KERNEL_CASES)
def test_bad_notebook_parameter_stops_the_config_cell_before_any_work(notebook, args, field, value, allowed,
                                                                        isolated_homes, tmp_path):
    output, cwd = tmp_path / "out.ipynb", tmp_path / "cwd"
    cwd.mkdir()
    parameters = papermill_cli_parameters("-p", "profile", "smoke", *args)
    with pytest.raises(papermill.PapermillExecutionError) as error:
        execute(paths.NOTEBOOKS / f"{notebook}.ipynb", output, parameters, cwd)
    e = error.value
    assert e.ename in ("NotebookStop", "ValueError"), f"{e.ename}: {e.evalue}"
    _check_message(e.evalue, field, value, allowed)

    # the failing cell is the first code cell after papermill's injected parameters, and nothing ran after it
    cells = [c for c in nbformat.read(output, as_version=4).cells   # less the error banners papermill adds
             if "papermill-error-cell-tag" not in c.metadata.get("tags", [])]
    injected = next(i for i, c in enumerate(cells) if "injected-parameters" in c.metadata.get("tags", []))
    assert "parameters" in cells[injected - 1].metadata.get("tags", [])
    config_cell = next(i for i in range(injected + 1, len(cells)) if cells[i].cell_type == "code")
    assert e.cell_index == config_cell and e.exec_count == 3   # parameters, injected parameters, this cell
    assert all(c.execution_count is None for c in cells[config_cell + 1:] if c.cell_type == "code")

    assert written(isolated_homes) == []          # no run, no teacher, no cache, no data
    assert list(cwd.iterdir()) == []


@pytest.mark.notebook
def test_papermill_kernels_see_the_test_homes(isolated_homes, tmp_path):
    # the notebook kernel inherits os.environ, so the checks above look at the homes the notebooks would use
    execute(Path(__file__).parent / "notebooks" / "homes.ipynb", tmp_path / "out.ipynb", {}, tmp_path)
    outputs = nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[-1].outputs
    seen = json.loads(next(o["text"] for o in outputs if o.get("name") == "stdout"))
    assert seen == {paths.RESULTS_ENV: str(isolated_homes["results"]), paths.CACHE_ENV: str(isolated_homes["cache"]),
                    paths.DATA_ENV: str(isolated_homes["data"])}


def test_papermill_cli_converts_nan_to_a_float_and_yaml_keeps_it_a_string():
    # the two ways `gamma nan` reaches a notebook: both are refused with the field's name (see below)
    assert math.isnan(papermill_cli_parameters("-p", "gamma", "nan")["gamma"])
    assert papermill_cli_parameters("-y", "gamma: nan") == {"gamma": "nan"}
    assert papermill_cli_parameters("-p", "teachers", R50) == {"teachers": R50}


# ----------------------------------------------------------------------------- odd types papermill can pass

M2 = dict(method="alpha_guided", teachers=[D, R50])
ODD_PARAMETERS = [   # (id, profile_config keyword arguments, field): a ValueError, never a TypeError
    ("gamma-nan-string", dict(M2, gamma="nan"), "gamma"),                       # -y 'gamma: nan'
    ("teachers-int", dict(M2, teachers=5), "teachers"),                         # -p teachers 5
    ("teachers-nested-list", dict(M2, teachers=[[R50], D]), "teachers"),
    ("teachers-dict", dict(M2, teachers={R50: 1}), "teachers"),
    ("profile-list", dict(profile=["smoke"]), "profile"),                        # -y 'profile: [smoke]'
    ("profile-none", dict(profile=None), "profile"),
    ("temperature-string", dict(M2, temperature="4"), "temperature"),           # -r temperature 4
    ("use-ce-string", dict(method="adaptive_alpha", teachers=[D, R50], use_ce="False"), "use_ce"),
]


@pytest.mark.parametrize("kwargs, field", [c[1:] for c in ODD_PARAMETERS], ids=[c[0] for c in ODD_PARAMETERS])
def test_odd_parameter_types_raise_value_error_naming_the_field(kwargs, field):
    kwargs = dict(kwargs)
    with pytest.raises(ValueError) as error:
        profile_config(kwargs.pop("profile", "smoke"), **kwargs)
    assert re.search(rf"\b{field}\b", str(error.value)), str(error.value)


def _teachers_page(teachers, **overrides):
    """The teachers page's namespace after papermill: its parameters at their defaults, then the injected ones."""
    return {**default_parameters("teachers"), "profile": "smoke", "teachers": teachers, **overrides}


@pytest.mark.parametrize("bad", [5, [[R50]], ["resnet51"], ["resnet50"]],
                         ids=["int", "nested-list", "unknown", "old-name"])
def test_teachers_page_parameter_is_checked_with_its_name(bad):
    from cakd.book.notebook import NotebookStop

    with pytest.raises(NotebookStop, match=rf"teachers=.*{D}"):
        teachers_config(_teachers_page(bad))


def test_teachers_given_as_a_string_says_how_to_give_a_list():
    from cakd.book.notebook import NotebookStop

    with pytest.raises(NotebookStop, match=rf"list of teacher names.*-y 'teachers: \[{R50}\]'"):
        teachers_config(_teachers_page(R50))


# ----------------------------------------------------------------------------- CLI

def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cakd", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=120)


# (id, arguments, field, the bad value as the message shows it); {tmp} is the test's tmp_path
CLI_CASES = [
    ("config-unknown-row", ["config", "nope"], "row", "'nope'"),
    ("config-profile-mars", ["config", "baseline", "--profile", "mars"], "profile", "'mars'"),
    ("config-set-lr-0", ["config", "baseline", "--set", "lr=0"], "lr", "lr=0"),
    ("config-set-without-value", ["config", "baseline", "--set", "lr"], "set", "'lr'"),
    ("config-set-unknown-option", ["config", "baseline", "--set", "tempreature=4"], "temperature", "'tempreature'"),
    ("reproduce-profile-mars", ["reproduce", "--profile", "mars"], "profile", "'mars'"),
    ("reproduce-unknown-row", ["reproduce", "--rows", "baseline", "nope"], "row", "'nope'"),
    ("reproduce-seeds-0", ["reproduce", "--seeds", "0"], "seeds", "seeds=0"),
    ("bench-profile-mars", ["bench", "--profile", "mars"], "profile", "'mars'"),
    ("bench-repeats-0", ["bench", "--repeats", "0"], "repeats", "repeats=0"),
    ("bench-out-is-a-folder", ["bench", "--out", "{tmp}"], "out", "{tmp}"),
    ("bench-cuda-without-a-gpu", ["bench", "--device", "cuda"], "device", "'cuda'"),
]


def _check_one_error_line(code, err, out, command, field, value):
    assert code == 2, err[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"cakd {command}: error: ")
    assert re.search(rf"\b{field}\b", lines[0]) and value in lines[0], lines[0]
    assert out == ""                                            # nothing started, not even a log line


# in this process (cakd.__main__.main); the interpreter's own start is the end-to-end case below
@pytest.mark.parametrize("args, field, value", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_bad_cli_argument_is_one_line_on_stderr_before_any_work(args, field, value, isolated_homes, tmp_path,
                                                                capsys, monkeypatch):
    from cakd.__main__ import main

    pages_before = sorted(paths.BOOK_RUNS.glob("*")) if paths.BOOK_RUNS.exists() else None
    args, value = [a.format(tmp=tmp_path) for a in args], value.format(tmp=tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)   # no GPU for any case
    code = main(args)
    out = capsys.readouterr()
    _check_one_error_line(code, out.err, out.out, args[0], field, value)
    assert written(isolated_homes) == [] and list(tmp_path.iterdir()) == []
    assert (sorted(paths.BOOK_RUNS.glob("*")) if paths.BOOK_RUNS.exists() else None) == pages_before


@pytest.mark.slow   # an interpreter start (torch import)
def test_bad_cli_argument_from_the_shell_is_one_line_on_stderr(isolated_homes, tmp_path):
    out = run_cli("config", "nope", cwd=tmp_path)
    _check_one_error_line(out.returncode, out.stderr, out.stdout, "config", "row", "'nope'")
    assert written(isolated_homes) == [] and list(tmp_path.iterdir()) == []


ARGPARSE_CASES = [   # argparse's own errors: usage, then one `error:` line naming the option
    ("bench-device-tpu", ["bench", "--device", "tpu"], "--device", "'tpu'"),
    ("reproduce-seeds-two", ["reproduce", "--seeds", "two"], "--seeds", "'two'"),
]


@pytest.mark.parametrize("args, option, value", [c[1:] for c in ARGPARSE_CASES], ids=[c[0] for c in ARGPARSE_CASES])
def test_bad_cli_argument_type_is_argparse_usage_and_one_error_line(args, option, value, isolated_homes, capsys):
    from cakd.__main__ import main

    with pytest.raises(SystemExit) as exited:
        main(args)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert lines[0].startswith("usage: python -m cakd") and all(line.startswith(" ") for line in lines[1:-1])
    assert lines[-1].startswith(f"python -m cakd {args[0]}: error: argument {option}") and value in lines[-1]
    assert written(isolated_homes) == []


# ----------------------------------------------------------------------------- Python: before any work

@pytest.fixture
def no_work(monkeypatch):
    """Data loading and teacher training fail the test if they are reached."""
    for module, name in ((runs, "load_splits"), (teachers, "load_splits"), (runs, "teacher_logits")):
        monkeypatch.setattr(module, name, lambda *a, name=name, **k: pytest.fail(f"{name} reached: checked too late"))


def kd_config(**overrides) -> RunConfig:
    return smoke_config(method="kd", teachers=(R50,), **overrides)


def test_cuda_device_without_cuda_fails_before_data_or_teachers(isolated_homes, no_work, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"device='cuda'.*'auto' or 'cpu'"):
        runs.load_or_train(kd_config(device="cuda"))
    assert written(isolated_homes) == []


def test_force_with_a_bad_device_keeps_the_finished_run(isolated_homes, no_work, monkeypatch):
    # force deletes a run to train it again: not before the device (and the data) are known to work
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = kd_config(device="cuda")
    folder = runs.run_folder(config)
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text("{}")
    with pytest.raises(ValueError, match="device"):
        runs.load_or_train(config, force=True)
    assert (folder / "metrics.json").exists()


def test_teacher_force_with_a_bad_device_keeps_the_teacher(isolated_homes, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(teachers, "load_splits", lambda *a, **k: pytest.fail("data loaded before the device check"))
    tc = TeacherTraining.of(kd_config(), R50)
    folder = teachers.teacher_folder(tc)
    folder.mkdir(parents=True)
    (folder / "teacher.json").write_text("{}")
    with pytest.raises(ValueError, match="device"):
        teachers.load_or_train_teacher(tc, "cuda", force=True)
    assert (folder / "teacher.json").exists()


def test_imagefolder_data_dir_that_does_not_exist_is_named_before_any_work(isolated_homes, tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "teacher_logits", lambda *a, **k: pytest.fail("teachers reached before the data"))
    missing = tmp_path / "no-such-folder"
    with pytest.raises(ValueError, match=rf"data_dir={re.escape(repr(str(missing)))} is not a folder.*train/"):
        runs.load_or_train(kd_config(dataset="imagefolder", data_dir=str(missing)))
    assert written(isolated_homes) == [] and not missing.exists()


def test_cifar100_offline_with_an_empty_data_dir_names_both_fixes_before_any_work(isolated_homes, tmp_path,
                                                                                  no_cifar_download, monkeypatch):
    monkeypatch.setattr(runs, "teacher_logits", lambda *a, **k: pytest.fail("teachers reached before the data"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataUnavailableError) as error:
        runs.load_or_train(kd_config(dataset="cifar100", data_dir=str(empty)))
    message = str(error.value)
    assert no_cifar_download
    assert "internet" in message and "cifar-100-python" in message and str(empty) in message   # both fixes
    assert written(isolated_homes) == []


@pytest.mark.parametrize("bad", ["yes", "False", 1, None])
def test_force_must_be_a_bool(bad, isolated_homes, no_work):
    # papermill's `-p force yes` is the string 'yes': it must not count as True (and retrain)
    with pytest.raises(ValueError, match=rf"force={re.escape(repr(bad))} must be True or False"):
        runs.load_or_train(kd_config(), force=bad)
    assert written(isolated_homes) == []


@pytest.mark.parametrize("bad", ["yes", "False", 1, None])
def test_teacher_force_must_be_a_bool(bad, isolated_homes, no_work):
    # `force='False'` is truthy: it would delete a trained teacher and train it again
    with pytest.raises(ValueError, match=rf"force={re.escape(repr(bad))} must be True or False"):
        teachers.load_or_train_teacher(TeacherTraining.of(kd_config(), R50), force=bad)
    assert written(isolated_homes) == []


REPRODUCE_BAD = [   # (id, reproduce keyword arguments, the field the message names)
    ("profile", dict(profile="mars"), "profile"),
    ("rows-a-string", dict(rows="baseline"), "rows"),
    ("rows-unknown", dict(rows=["baseline", "nope"]), "row"),
    ("seeds-zero", dict(seeds=0), "seeds"),
    ("seeds-bool", dict(seeds=True), "seeds"),
    ("seeds-float", dict(seeds=2.0), "seeds"),
    ("force-string", dict(force="yes"), "force"),
    ("build-string", dict(build="no"), "build"),
    ("workers-zero", dict(workers=0), "workers"),
    ("runs-per-gpu-float", dict(runs_per_gpu=0.5), "runs_per_gpu"),
    ("address-garbage", dict(address="not an address"), "address"),
    ("address-and-workers", dict(address="auto", workers=2), "workers"),
]


@pytest.mark.parametrize("kwargs, field", [c[1:] for c in REPRODUCE_BAD], ids=[c[0] for c in REPRODUCE_BAD])
def test_reproduce_checks_every_argument_before_any_work(kwargs, field, isolated_homes, monkeypatch):
    from cakd.orchestration import reproduce

    monkeypatch.setattr(reproduce, "ray_session", lambda *a, **k: pytest.fail("work started before validation"))
    logged = []
    with pytest.raises(ValueError) as error:
        reproduce.reproduce(**kwargs, log=logged.append)
    assert re.search(rf"\b{field}\b", str(error.value)), str(error.value)
    assert logged == [] and written(isolated_homes) == []


@pytest.mark.parametrize("name", ["results", "folder.json", "bench.md"])
def test_bench_out_must_be_a_json_file(name, tmp_path, monkeypatch):
    from cakd.orchestration import bench

    monkeypatch.setattr(bench, "resolve_device", lambda *a: pytest.fail("work started before validation"))
    (tmp_path / "results").mkdir()
    (tmp_path / "folder.json").mkdir()
    with pytest.raises(ValueError, match=r"out=.*\.json"):
        bench.run_benchmark("cpu", "smoke", out=tmp_path / name)


# ----------------------------------------------------------------------------- names that become paths

ESCAPES = ["../x", "../../../victim", "/etc/passwd", "a/../../b"]


@pytest.mark.parametrize("name", ESCAPES)
def test_run_folder_and_checkpoint_stay_in_their_homes(name):
    config = SimpleNamespace(profile="smoke", run_id=name)   # a RunConfig cannot make such an id (method is checked)
    for where in (runs.run_folder, runs.checkpoint_path):
        with pytest.raises(ValueError, match=rf"run_id='{re.escape(name)}(\.pt)?' escapes"):
            where(config)


@pytest.mark.parametrize("name", ESCAPES)
def test_teacher_folder_stays_in_the_cache_home(name):
    tc = dataclasses.replace(TeacherTraining.of(kd_config(), R50), name=name)
    with pytest.raises(ValueError, match=r"teacher=.* escapes"):
        teachers.teacher_folder(tc)


@pytest.mark.parametrize("name", ESCAPES)
def test_teacher_folder_refuses_an_escaping_profile(name):
    # TeacherTraining is a plain dataclass: its profile is a path part too (force=True deletes that folder)
    tc = dataclasses.replace(TeacherTraining.of(kd_config(), R50), profile=name)
    with pytest.raises(ValueError, match=r"escapes"):
        teachers.teacher_folder(tc)


def test_forced_training_of_an_escaping_teacher_deletes_nothing_outside(isolated_homes):
    tc = dataclasses.replace(TeacherTraining.of(kd_config(), R50), name="../../../victim")
    victim = Path(os.path.normpath(paths.teachers_dir("smoke") / tc.run_id))   # where `/` would have led
    assert paths.cache_home() not in victim.parents
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    try:
        with pytest.raises(ValueError, match="teacher="):
            teachers.load_or_train_teacher(tc, force=True)
        assert (victim / "keep.txt").read_text() == "mine"
    finally:
        (victim / "keep.txt").unlink()
        victim.rmdir()


@pytest.mark.parametrize("name", ESCAPES)
def test_book_pages_stay_in_book_runs(name):
    pages_before = sorted(paths.BOOK_RUNS.glob("*")) if paths.BOOK_RUNS.exists() else None
    with pytest.raises(ValueError, match=rf"row={re.escape(repr(name + '.ipynb'))} escapes"):
        Page(name, "baseline", {}, "smoke").path
    assert (sorted(paths.BOOK_RUNS.glob("*")) if paths.BOOK_RUNS.exists() else None) == pages_before


def test_valid_names_keep_their_folders(isolated_homes):
    # `inside` changes no path for the names cakd makes: the registry and the caches are found where they were
    config = kd_config()
    tc = TeacherTraining.of(config, R50)
    assert registry.run_folder(config) == isolated_homes["results"].resolve() / "smoke" / "runs" / config.run_id
    assert runs.checkpoint_path(config) == isolated_homes["cache"].resolve() / "smoke" / "checkpoints" / \
        f"{config.run_id}.pt"
    assert teachers.teacher_folder(tc) == isolated_homes["cache"].resolve() / "smoke" / "teachers" / tc.run_id


def test_valid_book_page_names_keep_their_folder():
    assert Page("baseline", "baseline", {}, "smoke").path == paths.BOOK_RUNS / "baseline.ipynb"
