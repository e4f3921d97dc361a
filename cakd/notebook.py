"""What the notebooks share: their papermill parameters, derived from RunConfig, and their first cell's checks.

Each method notebook exposes, as papermill parameters, every option its method reads (cakd.config.OPTIONS),
plus `profile`, `seed` and `force`. The parameters cell is generated from the config (`python -m cakd notebooks`
writes it, a test checks it): defaults are None, meaning the profile's value, so no default is typed twice.
The first code cell checks what papermill injected (unknown names are refused with the closest match) and the
profile's requirements (GPU, data, weights), and stops with one line that says what to do.
"""
from __future__ import annotations

from typing import Any

from .config import OPTIONS, PROFILES, RunConfig, check_flag, check_names, profile_config
from .losses import LOSSES

# notebook -> the method it trains (None: a page that trains no student)
NOTEBOOK_METHODS: dict[str, str | None] = {"baseline": "baseline", "single_teacher": "kd", "method1": "ca_wkd",
                                           "method2": "alpha_guided", "method3": "adaptive_alpha",
                                           "teachers": None, "results": None}
TEACHER_PAGE_OPTIONS = ("dataset", "data_dir", "synthetic_size", "model_scale", "precision", "device")
# Parameters of the pages that train no student (their own few, documented here once).
PAGE_PARAMETERS: dict[str, dict[str, tuple[str, Any, str]]] = {
    "teachers": {"profile": ("str", "paper", "paper | consistent | smoke"),
                 "teachers": ("list", None, "teacher names; None: every teacher the manifest uses"),
                 # the options that decide a teacher trained here (smoke), as the method notebooks have them
                 **{name: (o.type_name if o.optional else f"Optional[{o.type_name}]", None, o.doc)
                    for name, o in OPTIONS.items()
                    if o.scope == "teacher_training" or name in TEACHER_PAGE_OPTIONS},
                 "force": ("bool", False, "True: train the smoke teachers again")},
    "results": {"profile": ("str", "paper", "whose runs fill the page: paper (the authors' recipe), consistent "
                                           "(ours), smoke"),
                "seeds": ("Optional[int]", None, "None: every seed in the registry; N: seeds 0..N-1 only")},
}
_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


class NotebookStop(Exception):
    """A notebook cannot go on: IPython shows just this message, no traceback (papermill then ends with it)."""

    def _render_traceback_(self) -> list[str]:
        return [f"cakd: {self}"]


def parameter_names(notebook: str) -> list[str]:
    """The papermill parameters of `notebook`, in the order of its parameters cell."""
    method = NOTEBOOK_METHODS[notebook]
    if method is None:
        return list(PAGE_PARAMETERS[notebook])
    probe = profile_config("paper", method=method, teachers=_default_teachers(method))
    options = [name for name in OPTIONS if name not in ("profile", "method", "seed") and
               (probe.reads(name) or OPTIONS[name].scope in ("speed", "teaching", "teacher_training"))
               and (name != "teachers" or LOSSES[method].teachers != "none")]
    return ["profile", "seed", *options, "force"]


def parameters_source(notebook: str) -> str:
    """The source of `notebook`'s parameters cell: one typed, commented line per parameter."""
    method = NOTEBOOK_METHODS[notebook]
    if method is None:   # quoted annotations: IPython evaluates them, papermill reads them as text
        return "\n".join(f"{name}: {kind if kind in ('str', 'int', 'bool', 'list') else repr(kind)} = {default!r}  "
                         f"# {doc}" for name, (kind, default, doc) in PAGE_PARAMETERS[notebook].items())
    lines = ['profile: str = "paper"  # paper: the authors\' recipe (GPU); consistent: ours (GPU); smoke: offline '
             'CPU demo', "seed: int = 0  # " + OPTIONS["seed"].doc]
    for name in parameter_names(notebook)[2:-1]:
        option = OPTIONS[name]
        default = _default_teachers(method) if name == "teachers" else None
        # quoted: IPython evaluates annotations, and papermill --help-notebook reads them as text
        kind = "list" if name == "teachers" else f'"Optional[{option.type_name.removeprefix("Optional[").rstrip("]")}]"'
        lines.append(f"{name}: {kind} = {default!r}  # {option.doc}{_profile_values(name)}")
    lines.append("force: bool = False  # True: train again even if the run registry holds this exact config")
    return "\n".join(lines)


def run_config(notebook: str, namespace: dict[str, Any]) -> RunConfig:
    """The RunConfig of a method notebook from its parameters (`globals()` after papermill's injection).

    Refuses unknown names ("did you mean 'teachers'?") and bad values, then checks that the profile can run
    here (GPU, data, teacher weights): any failure stops the notebook with one line, before any work.
    """
    params = parameters(notebook, namespace)
    try:
        check_flag("force", params.pop("force"))
        config = profile_config(params.pop("profile"), method=NOTEBOOK_METHODS[notebook], **params)
        from .runs import preflight   # data and weights: downloaded when online, a clear error offline

        preflight(config, check_inputs=True)
    except (ValueError, RuntimeError) as e:
        raise NotebookStop(str(e)) from None
    return config


def parameters(notebook: str, namespace: dict[str, Any]) -> dict[str, Any]:
    """The notebook's parameters from its namespace; an injected name it does not know stops it."""
    given = {k: v for k, v in namespace.items() if not k.startswith("_") and k not in _IPYTHON_NAMES
             and not callable(v) and type(v).__name__ != "module"}
    try:
        check_names(given, parameter_names(notebook), f"parameter of notebooks/{notebook}.ipynb")
    except ValueError as e:
        raise NotebookStop(str(e)) from None
    return given


def teachers_config(namespace: dict[str, Any]) -> tuple[RunConfig, list[str]]:
    """The teachers page's profile config and teacher names (None: every teacher the manifest uses); checks
    that the published weights can be had (paper, consistent) before any work."""
    params = parameters("teachers", namespace)
    from .manifest import all_rows
    from .models import public_weights_path

    try:
        check_flag("force", params["force"])
        options = {k: v for k, v in params.items() if k not in ("profile", "teachers", "force")}
        config = profile_config(params["profile"], **options)
        names = params["teachers"]
        if names is None:
            names = list(dict.fromkeys(t for row in all_rows() for t in row.params.get("teachers", ())))
        profile_config(params["profile"], method="ca_wkd", teachers=names, **options)   # validates the names
        if config.teacher_weights == "public":
            for name in names:
                public_weights_path(name)
    except (ValueError, RuntimeError) as e:
        raise NotebookStop(str(e)) from None
    return config, list(names)


def load_teachers(config: RunConfig, names: list[str], force: bool = False) -> list[Any]:
    """Every teacher of `names` (published weights loaded, or trained here once)."""
    from .data import load_splits
    from .teachers import load_teacher

    splits = load_splits(config)
    return [load_teacher(config, name, splits, force=force) for name in names]


def teacher_accuracy(config: RunConfig, teachers: list[Any]) -> dict[str, float]:
    """Validation and test accuracy (%) of each loaded teacher on the clean images, rounded; also written to
    the results home (results/<profile>/teachers.json) for the book and the golden tests."""
    from . import files, paths
    from .data import load_splits
    from .runs import preflight
    from .teaching import teacher_accuracy as accuracy

    device, splits = preflight(config), load_splits(config)
    values = {f"{t.name}.{k}": round(v, 2) for t in teachers
              for k, v in accuracy(t.model.to(device), splits, device, config.precision).items()}
    files.write_json(paths.results_home() / config.profile / "teachers.json", values)
    return values


def method3_ties(config: RunConfig) -> dict[str, dict[str, float]]:
    """For each teacher set of a Method 3 row: how often its choice of teacher depends on the teachers' order
    (cakd.teaching.method3_ties); also written to results/<profile>/ties.json for the reproduction notes."""
    import dataclasses
    import platform

    import torch

    from . import files, paths
    from .data import load_splits
    from .manifest import all_rows
    from .runs import preflight
    from .teaching import method3_ties as ties

    device, splits, out = preflight(config), load_splits(config), {}
    for row in all_rows():
        names = tuple(row.params.get("teachers", ()))
        label = ", ".join(names)
        if row.params["method"] == "adaptive_alpha" and label not in out:
            out[label] = ties(dataclasses.replace(config, method="adaptive_alpha", teachers=names), splits, device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"a CPU ({platform.machine()})"
    files.write_json(paths.results_home() / config.profile / "ties.json", {"device": where, "sets": out})
    return out


def write_parameters(root: Any = None) -> list[str]:
    """Rewrite every notebook's parameters cell from the config (`python -m cakd notebooks`); returns the
    notebooks it changed."""
    import nbformat

    from . import paths

    changed = []
    for notebook in NOTEBOOK_METHODS:
        path = (root or paths.NOTEBOOKS) / f"{notebook}.ipynb"
        nb = nbformat.read(path, as_version=4)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        if cell.source != parameters_source(notebook):
            cell.source = parameters_source(notebook)
            nbformat.write(nb, path)
            changed.append(notebook)
    return changed


def _default_teachers(method: str) -> list[str]:
    """A method notebook's default teachers: those of its first manifest row (the report's choice); for a
    method no row uses, as many registered teachers as its loss takes."""
    from .manifest import all_rows
    from .models import TEACHERS

    wanted = {"none": 0, "one": 1, "several": 2}[LOSSES[method].teachers]
    return next((list(row.params["teachers"]) for row in all_rows()
                 if row.params["method"] == method and "teachers" in row.params), list(TEACHERS)[:wanted])


def _profile_values(name: str) -> str:
    """' (paper 0.01, smoke 0.003)' where the profiles differ on `name`, else ''."""
    values = {p: getattr(profile_config(p, teachers=[], method="baseline"), name) for p in PROFILES}
    if len({repr(v) for v in values.values()}) == 1:
        return f" (default {next(iter(values.values()))!r})"
    return " (" + ", ".join(f"{p} {v!r}" for p, v in values.items()) + ")"
