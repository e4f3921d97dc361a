"""The experiments manifest: every Table 1 row and the Figure 4 sweep, and nothing else defines them.

Notebooks, the results table, the figures, the CLI and the tests all read these rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import RunConfig, profile_config

D, R, V = "densenet121", "resnet50", "vit_base_patch16_224"
RESNETS = ("resnet18", "resnet34", "resnet50")


@dataclass(frozen=True)
class Row:
    id: str
    label: str                     # as in the report's Table 1
    notebook: str                  # notebooks/<notebook>.ipynb
    params: dict[str, Any]         # notebook parameters = RunConfig fields
    report_acc: float | None       # the report's test accuracy (%), None for sweep points it does not list
    figure: str | None = None      # "fig2" (baseline, single teacher) or "fig3" (multi-teacher)

    def config(self, profile: str, seed: int = 0, **overrides: Any) -> RunConfig:
        return profile_config(profile, **{**self.params, "seed": seed, **overrides})

    def notebook_parameters(self, profile: str) -> dict[str, Any]:
        """What papermill injects into the row's notebook (the notebook itself fixes the method)."""
        return {"profile": profile, **{k: v for k, v in self.params.items() if k != "method"}}


ROWS: tuple[Row, ...] = (
    Row("baseline", "Baseline (MobileNetV2, no teacher)", "baseline", {"method": "baseline"}, 66.29, "fig2"),
    Row("kd_resnet50", "KD, ResNet-50 teacher (alpha 0.75)", "single_teacher",
        {"method": "kd", "teachers": [R], "alpha": 0.75}, 73.75, "fig2"),
    Row("kd_vit", "KD, ViT-B/16 teacher (alpha 0.25)", "single_teacher",
        {"method": "kd", "teachers": [V], "alpha": 0.25}, 74.00, "fig2"),
    Row("kd_densenet121", "KD, DenseNet-121 teacher (alpha 0.5)", "single_teacher",
        {"method": "kd", "teachers": [D], "alpha": 0.5}, 75.38, "fig2"),
    Row("m1_drv", "Method 1, CA-WKD (D, R, V)", "method1", {"method": "ca_wkd", "teachers": [D, R, V]}, 73.33, "fig3"),
    Row("m2_drv", "Method 2, alpha-guided (D, R, V)", "method2",
        {"method": "alpha_guided", "teachers": [D, R, V]}, 71.38, "fig3"),
    Row("m3_drv", "Method 3, adaptive alpha (D, R, V)", "method3",
        {"method": "adaptive_alpha", "teachers": [D, R, V]}, 72.10, "fig3"),
    Row("m3_dr_t8", "Method 3 (D, R), tau 8", "method3",
        {"method": "adaptive_alpha", "teachers": [D, R], "temperature": 8.0}, 74.00, "fig3"),
    Row("m3_dr_t16", "Method 3 (D, R), tau 16", "method3",
        {"method": "adaptive_alpha", "teachers": [D, R], "temperature": 16.0}, 73.96, "fig3"),
    Row("m3_resnets", "Method 3 (ResNet-18/34/50)", "method3",
        {"method": "adaptive_alpha", "teachers": list(RESNETS)}, 72.90, "fig3"),
    Row("m3_resnets_noce", "Method 3 (ResNet-18/34/50), without CE", "method3",
        {"method": "adaptive_alpha", "teachers": list(RESNETS), "use_ce": False}, 71.89, "fig3"),
)

# Figure 4: temperature tuning of multi-teacher KD, Method 3 with the (D, R) pair (tau 8 and 16 are Table 1 rows).
SWEEP_TEMPERATURES = (1.0, 2.0, 4.0, 8.0, 16.0)
SWEEP: tuple[Row, ...] = tuple(
    Row(f"m3_dr_t{t:g}", f"Method 3 (D, R), tau {t:g}", "method3",
        {"method": "adaptive_alpha", "teachers": [D, R], "temperature": t},
        {8.0: 74.00, 16.0: 73.96}.get(t))
    for t in SWEEP_TEMPERATURES)


def all_rows() -> list[Row]:
    """Table 1 rows, then the sweep points that are not already rows (each run appears once)."""
    ids = {r.id for r in ROWS}
    return list(ROWS) + [r for r in SWEEP if r.id not in ids]


def get_row(row_id: str) -> Row:
    rows = {r.id: r for r in all_rows()}
    if row_id not in rows:
        raise ValueError(f"row={row_id!r} is not in the manifest; rows are {sorted(rows)}")
    return rows[row_id]
