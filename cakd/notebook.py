"""What the notebooks share, written once: the run notebooks themselves, their papermill parameters, their first cell's
checks, and the helpers the teachers page calls.

The five run notebooks (one per method) are each its own title and introduction followed by the cells of
notebooks/run_template.ipynb (`python -m cakd notebooks` writes them, a test keeps them in step): each exposes, as
papermill parameters, every option its method reads (cakd.config.OPTIONS), plus `profile`, `seed` and `force`, with None
meaning the profile's value, so no default is typed twice. Its first code cell checks what papermill injected (unknown
names are refused with the closest match) and what the profile needs (GPU, data, weights: not for a run the registry
already holds), and stops with one line that says what to do."""
from __future__ import annotations

import dataclasses
import platform
import tempfile
from pathlib import Path
from typing import Any

import nbformat

from . import files, paths
from .config import METHODS, OPTIONS, PROFILES, TEACHER_LABELS, RunConfig, check_flag, check_names, profile_config
from .manifest import all_rows
from .registry import RunResult, find_run
from .report import render_toc
from .tables import HtmlTable, render_table

# run notebook -> (the method it trains, an example parameter for its help); its title and introduction are its own
# first two cells, and the cells after them come from notebooks/run_template.ipynb (`write_notebooks`)
RUN_NOTEBOOKS: dict[str, tuple[str, str]] = {
    "baseline": ("baseline", "-p seed 1"), "single_teacher": ("kd", "-p alpha 0.75"),
    "method1": ("ca_wkd", "-p weighting sample"), "method2": ("alpha_guided", "-p gamma 2"),
    "method3": ("adaptive_alpha", "-p temperature 16")}
TEMPLATE = "run_template"
TEACHER_PAGE_OPTIONS = ("dataset", "data_dir", "synthetic_size", "synthetic_classes", "model_scale", "precision",
                        "device")
# Parameters of the pages that train no student (their own few, documented here once).
PAGE_PARAMETERS: dict[str, dict[str, tuple[str, Any, str]]] = {
    "teachers": {"profile": ("str", "paper", "paper | consistent | smoke"),
                 "teachers": ("list", None, "teacher names; None: every teacher the manifest uses"),
                 # the options that decide a teacher trained here (smoke), as the run notebooks have them
                 **{name: (o.type_name if o.optional else f"Optional[{o.type_name}]", None, o.doc)
                    for name, o in OPTIONS.items()
                    if o.scope == "teacher_training" or name in TEACHER_PAGE_OPTIONS},
                 "force": ("bool", False, "True: train the smoke teachers again")},
    "results": {"profile": ("str", "paper", "whose runs fill the page: paper (the authors' recipe), consistent "
                                           "(ours), smoke"),
                "seeds": ("Optional[int]", None, "None: every seed in the registry; N: seeds 0..N-1 only")},
}
NOTEBOOKS = (*RUN_NOTEBOOKS, *PAGE_PARAMETERS)
_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


class NotebookStop(Exception):
    """A notebook cannot go on: IPython shows just this message, no traceback (papermill then ends with it)."""

    def _render_traceback_(self) -> list[str]:
        return [f"cakd: {self}"]


# ----------------------------------------------------------------------------- parameters

def parameter_names(notebook: str) -> list[str]:
    """The papermill parameters of `notebook`, in the order of its parameters cell."""
    if notebook in PAGE_PARAMETERS:
        return list(PAGE_PARAMETERS[notebook])
    method = RUN_NOTEBOOKS[notebook][0]
    probe = profile_config("paper", method=method, teachers=_default_teachers(method))
    options = [name for name in OPTIONS if name not in ("profile", "method", "seed") and
               (probe.reads(name) or OPTIONS[name].scope in ("speed", "teaching", "teacher_training"))
               and (name != "teachers" or METHODS[method].teachers != "none")]
    return ["profile", "seed", *options, "force"]


def parameters_source(notebook: str) -> str:
    """The source of `notebook`'s parameters cell: one typed, commented line per parameter."""
    # quoted annotations (here and below): IPython evaluates them, papermill --help-notebook reads them as text
    if notebook in PAGE_PARAMETERS:
        return "\n".join(f"{name}: {kind if kind in ('str', 'int', 'bool', 'list') else repr(kind)} = {default!r}  "
                         f"# {doc}" for name, (kind, default, doc) in PAGE_PARAMETERS[notebook].items())
    method = RUN_NOTEBOOKS[notebook][0]
    lines = ['profile: str = "paper"  # paper: the authors\' recipe (GPU); consistent: ours (GPU); smoke: offline '
             'CPU demo', "seed: int = 0  # " + OPTIONS["seed"].doc]
    for name in parameter_names(notebook)[2:-1]:
        option = OPTIONS[name]
        default = _default_teachers(method) if name == "teachers" else None
        kind = "list" if name == "teachers" else f'"Optional[{option.type_name.removeprefix("Optional[").rstrip("]")}]"'
        lines.append(f"{name}: {kind} = {default!r}  # {option.doc}{_profile_values(name)}")
    lines.append("force: bool = False  # True: train again even if the run registry holds this exact config")
    return "\n".join(lines)


def parameters(notebook: str, namespace: dict[str, Any]) -> dict[str, Any]:
    """The notebook's parameters from its namespace; an injected name it does not know stops it."""
    given = {k: v for k, v in namespace.items() if not k.startswith("_") and k not in _IPYTHON_NAMES
             and not callable(v) and type(v).__name__ != "module"}
    try:
        check_names(given, parameter_names(notebook), f"parameter of notebooks/{notebook}.ipynb")
    except ValueError as e:
        raise NotebookStop(str(e)) from None
    return given


def run_config(notebook: str, namespace: dict[str, Any]) -> RunConfig:
    """The RunConfig of a run notebook from its parameters (`globals()` after papermill's injection). Refuses unknown
    names ("did you mean 'teachers'?") and bad values, then, unless the registry holds the run, checks that the profile
    can run here (GPU, data, teacher weights): a failure stops the notebook with one line, before any work."""
    params = parameters(notebook, namespace)
    try:
        force = check_flag("force", params.pop("force"))
        config = profile_config(params.pop("profile"), method=RUN_NOTEBOOKS[notebook][0], **params)
        if force or find_run(config) is None:
            from .runs import preflight   # data and weights: downloaded when online, a clear error offline

            preflight(config, check_inputs=True)
    except (ValueError, RuntimeError) as e:
        raise NotebookStop(str(e)) from None
    return config


def printed_metrics(result: RunResult) -> dict[str, float]:
    """What a run page prints of its training, and the golden tests compare within tolerance
    (cakd.goldens): every epoch's training loss and train, validation and test accuracy; the report's number
    (test accuracy at the best validation epoch); the epochs run and the teachers' forward passes."""
    values = {name: value for record in result.history for name, value in printed_epoch(record).items()}
    m = result.metrics
    return {**values, "test_acc": m["test_acc"], "best_val_acc": m["best_val_acc"], "epochs": int(m["epochs"]),
            "teacher_forward_passes": int(m["teacher_forward_passes"])}


def printed_epoch(record: dict[str, float]) -> dict[str, float]:
    """One epoch's record (history row) as a run page prints it: `epoch<N>.<key>` to 10 significant digits."""
    return {f"epoch{int(record['epoch'])}.{key}": float(f"{record[key]:.10g}")
            for key in ("loss", "train_acc", "val_acc", "test_acc")}


def execute(notebook: str | nbformat.NotebookNode, parameters: dict[str, Any], output: Path | None = None
            ) -> tuple[str | None, str | None]:
    """papermill a notebook (`notebooks/<name>.ipynb`, or one given whole) with `parameters` on the standard
    `python3` kernel; returns (the executed notebook as JSON, None) or, when it failed, (the notebook with its
    traceback, or None, and 'Error: first line'). The kernel talks over local IPC sockets, not TCP."""
    import papermill
    from traitlets.config import Config

    source = paths.NOTEBOOKS / f"{notebook}.ipynb" if isinstance(notebook, str) else notebook
    with tempfile.TemporaryDirectory(prefix="cakd-page-") as folder:   # notebooks find files through cakd.paths
        out = output or Path(folder) / "page.ipynb"
        error = None
        try:
            papermill.execute_notebook(source, str(out), parameters=parameters, cwd=folder, progress_bar=False,
                                       config=Config(KernelManager={"transport": "ipc"}))
        except papermill.PapermillExecutionError as e:     # the page keeps the traceback
            error = f"{e.ename}: {first_line(e.evalue or '')}"
        except Exception as e:  # noqa: BLE001 -- a kernel that died or did not start
            error = f"{type(e).__name__}: {first_line(e)}"
        return (out.read_text() if out.exists() else None), error


# ----------------------------------------------------------------------------- the run notebooks, generated

def run_notebook(notebook: str) -> nbformat.NotebookNode:
    """The whole of `notebooks/<notebook>.ipynb` (a run notebook): its own title and introduction (its first two
    cells, as committed), then the template's cells with its name, example and parameters filled in."""
    method, example = RUN_NOTEBOOKS[notebook]
    own = nbformat.read(paths.NOTEBOOKS / f"{notebook}.ipynb", as_version=4)
    cells = []
    for cell in nbformat.read(paths.NOTEBOOKS / f"{TEMPLATE}.ipynb", as_version=4).cells:
        tags = cell.metadata.get("tags", [])
        if "template" in tags or ("teachers" in tags and METHODS[method].teachers == "none"):
            continue
        source = cell.source.replace("{notebook}", notebook).replace("{example}", example)
        cells.append(nbformat.from_dict({**cell, "source": parameters_source(notebook) if "parameters" in tags
                                         else source}))
    return nbformat.v4.new_notebook(cells=own.cells[:2] + cells, metadata=own.metadata)


def write_notebooks(root: Path | None = None) -> list[str]:
    """Write what the book's sources derive from cakd (`python -m cakd notebooks`): every run notebook from the
    template, the parameters cell of the other pages, and `_toc.yml` from the manifest; returns what changed."""
    changed = []
    if (paths.ROOT / "_toc.yml").read_text() != render_toc():
        files.write_text(paths.ROOT / "_toc.yml", render_toc())
        changed.append("_toc.yml")
    for notebook in NOTEBOOKS:
        path = (root or paths.NOTEBOOKS) / f"{notebook}.ipynb"
        if notebook in RUN_NOTEBOOKS:
            nb, old = run_notebook(notebook), nbformat.read(path, as_version=4)
            same = [(c.cell_type, c.source, c.metadata) for c in old.cells] == \
                [(c.cell_type, c.source, c.metadata) for c in nb.cells]
        else:
            nb = nbformat.read(path, as_version=4)
            cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
            same, cell.source = cell.source == parameters_source(notebook), parameters_source(notebook)
        if not same:
            nbformat.write(nb, path)
            changed.append(notebook)
    return changed


# ----------------------------------------------------------------------------- the teachers page

def teachers_config(namespace: dict[str, Any]) -> tuple[RunConfig, list[str]]:
    """The teachers page's profile config and teacher names (None: every teacher the manifest uses); checks
    that the published weights can be had (paper, consistent) before any work."""
    params = parameters("teachers", namespace)
    try:
        check_flag("force", params["force"])
        options = {k: v for k, v in params.items() if k not in ("profile", "teachers", "force")}
        config = profile_config(params["profile"], **options)
        names = params["teachers"] if params["teachers"] is not None else list(
            dict.fromkeys(t for row in all_rows() for t in row.params.get("teachers", ())))
        profile_config(params["profile"], method="ca_wkd", teachers=names, **options)   # validates the names
        if config.teacher_weights == "public":
            from .models import public_weights_path

            for name in names:
                public_weights_path(name)
    except (ValueError, RuntimeError) as e:
        raise NotebookStop(str(e)) from None
    return config, list(names)


def teachers_table(config: RunConfig, names: list[str]) -> HtmlTable:
    """The teachers page's architectures: each teacher, its family, input pipeline and parameter count."""
    from .recipe import teacher_architectures

    return render_table(teacher_architectures(config, names).reset_index(), code_columns=["teacher"],
                        wide_columns=["input pipeline"], formats={"parameters": "{}"})


def load_teachers(config: RunConfig, names: list[str], force: bool = False) -> list[Any]:
    """Every teacher of `names` (published weights loaded, or trained here once)."""
    from .data import load_splits
    from .teachers import load_teacher

    splits = load_splits(config)
    return [load_teacher(config, name, splits, force=force) for name in names]


def teacher_histories(teachers: list[Any]) -> dict[str, list[dict[str, float]]]:
    """The training history of each teacher trained here, by name (none for published teachers)."""
    return {t.name: t.info["history"] for t in teachers if "history" in t.info}


def teacher_accuracy(config: RunConfig, teachers: list[Any]) -> dict[str, float]:
    """Validation and test accuracy (%) of each loaded teacher on the clean images, rounded; also written to
    the results home (results/<profile>/teachers.json) for the book and the golden tests."""
    from .data import load_splits
    from .runs import preflight
    from .teaching import teacher_accuracy as accuracy

    device, splits = preflight(config), load_splits(config)
    values = {f"{t.name}.{k}": round(v, 2) for t in teachers
              for k, v in accuracy(t.model.to(device), splits, device, config.precision).items()}
    files.write_json(paths.results_home() / config.profile / "teachers.json", values)
    return values


def method3_ties(config: RunConfig, teachers: list[str]) -> dict[str, dict[str, float]]:
    """For each teacher set of a Method 3 row made of `teachers`: how often its choice of teacher depends on the
    teachers' order (cakd.teaching.method3_ties); also written to results/<profile>/ties.json for the reproduction
    notes."""
    import torch

    from .data import load_splits
    from .runs import preflight
    from .teaching import method3_ties as ties

    device, splits, out = preflight(config), load_splits(config), {}
    for row in all_rows():
        names = tuple(row.params.get("teachers", ()))
        label = ", ".join(names)
        if row.params["method"] == "adaptive_alpha" and label not in out and set(names) <= set(teachers):
            out[label] = ties(dataclasses.replace(config, method="adaptive_alpha", teachers=names), splits, device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"a CPU ({platform.machine()})"
    files.write_json(paths.results_home() / config.profile / "ties.json", {"device": where, "sets": out})
    return out


def first_line(e: Any) -> str:
    """The first line of an error's message (or of any text)."""
    return (str(e).strip().splitlines() or [""])[0]


def _default_teachers(method: str) -> list[str]:
    """A run notebook's default teachers: those of its first manifest row (the report's choice); for a
    method no row uses, as many registered teachers as its loss takes."""
    wanted = {"none": 0, "one": 1, "several": 2}[METHODS[method].teachers]
    return next((list(row.params["teachers"]) for row in all_rows()
                 if row.params["method"] == method and "teachers" in row.params), list(TEACHER_LABELS)[:wanted])


def _profile_values(name: str) -> str:
    """' (paper 0.01, smoke 0.003)' where the profiles differ on `name`, else ''."""
    values = {p: getattr(profile_config(p, teachers=[], method="baseline"), name) for p in PROFILES}
    if len({repr(v) for v in values.values()}) == 1:
        return f" (default {next(iter(values.values()))!r})"
    return " (" + ", ".join(f"{p} {v!r}" for p, v in values.items()) + ")"
