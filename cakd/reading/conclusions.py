"""The report's conclusions, checked against our runs beyond their seed-to-seed spread: each is the report's claim and
the Table 1 pairs it rests on (row expected higher, row expected lower). The report compares single runs, and its
authors' re-run moved rows by up to 3.55 points: our difference counts only beyond SPREAD_FACTOR standard errors."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Mapping, Sequence

import pandas as pd

from ..definitions import manifest
from ..definitions.profiles import get_profile
from .report import row_results
from .tables import HtmlTable, render_table

SPREAD_FACTOR = 2.0   # a difference must exceed 2 standard errors (about 95% under normal noise) to count
MIN_SEEDS = 2         # a standard deviation needs two seeds per row


@dataclass(frozen=True)
class Conclusion:
    claim: str                          # what the report concludes, in its terms
    pairs: tuple[tuple[str, str], ...]  # (row expected higher, row expected lower), manifest row ids


CONCLUSIONS: tuple[Conclusion, ...] = (
    Conclusion("Every single teacher improves on the baseline",
               (("kd_resnet50", "baseline"), ("kd_vit", "baseline"), ("kd_densenet121", "baseline"))),
    Conclusion("DenseNet-121 gives the best single-teacher student",
               (("kd_densenet121", "kd_resnet50"), ("kd_densenet121", "kd_vit"))),
    Conclusion("Method 1 beats Method 2 (D, R, V)", (("m1_drv", "m2_drv"),)),
    Conclusion("Method 3 does better with DenseNet and ResNet (tau 8) than with all three teachers",
               (("m3_dr_t8", "m3_drv"),)),
    Conclusion("tau 8 beats tau 4 for Method 3 (D, R)", (("m3_dr_t8", "m3_dr_t4"),)),
    Conclusion("Without CE costs about a point (Method 3, ResNets)", (("m3_resnets", "m3_resnets_noce"),)),
)


def judge_pair(higher: Sequence[float], lower: Sequence[float]) -> tuple[float, float, str]:
    """mean(higher) - mean(lower), SPREAD_FACTOR Welch standard errors sqrt(s_h^2/n_h + s_l^2/n_l) of it, the verdict:
    'not enough runs' below MIN_SEEDS runs on either side (the difference is still given when both sides have one)."""
    diff = statistics.fmean(higher) - statistics.fmean(lower) if higher and lower else math.nan
    if len(higher) < MIN_SEEDS or len(lower) < MIN_SEEDS:
        return diff, math.nan, "not enough runs"
    spread = SPREAD_FACTOR * math.sqrt(statistics.variance(higher) / len(higher)
                                       + statistics.variance(lower) / len(lower))
    verdict = "supported" if diff > spread else "contradicted" if diff < -spread else "within spread"
    return diff, spread, verdict


def judge(accuracies: Mapping[str, Sequence[float]], conclusions: Sequence[Conclusion] = CONCLUSIONS) -> pd.DataFrame:
    """A row per conclusion from per-row accuracies (row id -> an accuracy per seed; absent: no run): contradicted when
    any pair goes the other way beyond the spread, supported when all go its way beyond it, 'not enough runs' when a
    pair lacks seeds, else 'within spread'. Shown: the decisive pair (one that contradicts, else the least margin)."""
    records = []
    for conclusion in conclusions:
        judged = []
        for higher, lower in conclusion.pairs:
            a, b = list(accuracies.get(higher, ())), list(accuracies.get(lower, ()))
            diff, spread, verdict = judge_pair(a, b)
            ra, rb = manifest.get_row(higher).report_acc, manifest.get_row(lower).report_acc
            report = math.nan if ra is None or rb is None else ra - rb
            judged.append((higher, lower, len(a), len(b), report, diff, spread, verdict))
        verdicts = {j[-1] for j in judged}
        verdict = ("not enough runs" if "not enough runs" in verdicts else "contradicted" if "contradicted" in verdicts
                   else "supported" if verdicts == {"supported"} else "within spread")
        shown = min((j for j in judged if verdict != "contradicted" or j[-1] == "contradicted"), key=_margin)
        higher, lower, n_a, n_b, report, diff, spread, _ = shown
        records.append({"conclusion": conclusion.claim, "report": report, "ours": diff, "spread": spread,
                        "compared": f"{higher} > {lower}" + (f" (1 of {len(judged)} pairs)" if len(judged) > 1 else ""),
                        "seeds": f"{n_a} / {n_b}", "verdict": verdict})
    return pd.DataFrame.from_records(records, columns=["conclusion", "compared", "report", "ours", "spread",
                                                       "seeds", "verdict"])


def check_conclusions(profile: str, seeds: int | None = None) -> pd.DataFrame:
    """judge() on the finished runs of `profile` (seeds 0..seeds-1, or every seed in the registry)."""
    ids = {row_id for c in CONCLUSIONS for pair in c.pairs for row_id in pair}
    return judge({row_id: [r.accuracy for r in row_results(manifest.get_row(row_id), profile, seeds)]
                  for row_id in sorted(ids)})


def conclusions_table(profile: str, seeds: int | None = None, table: pd.DataFrame | None = None) -> HtmlTable:
    """The conclusions as the book shows them (grouped headers, signed differences, the verdict rule)."""
    table = check_conclusions(profile, seeds) if table is None else table
    frame = pd.DataFrame({("", "the report concludes"): table["conclusion"], ("", "rows compared"): table["compared"],
                          ("Difference (points)", "report"): table["report"],
                          ("Difference (points)", "ours (mean)"): table["ours"],
                          ("Difference (points)", f"+- {SPREAD_FACTOR:g} SE"): table["spread"],
                          ("", "seeds"): table["seeds"], ("", "verdict"): table["verdict"]})
    notes = [f"Verdict: supported when our difference exceeds {SPREAD_FACTOR:g} standard errors of the mean "
             f"difference (Welch), contradicted when it is that far the other way, within spread otherwise; "
             f"a row with fewer than {MIN_SEEDS} seeds gives 'not enough runs'. Of several pairs the decisive one "
             "is shown: the one that contradicts, or the one with the smallest margin. Report: a dash where the "
             "report has no number for a row (tau 4 appears only in its Figure 4)."]
    if not get_profile(profile).comparable:
        notes.append(f"The '{profile}' profile's runs say nothing about the report: these verdicts only show "
                     "that the check runs.")
    return render_table(frame, caption=f"The report's conclusions against our '{profile}' runs.", notes=notes,
                        formats={("Difference (points)", "report"): "{:+.2f}",
                                 ("Difference (points)", "ours (mean)"): "{:+.2f}"}, css_class="conclusions",
                        code_columns=[("", "rows compared")], wide_columns=[("", "the report concludes")])


def _margin(judged: tuple) -> float:
    """How far a pair goes the claimed way, in spreads (a pair without a spread sorts by its difference)."""
    diff, spread = judged[5], judged[6]
    return -math.inf if math.isnan(diff) else diff / spread if spread and not math.isnan(spread) else diff
