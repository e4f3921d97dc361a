"""What the book prints: Table 1 regenerated from the registry, the inputs of Figures 2-4, rounded metrics,
and the tables of our choices (reproduction notes). Reads finished runs only: it never trains.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import pandas as pd

from . import manifest
from .config import (CHOICE_FIELDS, CHOICES, METHOD_TITLES, TEACHER_LABELS, TEACHERS, RunConfig, TeacherConfig,
                     profile_config)
from .manifest import Row
from .runs import RunResult, find_run

PROFILE_NOTES = {
    "paper": "CIFAR-100, full-size models, the report's setting",
    "smoke": "synthetic data and tiny models: a check that everything runs, NOT comparable with the report",
}

# The report's ambiguities and our other open choices, one note per RunConfig option (book: reproduction
# notes). The values themselves (default, alternatives, each profile's setting) are read from cakd.config.
AMBIGUITIES = ("weighting", "aggregation", "divide_by_k", "confidence_temperature", "m2_confidence", "m3_alpha")
OPTION_NOTES: dict[str, str] = {
    "weighting": "Methods 1-2: teacher weights w_k computed per sample (as CA-MKD's code does) or once per "
                 "batch from the batch-mean CE. The report's Eq. (3) indexes them per sample.",
    "aggregation": "Methods 1-2: the sum of weighted per-teacher KLs (Eq. 3) or one KL to the weighted mean "
                   "of the teacher logits (the wording of the report's Fig. 1). They differ in gradient.",
    "divide_by_k": "Methods 1-2: divide the KD term by the number of teachers K, as CA-MKD's code does. "
                   "The report's equations do not; it changes the scale of KD against CE.",
    "confidence_temperature": "Softmax temperature of the teacher confidences (weights, Method 2's conf, "
                              "Method 3's alpha): 1 (the report's formulas have no tau there) or tau.",
    "m2_confidence": "Method 2's batch confidence: the ensemble's top probability (the report's "
                     "'confidence') or its probability of the true class (its 'misclassifying' remark).",
    "m3_alpha": "Method 3's alpha: the batch mean of the chosen teachers' true-class probabilities, as the "
                "report says, or one alpha per sample.",
    "schedule": "Learning-rate schedule (the report names none): cosine decay to 0, or constant 1e-2.",
    "augment": "Training augmentation: zero-pad 4 + random crop + flip (162 views, which the logit cache "
               "enumerates exactly) or none.",
    "teacher_mode": "Where teacher logits come from: the exact 162-view cache (same numbers, no teacher "
                    "forward passes while training) or the live teachers on every batch.",
    "model_scale": "full = the report's architectures; tiny = small members of the same families (smoke).",
    "device": "auto = CUDA when available; not part of the run hash (it changes speed, not the method).",
}


def results_table(profile: str, seeds: int = 1) -> pd.DataFrame:
    """Table 1 regenerated: one row per manifest row, our mean over `seeds` seeds next to the report.

    Columns: label, ours, std (sample sd over seeds, NaN with one), n (seeds found), report, difference.
    A run that is not in the registry counts as missing (n smaller, NaN when none): nothing is invented.
    """
    _check_seeds(seeds)
    records = []
    for row in manifest.ROWS:
        accuracies = [r.accuracy for r in row_results(row, profile, seeds) if r is not None]
        ours = sum(accuracies) / len(accuracies) if accuracies else math.nan
        std = pd.Series(accuracies, dtype=float).std() if len(accuracies) > 1 else math.nan
        report = math.nan if row.report_acc is None else row.report_acc
        records.append({"id": row.id, "label": row.label, "ours": ours, "std": std, "n": len(accuracies),
                        "report": report, "difference": ours - report})
    return pd.DataFrame.from_records(records, index="id")


def style_table(table: pd.DataFrame) -> Any:
    """Table 1 for display: two decimals, a missing run written as 'missing' (std: '-' below two seeds)."""
    return (table.style.format("{:.2f}", subset=["ours", "report", "difference"], na_rep="missing")
            .format("{:.2f}", subset=["std"], na_rep="-"))


def table_caption(profile: str, seeds: int) -> str:
    """Says which profile produced the numbers and how many seeds (the caption of Table 1)."""
    _check_seeds(seeds)
    seed_note = ("one seed (seed 0), so no spread (std shows -)" if seeds == 1
                 else f"mean and sample standard deviation over {seeds} seeds (0-{seeds - 1})")
    return (f"Test accuracy (%) at the epoch of best validation accuracy. Profile '{profile}' "
            f"({PROFILE_NOTES[profile]}); {seed_note}. 'report' is the report's Table 1; "
            "'difference' = ours - report.")


def row_results(row: Row, profile: str, seeds: int = 1) -> list[RunResult | None]:
    """The finished runs of `row` for seeds 0..seeds-1 (None where missing)."""
    return [find_run(row.config(profile, seed)) for seed in range(seeds)]


def figure_runs(profile: str, figure: str) -> tuple[list[RunResult | None], list[str]]:
    """The seed-0 runs (None where missing) and labels of the Table 1 rows drawn in `figure` ('fig2'|'fig3')."""
    rows = [row for row in manifest.ROWS if row.figure == figure]
    if not rows:
        raise ValueError(f"figure={figure!r} has no rows; figures are "
                         f"{sorted({r.figure for r in manifest.ROWS if r.figure})}")
    return [find_run(row.config(profile)) for row in rows], [row.label for row in rows]


def sweep_points(profile: str, seeds: int = 1) -> list[dict[str, Any]]:
    """Figure 4's points: one per (temperature, seed), accuracy None where the run is missing."""
    _check_seeds(seeds)
    return [{"temperature": row.params["temperature"], "seed": seed,
             "accuracy": None if result is None else result.accuracy}
            for row in manifest.SWEEP for seed, result in enumerate(row_results(row, profile, seeds))]


def sweep_report(profile: str = "paper") -> dict[float, float] | None:
    """The report's accuracies at the sweep temperatures it lists; None unless `profile` is 'paper' (only
    paper-profile runs are comparable with them)."""
    if profile != "paper":
        return None
    return {row.params["temperature"]: row.report_acc for row in manifest.SWEEP if row.report_acc is not None}


def describe(config: RunConfig) -> str:
    """A short summary of a run's config: what the notebook will train (and its run id)."""
    teachers = ", ".join(TEACHER_LABELS[t] for t in config.teachers) or "none"
    base = profile_config(config.profile)
    changed = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
               if f.name not in ("profile", "method", "teachers")
               and getattr(config, f.name) != getattr(base, f.name)}
    lines = [f"{METHOD_TITLES[config.method]}, profile '{config.profile}', run id {config.run_id}",
             f"teachers: {teachers}",
             f"data: {config.dataset}, {config.epochs} epochs, batch {config.batch_size}, lr {config.lr:g}, "
             f"{config.schedule} schedule, seed {config.seed}"]
    if changed:
        lines.append("differs from the profile's defaults: " + ", ".join(f"{k}={v!r}" for k, v in changed.items()))
    return "\n".join(lines)


def final_metrics(result: RunResult) -> dict[str, float]:
    """The run's headline numbers rounded to 2 decimals (what notebooks print and golden tests compare)."""
    m = result.metrics
    return {"test_acc": round(m["test_acc"], 2), "best_val_acc": round(m["best_val_acc"], 2),
            "best_epoch": int(m["best_epoch"]), "last_test_acc": round(m["last_test_acc"], 2)}


def teacher_table(teachers: list[Any]) -> pd.DataFrame:
    """Fine-tuned teachers (cakd.teachers.Teacher): validation and test accuracy (%), rounded."""
    return pd.DataFrame.from_records(
        [{"teacher": TEACHER_LABELS[t.config.name], "timm name": t.config.name, "input size": t.config.input_size,
          "epochs": t.info["epochs"], "val_acc": round(t.info["best_val_acc"], 2),
          "test_acc": round(t.info["test_acc"], 2)} for t in teachers], index="teacher")


def run_teachers(result: RunResult) -> pd.DataFrame:
    """The teachers of a distillation run with their validation and test accuracy (%), rounded."""
    teachers = result.metrics.get("teachers", {})
    return pd.DataFrame.from_records(
        [{"teacher": TEACHER_LABELS[name], "val_acc": round(acc["val_acc"], 2), "test_acc": round(acc["test_acc"], 2)}
         for name, acc in teachers.items()], index="teacher", columns=["teacher", "val_acc", "test_acc"])


def teacher_configs(profile: str, teachers: list[str]) -> list[TeacherConfig]:
    """The fine-tuning configs of `teachers` under `profile` (the ones every student run of it shares)."""
    if isinstance(teachers, str) or not isinstance(teachers, (list, tuple)):   # papermill's `-p teachers resnet50`
        raise ValueError(f"teachers={teachers!r} must be a list of teacher names, e.g. ['resnet50'] "
                         f"(papermill: -y 'teachers: [resnet50]'); known teachers are {sorted(TEACHERS)}")
    unknown = [t for t in teachers if not isinstance(t, str) or t not in TEACHERS]
    if unknown or not teachers:
        raise ValueError(f"teachers={teachers!r}: give one or more of {sorted(TEACHERS)}")
    config = profile_config(profile)
    return [config.teacher_config(name) for name in teachers]


def describe_teachers(configs: list[TeacherConfig]) -> str:
    c = configs[0]
    return (f"profile '{c.profile}': {c.dataset} data, {c.epochs} epochs of AdamW (lr {c.lr:g}, weight decay "
            f"{c.weight_decay:g}, cosine), batch {c.batch_size}, ImageNet weights: {c.pretrained}, "
            f"{c.model_scale} models\n" + "\n".join(f"{TEACHER_LABELS[t.name]}: run id {t.run_id}, input "
                                                  f"{t.input_size}x{t.input_size}" for t in configs))


def options_table() -> pd.DataFrame:
    """Every option of the report's ambiguities and our open choices: default, alternatives, per-profile value."""
    default, profiles = RunConfig(), {name: profile_config(name) for name in ("paper", "smoke")}
    options = {**CHOICE_FIELDS, "divide_by_k": (False, True)}
    missing = sorted(set(options) - set(OPTION_NOTES))
    if missing:
        raise KeyError(f"cakd.report.OPTION_NOTES has no note for option(s) {missing}; add one")
    order = [*AMBIGUITIES, *(name for name in options if name not in AMBIGUITIES)]
    records = []
    for name in order:
        allowed = options[name]
        records.append({"option": name, "kind": "report ambiguity" if name in AMBIGUITIES else "our setting",
                        "default": getattr(default, name),
                        "alternatives": ", ".join(str(v) for v in allowed if v != getattr(default, name)),
                        **{f"{p} profile": getattr(c, name) for p, c in profiles.items()},
                        "what it decides": OPTION_NOTES[name]})
    return pd.DataFrame.from_records(records, index="option")


def profiles_table() -> pd.DataFrame:
    """The settings in which the two profiles differ from RunConfig's defaults (and from each other)."""
    default = RunConfig()
    configs = {name: profile_config(name) for name in ("paper", "smoke")}
    names = [f.name for f in dataclasses.fields(RunConfig) if f.name != "profile"
             and len({repr(getattr(c, f.name)) for c in [default, *configs.values()]}) > 1]
    return pd.DataFrame({"setting": names, **{f"{p} profile": [getattr(c, n) for n in names]
                                              for p, c in configs.items()}}).set_index("setting")


def choices_table() -> pd.DataFrame:
    """cakd.config.CHOICES: what the report leaves open and why we chose as we did."""
    return pd.DataFrame({"choice": list(CHOICES), "ours, and why": list(CHOICES.values())}).set_index("choice")


def _check_seeds(seeds: int) -> None:
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise ValueError(f"seeds={seeds!r} must be an integer >= 1 (seeds 0..seeds-1 are averaged)")
