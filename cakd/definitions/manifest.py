"""The experiments manifest: every Table 1 row and every extra point of Figures 2 and 4; nothing else defines them.

Notebooks, the results table, the figures, the CLI, `reproduce` and the tests all read these entries. Each entry carries
the report's number and the authors' own 2025 re-run (authors.RERUN_SOURCE) where those exist. Teachers are listed
in the authors' order (ResNet-50 first): Method 3 keeps the first teacher on a tie."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .authors import BASELINE_NOTE
from .config import RunConfig
from .profiles import profile_config

# Teacher names as the public CIFAR-100 checkpoints are published (report section 4.1).
R18, R34, R50 = "resnet18_cifar100", "resnet34_cifar100", "resnet50_cifar100"
D, V = "densenet121_cifar100", "vit_base_patch16_224_in21k_ft_cifar100"
RESNETS = (R50, R18, R34)     # the authors' order (authors.SOURCE_CHOICES: teacher order)
BENCH_REFERENCE = "m3_drv"    # the heaviest row (three teachers, the ViT among them): the benchmark's reference


@dataclass(frozen=True)
class Row:
    id: str
    label: str                        # as in the report's Table 1
    notebook: str                     # notebooks/<notebook>.ipynb
    params: dict[str, Any]            # notebook parameters = RunConfig fields (the method included)
    report_acc: float | None = None   # the report's Table 1 test accuracy (%), None where it lists none
    authors_acc: float | None = None  # the authors' own re-run (authors.RERUN_SOURCE), None where none
    figures: tuple[str, ...] = ()     # "fig2" (baseline, single teacher), "fig3" (multi-teacher), "fig4" (tau)
    table1: bool = True               # a Table 1 row; False: an extra point of a figure
    ours: bool = False                # a point the report does not have (our addition, labelled so)
    note: str = ""                    # what a reader must know about the report's number for this row

    def config(self, profile: str, seed: int = 0, **overrides: Any) -> RunConfig:
        return profile_config(profile, **{**self.params, "seed": seed, **overrides})

    def notebook_parameters(self, profile: str) -> dict[str, Any]:
        """What papermill injects into the row's notebook (the notebook itself fixes the method)."""
        return {"profile": profile, **{k: v for k, v in self.params.items() if k != "method"}}


def _kd(teacher: str, label: str, alpha: float, report: float | None = None, authors: float | None = None,
        table1: bool = False) -> Row:
    suffix = "" if table1 else f"_a{round(alpha * 100)}"
    short = {R50: "resnet50", V: "vit", D: "densenet121"}[teacher]
    return Row(f"kd_{short}{suffix}", f"KD, {label} teacher (alpha {alpha:g})", "single_teacher",
               {"method": "kd", "teachers": [teacher], "alpha": alpha}, report, authors, ("fig2",), table1)


def _m3_dr(temperature: float, report: float | None = None, authors: float | None = None, table1: bool = False,
           ours: bool = False, figures: tuple[str, ...] = ("fig4",)) -> Row:
    return Row(f"m3_dr_t{temperature:g}", f"Method 3 (D, R), tau {temperature:g}", "method3",
               {"method": "adaptive_alpha", "teachers": [R50, D], "temperature": temperature}, report, authors,
               figures, table1, ours)


ROWS: tuple[Row, ...] = (
    Row("baseline", "Baseline (MobileNetV2, no teacher)", "baseline", {"method": "baseline"}, 66.29, 69.84,
        ("fig2",), note=BASELINE_NOTE),
    _kd(R50, "ResNet-50", 0.75, 73.75, 72.81, table1=True),
    _kd(V, "ViT-B/16", 0.25, 74.00, 73.19, table1=True),
    _kd(D, "DenseNet-121", 0.5, 75.38, 71.99, table1=True),
    Row("m1_drv", "Method 1, CA-WKD (D, R, V)", "method1", {"method": "ca_wkd", "teachers": [R50, D, V]},
        73.33, 73.92, ("fig3",)),
    Row("m2_drv", "Method 2, alpha-guided (D, R, V)", "method2",
        {"method": "alpha_guided", "teachers": [R50, D, V]}, 71.38, 74.24, ("fig3",)),
    Row("m3_drv", "Method 3, adaptive alpha (D, R, V)", "method3",
        {"method": "adaptive_alpha", "teachers": [R50, D, V]}, 72.10, 72.34, ("fig3",)),
    _m3_dr(8.0, 74.00, 72.72, table1=True, figures=("fig3", "fig4")),   # the report's Figure 3 draws it too
    _m3_dr(16.0, 73.96, 73.26, table1=True),
    Row("m3_resnets", "Method 3 (ResNet-18/34/50)", "method3",
        {"method": "adaptive_alpha", "teachers": list(RESNETS)}, 72.90, 71.60, ("fig3",)),
    Row("m3_resnets_noce", "Method 3 (ResNet-18/34/50), without CE", "method3",
        {"method": "adaptive_alpha", "teachers": list(RESNETS), "use_ce": False}, 71.89, 72.12, ("fig3",)),
)

# Figure 2 draws every teacher at alpha 0.25, 0.5 and 0.75 (three of those nine runs are Table 1 rows);
# Figure 4 draws Method 3 (D, R) at tau 4, 8 and 16 (8 and 16 are rows); tau 1 and 2 are ours.
FIGURE_POINTS: tuple[Row, ...] = (
    _kd(R50, "ResNet-50", 0.25), _kd(R50, "ResNet-50", 0.5),
    _kd(V, "ViT-B/16", 0.5), _kd(V, "ViT-B/16", 0.75),
    _kd(D, "DenseNet-121", 0.25), _kd(D, "DenseNet-121", 0.75),
    _m3_dr(4.0),
    _m3_dr(1.0, ours=True), _m3_dr(2.0, ours=True),
)


def all_rows() -> list[Row]:
    """Table 1 rows, then the extra figure points: every run the reproduction makes, each once."""
    return list(ROWS) + list(FIGURE_POINTS)


def figure_rows(figure: str) -> list[Row]:
    """The entries drawn in `figure` ('fig2', 'fig3', 'fig4'), in manifest order."""
    rows = [row for row in all_rows() if figure in row.figures]
    if not rows:
        raise ValueError(f"figure={figure!r} has no rows; figures are "
                         f"{sorted({f for r in all_rows() for f in r.figures})}")
    return rows


def select_rows(rows: list[str] | None, every: list[Row]) -> list[Row]:
    """The rows named by the ids `rows` (each checked), or `every` when none are named."""
    if isinstance(rows, str):
        raise ValueError(f"rows={rows!r} must be a list of row ids, e.g. [{rows!r}] (CLI: --rows {rows})")
    return [get_row(r) for r in rows] if rows else every


def get_row(row_id: str) -> Row:
    rows = {r.id: r for r in all_rows()}
    if row_id not in rows:
        raise ValueError(f"row={row_id!r} is not in the manifest; rows are {sorted(rows)}")
    return rows[row_id]


def find_row(config: RunConfig) -> Row | None:
    """The manifest entry `config` runs (at its profile and seed), or None for a run of other parameters."""
    return next((row for row in all_rows() if row.config(config.profile, config.seed).run_id == config.run_id), None)


def teachers_used(rows: list[Row] | None = None) -> list[str]:
    """Every teacher the rows (default: all) distil from, each once, in manifest order."""
    return list(dict.fromkeys(t for row in rows or all_rows() for t in row.params.get("teachers", ())))
