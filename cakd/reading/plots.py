"""The book's figures: the report's Figures 2-4 from finished runs, the teachers trained here and one run's history,
drawn on matplotlib `Figure`s (no pyplot state: nothing shown by accident), saved as PNG and SVG in `figures_dir`."""
from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import matplotlib
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from ..definitions import files, paths
from ..definitions.networks import TEACHER_LABELS
from ..definitions.profiles import get_profile
from ..definitions.registry import History, RunResult
from .report import figure_series


@dataclass(frozen=True)
class Plot:
    """A saved figure and the points it draws as CSV; notebooks show it from the PNG (whatever matplotlib's backend)."""
    figure: Figure
    png: Path
    svg: Path
    csv: Path | None = None

    def _repr_png_(self) -> bytes:
        return self.png.read_bytes()

    def __repr__(self) -> str:
        return f"Plot({self.png.name}, {self.svg.name})"


def plot_history(result: RunResult, name: str | None = None) -> Plot:
    """One run per epoch: val/test accuracy, loss terms, and alpha / teacher weights / choice when logged."""
    frame = pd.DataFrame(result.history)
    panels = [("accuracy (%)", {"val_acc": "validation", "test_acc": "test"}),
              ("loss", {"loss": "total", "ce": "CE", "kd": "KD (KL)"}), ("alpha", {"alpha": "alpha"}),
              ("teacher weight", _teacher_columns(frame, "teacher_weights")),
              ("teacher chosen (fraction)", _teacher_columns(frame, "teacher_choice"))]
    panels = [(title, logged) for title, columns in panels   # the panels and series this run logged
              if (logged := {c: label for c, label in columns.items() if c in frame})]
    with _style():
        fig = Figure(figsize=(3.6 * len(panels), 3.2), layout="constrained")
        for ax, (title, columns) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
            # dropna: the test accuracy, read only where the protocol may report it
            long = frame.melt(id_vars="epoch", value_vars=list(columns), var_name="series").dropna()
            long["series"] = long["series"].map(columns)
            _seaborn().lineplot(long, x="epoch", y="value", hue="series", marker="o", ax=ax)
            ax.set(title=title, ylabel="", xlabel="epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            _legend(ax, len(columns))
        config = result.config
        _heading(fig, f"{config.loss.title}: run {config.run_id} (profile {config.profile}, seed {config.seed})",
                 config.profile)
        return save(fig, config.profile, name or f"history-{config.run_id}")


def figure2(profile: str, seeds: int | None = None, name: str = "fig2_single_teacher") -> Plot:
    """Report Figure 2: validation accuracy per epoch of single-teacher KD at alpha 0.25, 0.5 and 0.75, one
    panel per teacher, each with the baseline for reference; the Table 1 row's alpha drawn thicker."""
    series = figure_series(profile, "fig2", seeds)
    baseline = [runs for row, runs in series if not row.params.get("teachers")]
    by_teacher: dict[str, list] = {}
    for row, runs in series:
        if row.params.get("teachers"):
            by_teacher.setdefault(row.params["teachers"][0], []).append((row, runs))
    alphas = sorted({row.params["alpha"] for entries in by_teacher.values() for row, _ in entries})
    colours = dict(zip(alphas, _seaborn().color_palette("viridis_r", len(alphas))))
    with _style():
        fig = Figure(figsize=(4.4 * len(by_teacher), 4.8), layout="constrained")
        axes = fig.subplots(1, len(by_teacher), sharey=True, squeeze=False)[0]
        for ax, (teacher, entries) in zip(axes, by_teacher.items()):
            for runs in baseline:
                _curve(ax, runs, "baseline", color="0.45", linestyle="--")
            for row, runs in sorted(entries, key=lambda e: e[0].params["alpha"]):
                _curve(ax, runs, f"α {row.params['alpha']:g}", color=colours[row.params["alpha"]],
                       linewidth=3.0 if row.table1 else 1.4)
            table1 = [row.params["alpha"] for row, _ in entries if row.table1]
            ax.set_title(TEACHER_LABELS[teacher] + (f" (Table 1: α {table1[0]:g})" if table1 else ""))
        legend = [Line2D([], [], color="0.45", linestyle="--", label="baseline (no teacher)"),
                  *(Line2D([], [], color=colours[a], label=f"α {a:g}") for a in alphas),
                  Line2D([], [], color="0.2", linewidth=3.0, label="thick: the Table 1 row")]
        _finish(fig, axes, series, profile, "Figure 2: baseline and single-teacher KD, α 0.25 / 0.5 / 0.75",
                describe=lambda row: (f"{TEACHER_LABELS[row.params['teachers'][0]]} α {row.params['alpha']:g}"
                                      if row.params.get("teachers") else "baseline"), legend=legend)
        return save(fig, profile, name, series)


def figure3(profile: str, seeds: int | None = None, name: str = "fig3_multi_teacher") -> Plot:
    """Report Figure 3: validation accuracy per epoch of the multi-teacher Table 1 rows."""
    series = figure_series(profile, "fig3", seeds)
    with _style():
        fig = Figure(figsize=(9.5, 5.2), layout="constrained")
        ax = fig.subplots()
        for (row, runs), colour in zip(series, _seaborn().color_palette("tab10", len(series))):
            _curve(ax, runs, row.label, color=colour, linestyle=":" if row.params.get("use_ce") is False else "-")
        _finish(fig, [ax], series, profile, "Figure 3: multi-teacher methods (Table 1 rows)",
                describe=lambda row: row.label)
        return save(fig, profile, name, series)


def figure4(profile: str, seeds: int | None = None, name: str = "fig4_temperature") -> Plot:
    """Report Figure 4: validation accuracy per epoch of Method 3 (D, R) by temperature; our extra tau 1, 2 dashed."""
    series = sorted(figure_series(profile, "fig4", seeds), key=lambda e: e[0].params["temperature"])
    with _style():
        fig = Figure(figsize=(9.5, 5.2), layout="constrained")
        ax = fig.subplots()
        for (row, runs), colour in zip(series, _seaborn().color_palette("rocket_r", len(series) + 1)[1:]):
            _curve(ax, runs, f"τ {row.params['temperature']:g}" + (" (ours)" if row.ours else ""),
                   color=colour, linestyle="--" if row.ours else "-")
        _finish(fig, [ax], series, profile, "Figure 4: Method 3 (DenseNet-121, ResNet-50) by temperature τ",
                describe=lambda row: f"τ {row.params['temperature']:g}")
        return save(fig, profile, name, series)


def plot_teachers(histories: dict[str, History], profile: str, *, name: str = "teachers") -> Plot | None:
    """Validation accuracy per epoch of the teachers trained here (smoke), by name; None for published teachers."""
    if not histories:
        return None
    frame = pd.concat([pd.DataFrame(h)[["epoch", "val_acc"]].assign(teacher=TEACHER_LABELS[n])
                       for n, h in histories.items()])
    with _style():
        fig = Figure(figsize=(7.5, 4.2), layout="constrained")
        ax = fig.subplots()
        _seaborn().lineplot(frame, x="epoch", y="val_acc", hue="teacher", marker="o", ax=ax)
        ax.set(xlabel="epoch", ylabel="validation accuracy (%)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _legend(ax, len(histories), keep_single=True)
        _heading(fig, "Teachers trained here", profile)
        return save(fig, profile, name)


def save(fig: Figure, profile: str, name: str, series: Sequence[tuple[Any, Sequence[RunResult]]] = ()) -> Plot:
    """Write `fig` as <figures_dir>/<name>.png and .svg (no timestamps, so reruns give the same files) and, for a
    figure of manifest entries, the points it draws: every run's validation accuracy per epoch, as <name>.csv."""
    folder = paths.figures_dir(profile)
    folder.mkdir(parents=True, exist_ok=True)
    png, svg, csv = (paths.inside(folder, f"{name}.{suffix}", "name") for suffix in ("png", "svg", "csv"))
    fig.savefig(png, dpi=150, metadata={"Software": None})
    fig.savefig(svg, metadata={"Date": None})
    if series:
        points = pd.DataFrame([{"row": row.id, "label": row.label, "seed": run.config.seed, "epoch": int(h["epoch"]),
                                "val_acc": h["val_acc"]} for row, runs in series for run in runs for h in run.history],
                              columns=["row", "label", "seed", "epoch", "val_acc"])
        files.write_text(csv, points.to_csv(index=False))
    return Plot(fig, png, svg, csv if series else None)


# ----------------------------------------------------------------------------- helpers

def _seaborn():
    """seaborn, imported when a figure is drawn: its import (scipy.stats) takes 1.6 s, which a notebook that stops
    before its figures (a bad parameter, a golden test's first differing cell) need not pay."""
    import seaborn

    return seaborn


def _style():
    """seaborn's whitegrid look for the figures drawn inside, without changing the caller's settings."""
    # svg.fonttype none: text stays text in the SVG (searchable, readable by screen readers and tests)
    return matplotlib.rc_context({**_seaborn().axes_style("whitegrid"), "svg.hashsalt": "cakd", "svg.fonttype": "none"})


def _teacher_columns(frame: pd.DataFrame, stem: str) -> dict[str, str]:
    return {c: TEACHER_LABELS[c.split(".", 1)[1]] for c in frame.columns if c.startswith(stem + ".")}


def _legend(ax: Axes, entries: int, keep_single: bool = False) -> None:
    if (legend := ax.get_legend()) is not None:
        legend.set_title(None)
        legend.set_frame_on(False)
        for text in legend.get_texts():
            text.set_fontsize("small")
        if entries == 1 and not keep_single:
            legend.remove()


def _curve(ax: Axes, runs: Sequence[RunResult], label: str, metric: str = "val_acc", **style: Any) -> None:
    """Mean over seeds per epoch, and a +-1 sd band when there are several; nothing for a row without runs."""
    if not runs:
        return
    frame = pd.concat([pd.DataFrame(r.history)[["epoch", metric]] for r in runs])
    stats = frame.groupby("epoch")[metric].agg(["mean", "std", "count"]).reset_index()
    seeds = f" [{len(runs)} seeds]" if len(runs) > 1 else ""
    line, = ax.plot(stats["epoch"], stats["mean"], marker="o", markersize=3, label=label + seeds, **style)
    if len(runs) > 1:
        ax.fill_between(stats["epoch"], stats["mean"] - stats["std"].fillna(0), stats["mean"] + stats["std"].fillna(0),
                        color=line.get_color(), alpha=0.15, linewidth=0)


def _heading(fig: Figure, title: str, profile: str) -> None:
    """The figure's title and, for any profile but the authors' recipe, its label on a second line in red."""
    banner = get_profile(profile).banner
    heading = fig.suptitle(title + ("\n " if banner else ""), fontsize="large")   # a blank line kept for it
    if banner:   # a reader cannot miss it, and it travels with the PNG wherever the figure goes
        line = 1.2 * heading.get_fontsize() / (fig.get_figheight() * 72)
        fig.text(0.5, 0.98 - line, banner, ha="center", va="top", color="firebrick", weight="bold")


def _finish(fig: Figure, axes: Sequence[Axes], series: Sequence[tuple[Any, Sequence[Any]]], profile: str,
            title: str, describe: Callable[[Any], str], legend: Sequence[Line2D] | None = None) -> None:
    """Axis labels, integer epochs, title, profile label (but for the authors' recipe), one legend, rows not run."""
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel("validation accuracy (%)")
    _heading(fig, title, profile)
    if handles := (list(legend) if legend is not None else axes[0].get_legend_handles_labels()[0]):
        # under the axes, as many entries a row as fit: clear of the title and the profile's label
        columns = min(len(handles), max(1, int(fig.get_figwidth() // 2.6)))
        fig.legend(handles=handles, loc="outside lower center", ncols=columns, frameon=False)
    if not any(runs for _, runs in series):
        for ax in axes:
            ax.text(0.5, 0.5, "no finished runs yet", ha="center", va="center", transform=ax.transAxes)
    if missing := [row for row, runs in series if not runs]:   # a figure never hides that it is incomplete
        fig.supxlabel(textwrap.fill("not run yet: " + "; ".join(f"{describe(row)} ({row.id})" for row in missing), 110),
                      fontsize="small", color="firebrick")
