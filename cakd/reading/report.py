"""What the book prints about results: Table 1 regenerated from the run registry next to the report's numbers and the
authors' re-run, the runs behind Figures 2-4, the reproduction notes' tables and texts, and the small tables the run
and teachers pages show. Reads finished runs only: it never trains, nor imports torch."""
from __future__ import annotations

import dataclasses
import math
import os
import statistics
from pathlib import Path

import pandas as pd

from ..definitions import authors, files, manifest, paths
from ..definitions import config as cfg
from ..definitions.manifest import Row
from ..definitions.networks import TEACHER_LABELS
from ..definitions.profiles import PROFILES, get_profile, profile_config
from ..definitions.registry import RunResult, find_run, registry_seeds
from .tables import HtmlTable, render_table

REPORT_SOURCE = ("Confidence Aware Ensemble Knowledge Distillation, AML course report, Sapienza University of "
                 "Rome, 2025: Table 1")
RESEED_COMMAND = "python -m cakd reproduce --profile {profile} --seeds N"


# ----------------------------------------------------------------------------- Table 1

def row_results(row: Row, profile: str, seeds: int | None = None) -> list[RunResult]:
    """The finished runs of `row` in the registry: seeds 0..seeds-1, or (seeds=None) every seed it has."""
    get_profile(profile)   # an unknown profile is an error, not an empty registry
    if seeds is not None and not cfg.is_count(seeds, 1):
        raise ValueError(f"seeds={seeds!r} must be an integer >= 1 (seeds 0..seeds-1 are read) or None "
                         "(every seed in the registry)")
    candidates = range(seeds) if seeds is not None else registry_seeds(profile)
    return [r for r in (find_run(row.config(profile, seed)) for seed in candidates) if r is not None]


def results_table(profile: str, seeds: int | None = None) -> pd.DataFrame:
    """Table 1 regenerated, a row per manifest Table 1 row: id, label, report, authors (their re-run), mean, std (sample
    sd over seeds, NaN below two), n (seeds found: a missing run lowers n, nothing is invented), difference (mean -
    report; NaN for a profile not comparable with the report, such as smoke), then each seed's accuracy ('seed N')."""
    note = get_profile(profile)
    records = []
    for row in manifest.ROWS:
        runs = row_results(row, profile, seeds)
        accuracies = [r.accuracy for r in runs]
        mean = statistics.fmean(accuracies) if accuracies else math.nan
        report = math.nan if row.report_acc is None else row.report_acc
        records.append({"id": row.id, "label": row.label, "report": report,
                        "authors": math.nan if row.authors_acc is None else row.authors_acc,
                        "mean": mean, "std": statistics.stdev(accuracies) if len(accuracies) > 1 else math.nan,
                        "n": len(accuracies), "difference": mean - report if note.comparable else math.nan,
                        **{f"seed {r.config.seed}": r.accuracy for r in runs}})
    return pd.DataFrame.from_records(records)


def table1_csv(profile: str, table: pd.DataFrame) -> Path:
    """`results_table`'s frame as results/<profile>/table1.csv (the results page links it)."""
    path = paths.results_home() / profile / "table1.csv"
    files.write_text(path, table.to_csv(index=False))
    return path


def downloads(csvs: dict[str, Path]) -> str:
    """Markdown: a download link per CSV file, relative to the book's run pages (where the results page lives)."""
    return "\n".join(f"- {{download}}`{name} <{os.path.relpath(path, paths.BOOK_RUNS)}>`"
                     for name, path in csvs.items())


def table1(profile: str, seeds: int | None = None, table: pd.DataFrame | None = None) -> HtmlTable:
    """Table 1 as the book shows it: grouped headers, fixed decimals, profile and n in the caption."""
    table = results_table(profile, seeds) if table is None else table
    note = get_profile(profile)
    frame = pd.DataFrame({
        ("", "Table 1 row"): table["label"], ("Reference", "report"): table["report"],
        ("Reference", "authors' re-run *"): table["authors"], ("Ours", "mean"): table["mean"],
        ("Ours", "std"): table["std"], ("Ours", "n"): table["n"], ("Difference", "ours - report"): table["difference"]})
    counts = sorted(set(table["n"]))
    seed_text = ("no finished run yet" if counts == [0] else f"{counts[0]} seed{'s' * (counts[0] > 1)} per row"
                 if len(counts) == 1 else f"{counts[0]} to {counts[-1]} seeds per row")
    caption = (f"Table 1. Test accuracy (%) at the epoch of best validation accuracy. Profile '{profile}': "
               f"{note.summary}. Ours: mean and sample standard deviation over the seeds found in the registry "
               f"({seed_text}; n = 0: not run yet).")
    notes = [f"* Authors' re-run: {authors.RERUN_SOURCE}. Report: {REPORT_SOURCE}.",
             "std needs n >= 2; a dash marks a missing value.",
             *(f"{row.label}: {row.note}" for row in manifest.ROWS if row.note)]
    if note.authors_code:
        notes.append(paper_formulas_note())
    if not note.comparable:
        notes.append(f"Difference not computed for the '{profile}' profile: its numbers come from stand-in data "
                     "and models, so a difference from the report would mean nothing.")
    return render_table(frame, caption=caption, notes=notes,
                        formats={("Difference", "ours - report"): "{:+.2f}", ("Ours", "n"): "{:d}"},
                        na_rep={("Ours", "mean"): "missing", ("Ours", "std"): "-"}, css_class="table1")


def seeds_summary(table: pd.DataFrame, profile: str) -> str:
    """Markdown: how many seeds each Table 1 row has in `profile`, and the command that adds seeds."""
    get_profile(profile)
    groups = table.groupby(table["n"].astype(int))["id"].agg(list).sort_index(ascending=False)
    parts = [f"{'no run' if n == 0 else f'{n} seed' + ('s' if n > 1 else '')}: {len(ids)} row"
             f"{'s' if len(ids) > 1 else ''} ({', '.join(f'`{i}`' for i in ids)})"
             for n, ids in groups.items()]
    return (f"Seeds per Table 1 row in the `{profile}` profile: " + "; ".join(parts) + ". Seeds 0..N-1 of every "
            f"row (finished runs are reused, so only the new seeds train): `{RESEED_COMMAND.format(profile=profile)}`.")


def paper_formulas_note() -> str:
    """One sentence: where the paper profile runs the authors' code rather than the report's equations."""
    topics = "; ".join(f.topic for f in authors.FACTS if f.methods)
    return (f"The paper profile runs the code behind Table 1 where it differs from the report's equations ({topics}); "
            "see the reproduction notes.")


def figure2_note() -> str:
    """Under Figure 2: the baseline curve's origin (the report's baseline was not made by the published code)."""
    return f"**The baseline.** {manifest.get_row('baseline').note}"


def figure_series(profile: str, figure: str, seeds: int | None = None) -> list[tuple[Row, list[RunResult]]]:
    """The manifest entries drawn in `figure` ('fig2', 'fig3', 'fig4') with their finished runs."""
    return [(row, row_results(row, profile, seeds)) for row in manifest.figure_rows(figure)]


# ----------------------------------------------------------------------------- reproduction notes

def options_table() -> pd.DataFrame:
    """Every option (config.OPTIONS): origin, readers, default, choices, what it does (per profile: profiles_table)."""
    return pd.DataFrame.from_records([
        {"option": o.name, "origin": o.origin, "read by": o.read_by(), "default": str(o.default),
         "choices": ", ".join(str(c) for c in o.choices) if o.choices else "", "what it does": o.doc}
        for o in cfg.OPTIONS.values()])


def profiles_table() -> pd.DataFrame:
    """The settings in which the profiles differ from RunConfig's defaults or from each other."""
    default = cfg.RunConfig()
    configs = {name: profile_config(name) for name in PROFILES}
    names = [f.name for f in dataclasses.fields(default) if f.name != "profile"
             and len({repr(getattr(c, f.name)) for c in [default, *configs.values()]}) > 1]
    return pd.DataFrame({"setting": names, **{p: [str(getattr(c, n)) for n in names] for p, c in configs.items()}})


def profile_notes_table() -> pd.DataFrame:
    """What each profile is and whether its numbers may be set against the report's."""
    return pd.DataFrame.from_records([
        {"profile": name, "what it is": p.summary, "compared with the report": "yes" if p.comparable else "no"}
        for name, p in PROFILES.items()])


def choices_table() -> pd.DataFrame:
    """What the report leaves open and we chose: the options whose origin is 'ours'."""
    ours = [o for o in cfg.OPTIONS.values() if o.origin == "ours"]
    return pd.DataFrame({"choice": [o.name for o in ours], "ours, and why": [o.doc for o in ours]})


def authors_code_text() -> str:
    """Markdown: each place the paper profile follows the authors' code (authors.FACTS), as a definition list (the
    report's formulas render as math; no column to cut off), with the paper profile's option values."""
    consistent = profile_config("consistent")
    values = lambda config, fact: ", ".join(f"`{k}={getattr(config, k)!r}`" for k in fact.settings)   # noqa: E731
    return "\n\n".join(
        f"**{f.topic}**\n: *The report*: {f.report}\n: *The authors' code*: {f.code}\n: *The `paper` profile*: "
        f"{values(profile_config('paper'), f)}; *`consistent`*: {values(consistent, f)}\n: *Effect*: {f.effect}"
        for f in authors.FACTS)


def source_choices_table() -> pd.DataFrame:
    """Where the sources disagree or the notebook is silent (authors.SOURCE_CHOICES): what the paper profile takes."""
    return pd.DataFrame.from_records([{"setting": c.topic, "the sources": c.sources,
                                       "the paper profile takes": c.chosen, "likely effect": c.effect}
                                      for c in authors.SOURCE_CHOICES])


BOOK_TABLES = {   # name -> (DataFrame function, code columns, wide columns); the {cakd-table} directive's names
    "options": (options_table, ("option",), ("what it does",)),
    "source-choices": (source_choices_table, (), ("the sources", "the paper profile takes", "likely effect")),
    "profiles": (profiles_table, ("setting",), ()),
    "profile-notes": (profile_notes_table, ("profile",), ("what it is",)),
    "choices": (choices_table, ("choice",), ("ours, and why",)),
}


BOOK_TEXTS = {   # name -> the text the {cakd-text} directive puts on a page (markdown), from its one source
    "authors-code": authors_code_text,
    "baseline-note": lambda: manifest.get_row("baseline").note,
    "paper-formulas": paper_formulas_note,
    "rerun-hours": lambda: f"The authors' README gives {authors.RERUN_HOURS}.",
}


def book_table(name: str) -> HtmlTable:
    """One of the reproduction notes' tables (BOOK_TABLES), rendered by the book's one table renderer."""
    if name not in BOOK_TABLES:
        raise ValueError(f"table={name!r} is unknown; tables are {sorted(BOOK_TABLES)}")
    make, code, wide = BOOK_TABLES[name]
    return render_table(make(), code_columns=code, wide_columns=wide)


# ----------------------------------------------------------------------------- run pages

def row_numbers(config: cfg.RunConfig) -> HtmlTable:
    """A run page's numbers: its manifest row's accuracies in the report and the authors' re-run, and ours over the
    seeds of that row in the registry (or, for a run of other parameters, this run alone)."""
    row, profile = manifest.find_row(config), get_profile(config.profile)
    runs = row_results(row, config.profile) if row else [r for r in [find_run(config)] if r]
    ours = [r.accuracy for r in runs]
    known = lambda value: math.nan if value is None else value   # noqa: E731
    frame = pd.DataFrame([{"the report": known(row and row.report_acc),
                           "the authors' re-run": known(row and row.authors_acc),
                           "ours (mean)": statistics.fmean(ours) if ours else math.nan,
                           "ours (std)": statistics.stdev(ours) if len(ours) > 1 else math.nan, "seeds": len(ours)}])
    what = (f"{'Table 1 row' if row.table1 else 'figure point'} {row.id}" if row else
            "this run (its parameters are no manifest row's)")
    notes = [] if profile.comparable else [f"Ours: {profile.banner}."]
    return render_table(frame, caption=f"Test accuracy (%) at the epoch of best validation accuracy: {what}, profile "
                                       f"'{config.profile}'.", formats={"seeds": "{:d}"}, notes=notes)


def run_teachers(result: RunResult) -> HtmlTable:
    """The teachers of a distillation run with their accuracy (%) on the clean validation and test images."""
    return _teacher_accuracy(result.metrics.get("teachers", {}))


def teachers_accuracy_table(accuracy: dict[str, float]) -> HtmlTable:
    """`notebook.teacher_accuracy`'s {'<teacher>.val_acc': %, ...} as one row per teacher."""
    names = dict.fromkeys(key.rsplit(".", 1)[0] for key in accuracy)
    return _teacher_accuracy({n: {split: accuracy[f"{n}.{split}"] for split in ("val_acc", "test_acc")} for n in names})


def _teacher_accuracy(by_teacher: dict[str, dict[str, float]]) -> HtmlTable:
    return render_table(pd.DataFrame.from_records(
        [(TEACHER_LABELS[name], acc["val_acc"], acc["test_acc"]) for name, acc in by_teacher.items()],
        columns=["teacher", "validation accuracy (%)", "test accuracy (%)"]))


def ties_table(ties: dict[str, dict[str, float]]) -> HtmlTable:
    """`notebook.method3_ties`: per Method 3 teacher set, the training samples whose teacher depends on the order."""
    if not ties:
        return HtmlTable.message("No Method 3 row reads only the teachers of this page, so there are no ties to "
                                 "count (run a Method 3 row, e.g. --rows m3_drv, to measure them).")
    frame = pd.DataFrame.from_records([
        {"teachers (in order)": names, "training samples": int(t["samples"]),
         "tied (%)": t["tied_pct"], "tied at p = 1.0 (%)": t["tied_at_1_pct"]} for names, t in ties.items()])
    return render_table(frame, formats={"training samples": "{:,}", "tied (%)": "{:.2f}",
                                        "tied at p = 1.0 (%)": "{:.2f}"}, code_columns=["teachers (in order)"],
                        notes=["Tied: two or more teachers share the highest true-class probability (temperature 1), "
                               "so Method 3 takes the first one listed; a view of an image counts as a sample when "
                               "the teachers see the student's views."])
