"""What the notebooks call, written once: the first cell's checks of papermill's parameters and of what the profile
needs (GPU, data, weights; not for a run the registry holds), which stop a notebook with one line that says what to do;
what a run page prints for the regression tests; the teachers page's measurements (done by the training stack)."""
from __future__ import annotations

import dataclasses
import functools
import platform
from typing import Any, Callable

from ..definitions import files, manifest, paths
from ..definitions.config import RunConfig, check_flag, check_names
from ..definitions.profiles import profile_config
from ..definitions.registry import RunResult, find_run
from ..reading.tables import HtmlTable, render_table
from .pages import RUN_NOTEBOOKS, TEACHERS_PAGE, parameter_names

_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


class NotebookStop(Exception):
    """A notebook cannot go on: IPython shows just this message, no traceback (papermill then ends with it)."""

    def _render_traceback_(self) -> list[str]:
        return [f"cakd: {self}"]


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
    """A run notebook's RunConfig from its `globals()` after papermill's injection. Unknown names, bad values and,
    unless the registry holds the run, what the profile lacks here (GPU, data, teacher weights) stop it in one line."""
    params = parameters(notebook, namespace)
    try:
        force = check_flag("force", params.pop("force"))
        config = profile_config(params.pop("profile"), method=RUN_NOTEBOOKS[notebook], **params)
        if force or find_run(config) is None:
            from ..training.runs import preflight   # data and weights: downloaded when online, a clear error offline

            preflight(config, check_inputs=True)
    except (ValueError, RuntimeError) as e:
        raise NotebookStop(str(e)) from None
    return config


def progress(config: RunConfig) -> Callable[[dict[str, float]], None]:
    """The training cell's progress: a line per epoch in the cell's output (papermill --log-output streams them)."""
    from ..training.progress import epoch_progress

    return epoch_progress(config.run_id, config.epochs)


def printed_metrics(result: RunResult) -> dict[str, float]:
    """What a run page prints of its training, compared within tolerance by the golden tests (tests/goldens.py): every
    epoch's printed_epoch, the report's number (test accuracy at the best validation epoch), epochs, teacher passes."""
    values = {name: value for record in result.history for name, value in printed_epoch(record).items()}
    m = result.metrics
    return {**values, "test_acc": m["test_acc"], "best_val_acc": m["best_val_acc"], "epochs": int(m["epochs"]),
            "teacher_forward_passes": int(m["teacher_forward_passes"])}


def printed_epoch(record: dict[str, float]) -> dict[str, float]:
    """One epoch's record (history row) as a run page prints it: `epoch<N>.<key>` to 10 significant digits."""
    return {f"epoch{int(record['epoch'])}.{key}": float(f"{record[key]:.10g}")
            for key in ("loss", "train_acc", "val_acc", "test_acc") if key in record}


# ----------------------------------------------------------------------------- the teachers page

def teachers_config(namespace: dict[str, Any]) -> tuple[RunConfig, list[str]]:
    """The teachers page's profile config and teacher names (None: every teacher the manifest uses); checks
    that the published weights can be had (paper, consistent) before any work."""
    params = parameters(TEACHERS_PAGE, namespace)
    try:
        check_flag("force", params["force"])
        options = {k: v for k, v in params.items() if k not in ("profile", "teachers", "force")}
        config = profile_config(params["profile"], **options)
        names = params["teachers"] if params["teachers"] is not None else manifest.teachers_used()
        k = len(names) if isinstance(names, (list, tuple)) else 2   # a bad value: RunConfig names it
        profile_config(params["profile"], method={0: "baseline", 1: "kd"}.get(k, "ca_wkd"), teachers=names,
                       **options)                                  # validates the names
        if config.teacher_weights == "public":
            from ..training.models import public_weights_path

            for name in names:
                public_weights_path(name)
    except (ValueError, RuntimeError) as e:
        raise NotebookStop(str(e)) from None
    return config, list(names)


def teachers_table(config: RunConfig, names: list[str]) -> HtmlTable:
    """The teachers page's architectures: each teacher, its family, input pipeline and parameter count."""
    from ..training.probes import teacher_architectures

    return render_table(teacher_architectures(config, names), code_columns=["teacher"],
                        wide_columns=["input pipeline"], formats={"parameters": "{}"})


def load_teachers(config: RunConfig, names: list[str], force: bool = False) -> list[Any]:
    """Every teacher of `names` (published weights loaded, or trained here once)."""
    from ..training.teachers import load_teacher

    splits = _splits(config)
    return [load_teacher(config, name, splits, force=force) for name in names]


def teacher_histories(teachers: list[Any]) -> dict[str, list[dict[str, float]]]:
    """The training history of each teacher trained here, by name (none for published teachers)."""
    return {t.name: t.info["history"] for t in teachers if "history" in t.info}


def teacher_accuracy(config: RunConfig, teachers: list[Any]) -> dict[str, float]:
    """Validation and test accuracy (%) of each loaded teacher on the clean images, rounded; also written to
    the results home (results/<profile>/teachers.json) for the book and the golden tests."""
    from ..training.runs import preflight
    from ..training.teaching import teacher_accuracy as accuracy

    device, splits = preflight(config), _splits(config)
    values = {f"{t.name}.{k}": round(v, 2) for t in teachers
              for k, v in accuracy(t.model.to(device), splits, device, config.precision).items()}
    files.write_json(paths.results_home() / config.profile / "teachers.json", values)
    return values


def method3_ties(config: RunConfig, teachers: list[Any]) -> dict[str, dict[str, float]]:
    """Per teacher set of a Method 3 row among the loaded `teachers`: how often its choice depends on their order
    (cakd.training.probes.method3_ties, on logit caches built when missing); also in results/<profile>/ties.json."""
    import torch

    from ..training.probes import method3_ties as ties
    from ..training.runs import preflight
    from ..training.teaching import load_or_build_cache

    device, splits, out = preflight(config), _splits(config), {}
    loaded = {t.name: t for t in teachers}
    for row in manifest.all_rows():
        names = tuple(row.params.get("teachers", ()))
        label = ", ".join(names)
        if row.params["method"] == "adaptive_alpha" and label not in out and set(names) <= set(loaded):
            run = dataclasses.replace(config, method="adaptive_alpha", teachers=names)
            caches = [load_or_build_cache(run, loaded[name], splits, device)[0] for name in names]
            out[label] = ties(run, caches, splits, device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"a CPU ({platform.machine()})"
    files.write_json(paths.results_home() / config.profile / "ties.json", {"device": where, "sets": out})
    return out


@functools.lru_cache(maxsize=1)
def _splits(config: RunConfig) -> Any:
    """The teachers page's splits, read once for its three measurements (CIFAR-100 takes seconds to read and split)."""
    from ..training.data import load_splits

    return load_splits(config)
