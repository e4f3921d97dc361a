"""The book's figures (report Figures 2-4 and one run's history), drawn from finished runs with seaborn.

Figures are built with matplotlib's object API (`Figure`, rendered by Agg): no pyplot state, nothing shown
by accident, safe in scripts and kernels alike. Each is saved as PNG and SVG under `paths.figures_dir`.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import matplotlib
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from . import paths
from .config import METHOD_TITLES, TEACHER_LABELS

if TYPE_CHECKING:   # plots only read finished runs; importing the training stack here is not needed
    from .runs import RunResult
    from .teachers import Teacher

History = list[dict[str, float]]


@dataclass(frozen=True)
class Plot:
    """A saved figure. Notebooks display it from the PNG file (no dependence on matplotlib's backend)."""
    figure: Figure
    png: Path
    svg: Path

    def _repr_png_(self) -> bytes:
        return self.png.read_bytes()

    def __repr__(self) -> str:
        return f"Plot({self.png.name}, {self.svg.name})"


def plot_history(result: RunResult, name: str | None = None) -> Plot:
    """One run per epoch: val/test accuracy, loss terms, and alpha / teacher weights / choice when logged."""
    frame = pd.DataFrame(result.history)
    panels: list[tuple[str, dict[str, str]]] = [
        ("accuracy (%)", {"val_acc": "validation", "test_acc": "test"}),
        ("loss", {"loss": "total", "ce": "CE", "kd": "KD (KL)"}),
        ("alpha", {"alpha": "alpha"}),
        ("teacher weight", _teacher_columns(frame, "teacher_weights")),
        ("teacher chosen (fraction)", _teacher_columns(frame, "teacher_choice")),
    ]
    panels = [(title, {c: l for c, l in cols.items() if c in frame}) for title, cols in panels]
    panels = [(title, cols) for title, cols in panels if cols]
    with _style():
        fig = Figure(figsize=(3.6 * len(panels), 3.2), layout="constrained")
        for ax, (title, columns) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
            long = frame.melt(id_vars="epoch", value_vars=list(columns), var_name="series")
            long["series"] = long["series"].map(columns)
            sns.lineplot(long, x="epoch", y="value", hue="series", marker="o", ax=ax)
            ax.set(title=title, ylabel="", xlabel="epoch")
            _integer_epochs(ax)
            _legend(ax, len(columns))
        config = result.config
        fig.suptitle(f"{METHOD_TITLES[config.method]}: run {config.run_id} (profile {config.profile}, "
                     f"seed {config.seed})")
        return save(fig, config.profile, name or f"history-{config.run_id}")


def plot_curves(results: Sequence[RunResult | History | None], labels: Sequence[str], title: str, *, profile: str,
                name: str, metric: str = "val_acc") -> Plot:
    """Validation accuracy per epoch of several runs (report Figures 2 and 3); None marks a missing run.

    `results` holds RunResults (or anything with a `.history`, or a history list); missing runs are named
    under the axes, never drawn.
    """
    frames, missing = [], []
    for result, label in zip(results, labels, strict=True):
        history = _history(result)
        if history is None:
            missing.append(label)
        else:
            frames.append(pd.DataFrame(history)[["epoch", metric]].assign(run=label))
    with _style():
        fig = Figure(figsize=(7.5, 4.2), layout="constrained")
        ax = fig.subplots()
        if frames:
            sns.lineplot(pd.concat(frames), x="epoch", y=metric, hue="run", marker="o", ax=ax)
            _integer_epochs(ax)
            _legend(ax, len(frames), keep_single=True)
        else:
            ax.text(0.5, 0.5, "no finished runs yet", ha="center", va="center", transform=ax.transAxes)
        ax.set(title=title, xlabel="epoch", ylabel=_METRIC_LABELS.get(metric, metric))
        if missing:
            _missing_note(fig, "missing (not run yet): " + "; ".join(missing))
        return save(fig, profile, name)


def plot_teachers(teachers: Sequence[Teacher], *, name: str = "teachers") -> Plot:
    """Validation accuracy per epoch of fine-tuned teachers (cakd.teachers.Teacher, one profile)."""
    return plot_curves([t.info["history"] for t in teachers], [TEACHER_LABELS[t.config.name] for t in teachers],
                       "Teacher fine-tuning", profile=teachers[0].config.profile, name=name)


def plot_temperature_sweep(points: Sequence[dict[str, Any]], *, profile: str, name: str = "fig4_temperature",
                           title: str = "Temperature tuning, Method 3 (D, R)",
                           report: dict[float, float] | None = None) -> Plot:
    """Test accuracy vs temperature (log2 axis; report Figure 4), mean and +-1 sd over seeds.

    `points`: dicts with `temperature` and `accuracy` (None or NaN = missing run), one per seed.
    `report`: the report's numbers by temperature, drawn as separate markers when given.
    """
    frame = pd.DataFrame(list(points), columns=["temperature", "accuracy"]).astype(float)
    found = frame.dropna()
    missing = sorted(set(frame["temperature"]) - set(found["temperature"]))
    with _style():
        fig = Figure(figsize=(6.0, 4.0), layout="constrained")
        ax = fig.subplots()
        if len(found):
            several = found.groupby("temperature").size().max() > 1
            sns.lineplot(found, x="temperature", y="accuracy", marker="o", ax=ax, label="ours",
                         errorbar="sd" if several else None, err_style="bars", err_kws={"capsize": 4})
        if report:
            ax.plot(list(report), list(report.values()), "s", color="0.35", label="report")
        temperatures = sorted(set(frame["temperature"]) | set(report or {}))
        ax.set_xscale("log", base=2)
        ax.set_xticks(temperatures, [f"{t:g}" for t in temperatures])
        ax.minorticks_off()
        ax.set(title=title, xlabel="temperature tau (log2 scale)", ylabel="test accuracy (%)")
        if len(found) or report:
            ax.legend(frameon=False)
        else:
            ax.text(0.5, 0.5, "no finished runs yet", ha="center", va="center", transform=ax.transAxes)
        if missing:
            _missing_note(fig, "missing (not run yet): tau " + ", ".join(f"{t:g}" for t in missing))
        return save(fig, profile, name)


def save(fig: Figure, profile: str, name: str) -> Plot:
    """Write `fig` as <figures_dir>/<name>.png and .svg (no timestamps, so reruns give the same files)."""
    folder = paths.figures_dir(profile)
    folder.mkdir(parents=True, exist_ok=True)
    png, svg = paths.inside(folder, f"{name}.png", "name"), paths.inside(folder, f"{name}.svg", "name")
    fig.savefig(png, dpi=150, metadata={"Software": None})
    fig.savefig(svg, metadata={"Date": None})
    return Plot(fig, png, svg)


# ----------------------------------------------------------------------------- helpers

_METRIC_LABELS = {"val_acc": "validation accuracy (%)", "test_acc": "test accuracy (%)"}


def _style():
    """seaborn's whitegrid look for the figures drawn inside, without changing the caller's settings."""
    return matplotlib.rc_context({**sns.axes_style("whitegrid"), "svg.hashsalt": "cakd"})


def _history(result: RunResult | History | None) -> History | None:
    if result is None:
        return None
    return result if isinstance(result, list) else result.history


def _teacher_columns(frame: pd.DataFrame, stem: str) -> dict[str, str]:
    return {c: TEACHER_LABELS.get(c.split(".", 1)[1], c.split(".", 1)[1])
            for c in frame.columns if c.startswith(stem + ".")}


def _integer_epochs(ax: Axes) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _legend(ax: Axes, entries: int, keep_single: bool = False) -> None:
    legend = ax.get_legend()
    if legend is not None:
        legend.set_title(None)
        legend.set_frame_on(False)
        for text in legend.get_texts():
            text.set_fontsize("small")
        if entries == 1 and not keep_single:
            legend.remove()


def _missing_note(fig: Figure, text: str) -> None:
    """Names the runs that are not there, under the axes (a figure never hides that it is incomplete)."""
    fig.supxlabel(textwrap.fill(text, 110), fontsize="small", color="firebrick")
