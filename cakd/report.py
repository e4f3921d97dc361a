"""What the book prints about results: Table 1 regenerated from the run registry next to the report's numbers and the
authors' re-run, the runs behind Figures 2-4, the profile notes, the reproduction notes' tables and texts, and the small
summaries the run pages print. Reads finished runs only: it never trains, nor imports torch."""
from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass

import pandas as pd

from . import authors, manifest
from . import config as cfg
from .manifest import Row
from .registry import RunResult, find_run, registry_seeds
from .tables import HtmlTable, render_table

REPORT_SOURCE = ("Confidence Aware Ensemble Knowledge Distillation, AML course report, Sapienza University of "
                 "Rome, 2025: Table 1")
RESEED_COMMAND = "python -m cakd reproduce --profile {profile} --seeds N"


@dataclass(frozen=True)
class ProfileNote:
    summary: str        # what the profile is, one sentence (captions, the profiles table)
    comparable: bool    # its accuracies may be set against the report's (the Difference column)
    banner: str         # the label every figure of the profile carries ("" for the authors' recipe)


PROFILE_NOTES: dict[str, ProfileNote] = {
    "paper": ProfileNote(
        "the authors' recipe as their public code runs it: CIFAR-100, MobileNetV2 trained at 224x224, the public "
        "CIFAR-100 teacher checkpoints, AdamW lr 0.01 with cosine decay, early stopping, one GPU", True, ""),
    "consistent": ProfileNote(
        "ours, not the report's: the same rows with a 32x32 student taught consistently (Beyer et al.) through "
        "an exact 162-view teacher-logit cache, the direction the report leaves for future work", True,
        "consistent profile: our recipe (32x32 student, consistent teaching), not the report's"),
    "smoke": ProfileNote(
        "an offline CPU stand-in: synthetic data, tiny models, a few epochs; it checks that everything runs, "
        "and its numbers are NOT comparable with the report", False,
        "smoke profile: synthetic data and tiny models, not comparable with the report"),
}


def profile_names() -> list[str]:
    """The profiles cakd.config defines."""
    return list(cfg.PROFILES)


def profile_note(profile: str) -> ProfileNote:
    """The note of `profile`: a ValueError for a profile cakd.config does not define or this module has no note for."""
    names = profile_names()
    if not isinstance(profile, str) or profile not in names:
        raise ValueError(f"profile={profile!r} is not one of {names}")
    if profile not in PROFILE_NOTES:
        raise ValueError(f"profile {profile!r} has no entry in cakd.report.PROFILE_NOTES; add one "
                         "(what it is, whether it is comparable with the report, its figure label)")
    return PROFILE_NOTES[profile]


# ----------------------------------------------------------------------------- Table 1

def row_results(row: Row, profile: str, seeds: int | None = None) -> list[RunResult]:
    """The finished runs of `row` in the registry: seeds 0..seeds-1, or (seeds=None) every seed it has."""
    if seeds is not None and (not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1):
        raise ValueError(f"seeds={seeds!r} must be an integer >= 1 (seeds 0..seeds-1 are read) or None "
                         "(every seed in the registry)")
    candidates = range(seeds) if seeds is not None else registry_seeds(profile)
    return [r for r in (find_run(row.config(profile, seed)) for seed in candidates) if r is not None]


def results_table(profile: str, seeds: int | None = None) -> pd.DataFrame:
    """Table 1 regenerated: one row per manifest Table 1 row. Columns: id, label, report (the report's Table 1), authors
    (their re-run, cakd.authors.RERUN_SOURCE), mean, std (sample sd over seeds, NaN below two), n (seeds found),
    difference (mean - report; NaN for a profile that is not comparable with the report, such as smoke). A missing run
    lowers n: nothing is invented."""
    note = profile_note(profile)
    records = []
    for row in manifest.ROWS:
        accuracies = [r.accuracy for r in row_results(row, profile, seeds)]
        mean = statistics.fmean(accuracies) if accuracies else math.nan
        report = math.nan if row.report_acc is None else row.report_acc
        records.append({"id": row.id, "label": row.label, "report": report,
                        "authors": math.nan if row.authors_acc is None else row.authors_acc,
                        "mean": mean, "std": statistics.stdev(accuracies) if len(accuracies) > 1 else math.nan,
                        "n": len(accuracies), "difference": mean - report if note.comparable else math.nan})
    return pd.DataFrame.from_records(records)


def table1(profile: str, seeds: int | None = None, table: pd.DataFrame | None = None) -> HtmlTable:
    """Table 1 as the book shows it: grouped headers, fixed decimals, profile and n in the caption."""
    table = results_table(profile, seeds) if table is None else table
    note = profile_note(profile)
    frame = pd.DataFrame({
        ("", "Table 1 row"): table["label"], ("Reference", "report"): table["report"],
        ("Reference", "authors' re-run *"): table["authors"], ("Ours", "mean"): table["mean"],
        ("Ours", "std"): table["std"], ("Ours", "n"): table["n"], ("Difference", "ours - report"): table["difference"]})
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    counts = sorted(set(table["n"]))
    seed_text = ("no finished run yet" if counts == [0] else f"{counts[0]} seed{'s' * (counts[0] > 1)} per row"
                 if len(counts) == 1 else f"{counts[0]} to {counts[-1]} seeds per row")
    caption = (f"Table 1. Test accuracy (%) at the epoch of best validation accuracy. Profile '{profile}': "
               f"{note.summary}. Ours: mean and sample standard deviation over the seeds found in the registry "
               f"({seed_text}; n = 0: not run yet).")
    notes = [f"* Authors' re-run: {authors.RERUN_SOURCE}. Report: {REPORT_SOURCE}.",
             "std needs n >= 2; a dash marks a missing value.",
             *(f"{row.label}: {row.note}" for row in manifest.ROWS if row.note)]
    if profile == "paper":
        notes.append(paper_formulas_note())
    if not note.comparable:
        notes.append(f"Difference not computed for the '{profile}' profile: its numbers come from stand-in data "
                     "and models, so a difference from the report would mean nothing.")
    return render_table(frame, caption=caption, notes=notes,
                        formats={("Difference", "ours - report"): "{:+.2f}", ("Ours", "n"): "{:d}"},
                        na_rep={("Ours", "mean"): "missing", ("Ours", "std"): "-"}, css_class="table1")


def seeds_summary(table: pd.DataFrame, profile: str) -> str:
    """Markdown: how many seeds each Table 1 row has in `profile`, and the command that adds seeds."""
    profile_note(profile)
    groups: dict[int, list[str]] = {}
    for row_id, n in zip(table["id"], table["n"]):
        groups.setdefault(int(n), []).append(row_id)
    parts = [f"{'no run' if n == 0 else f'{n} seed' + ('s' if n > 1 else '')}: {len(ids)} row"
             f"{'s' if len(ids) > 1 else ''} ({', '.join(f'`{i}`' for i in ids)})"
             for n, ids in sorted(groups.items(), reverse=True)]
    return (f"Seeds per Table 1 row in the `{profile}` profile: " + "; ".join(parts) + ". Seeds 0..N-1 of every "
            f"row (finished runs are reused, so only the new seeds train): `{RESEED_COMMAND.format(profile=profile)}`.")


def paper_formulas_note() -> str:
    """One sentence: where the paper profile runs the authors' code rather than the report's equations."""
    topics = "; ".join(f.topic for f in authors.FACTS if f.settings)
    return (f"The paper profile runs the code behind Table 1 where it differs from the report's equations ({topics}); "
            "see the reproduction notes.")


def figure2_note() -> str:
    """Under Figure 2: the baseline curve's origin (the report's baseline was not made by the published code)."""
    return f"**The baseline.** {manifest.get_row('baseline').note}"


def figure_series(profile: str, figure: str, seeds: int | None = None) -> list[tuple[Row, list[RunResult]]]:
    """The manifest entries drawn in `figure` ('fig2', 'fig3', 'fig4') with their finished runs."""
    profile_note(profile)
    return [(row, row_results(row, profile, seeds)) for row in manifest.figure_rows(figure)]


# ----------------------------------------------------------------------------- reproduction notes

def options_table() -> pd.DataFrame:
    """Every option (cakd.config.OPTIONS): origin, readers, default, choices, each profile's value, what it does."""
    profiles = {name: cfg.profile_config(name) for name in profile_names()}
    return pd.DataFrame.from_records([
        {"option": o.name, "origin": o.origin, "read by": o.read_by(), "default": str(o.default),
         "choices": ", ".join(str(c) for c in o.choices) if o.choices else "",
         **{p: str(getattr(c, o.name)) for p, c in profiles.items()}, "what it does": o.doc}
        for o in cfg.OPTIONS.values()])


def profiles_table() -> pd.DataFrame:
    """The settings in which the profiles differ from RunConfig's defaults or from each other."""
    default = cfg.RunConfig()
    configs = {name: cfg.profile_config(name) for name in profile_names()}
    names = [f.name for f in dataclasses.fields(default) if f.name != "profile"
             and len({repr(getattr(c, f.name)) for c in [default, *configs.values()]}) > 1]
    return pd.DataFrame({"setting": names, **{p: [str(getattr(c, n)) for n in names] for p, c in configs.items()}})


def profile_notes_table() -> pd.DataFrame:
    """What each profile is and whether its numbers may be set against the report's."""
    return pd.DataFrame.from_records([
        {"profile": name, "what it is": profile_note(name).summary,
         "compared with the report": "yes" if profile_note(name).comparable else "no"}
        for name in profile_names()])


def choices_table() -> pd.DataFrame:
    """What the report leaves open and we chose: the options whose origin is 'ours'."""
    ours = [o for o in cfg.OPTIONS.values() if o.origin == "ours"]
    return pd.DataFrame({"choice": [o.name for o in ours], "ours, and why": [o.doc for o in ours]})


def authors_code_table() -> pd.DataFrame:
    """Where the paper profile follows the authors' code (cakd.authors.FACTS), next to the report and to the
    consistent profile's value, with each difference's effect."""
    paper, consistent = cfg.profile_config("paper"), cfg.profile_config("consistent")

    def values(config: cfg.RunConfig, fact: authors.CodeFact, otherwise: str) -> str:
        return ", ".join(f"{k} {getattr(config, k)!r}" for k in fact.settings) or otherwise

    return pd.DataFrame.from_records([
        {"topic": f.topic, "the report": f.report, "the authors' code (notebook cells)": f.code,
         "paper profile": values(paper, f, "as the code"),
         "consistent profile (ours)": values(consistent, f, "the same"), "effect": f.effect} for f in authors.FACTS])


BOOK_TABLES = {   # name -> (DataFrame function, code columns, wide columns); the {cakd-table} directive's names
    "options": (options_table, ("option",), ("what it does",)),
    "authors-code": (authors_code_table, (), ("the authors' code (notebook cells)", "effect")),
    "profiles": (profiles_table, ("setting",), ()),
    "profile-notes": (profile_notes_table, ("profile",), ("what it is",)),
    "choices": (choices_table, ("choice",), ("ours, and why",)),
}


BOOK_TEXTS = {   # name -> the text the {cakd-text} directive puts on a page (markdown), from its one source
    "baseline-note": lambda: manifest.get_row("baseline").note,
    "paper-formulas": lambda: paper_formulas_note(),
    "rerun-hours": lambda: f"The authors' README gives {authors.RERUN_HOURS}.",
}


def book_table(name: str) -> HtmlTable:
    """One of the reproduction notes' tables (BOOK_TABLES), rendered by the book's one table renderer."""
    if name not in BOOK_TABLES:
        raise ValueError(f"table={name!r} is unknown; tables are {sorted(BOOK_TABLES)}")
    make, code, wide = BOOK_TABLES[name]
    return render_table(make(), code_columns=code, wide_columns=wide)


# ----------------------------------------------------------------------------- run pages

def run_teachers(result: RunResult) -> HtmlTable:
    """The teachers of a distillation run with their accuracy (%) on the clean validation and test images."""
    return _teacher_accuracy(result.metrics.get("teachers", {}))


def teachers_accuracy_table(accuracy: dict[str, float]) -> HtmlTable:
    """`notebook.teacher_accuracy`'s {'<teacher>.val_acc': %, ...} as one row per teacher."""
    names = dict.fromkeys(key.rsplit(".", 1)[0] for key in accuracy)
    return _teacher_accuracy({n: {split: accuracy[f"{n}.{split}"] for split in ("val_acc", "test_acc")} for n in names})


def _teacher_accuracy(by_teacher: dict[str, dict[str, float]]) -> HtmlTable:
    return render_table(pd.DataFrame.from_records(
        [(cfg.TEACHER_LABELS[name], acc["val_acc"], acc["test_acc"]) for name, acc in by_teacher.items()],
        columns=["teacher", "validation accuracy (%)", "test accuracy (%)"]))


def ties_table(ties: dict[str, dict[str, float]]) -> HtmlTable:
    """`notebook.method3_ties`: per Method 3 teacher set, the training samples whose teacher depends on the order."""
    frame = pd.DataFrame.from_records([
        {"teachers (in order)": names, "training samples": int(t["samples"]),
         "tied (%)": t["tied_pct"], "tied at p = 1.0 (%)": t["tied_at_1_pct"]} for names, t in ties.items()])
    return render_table(frame, formats={"training samples": "{:,}", "tied (%)": "{:.2f}",
                                        "tied at p = 1.0 (%)": "{:.2f}"}, code_columns=["teachers (in order)"],
                        notes=["Tied: two or more teachers share the highest true-class probability (temperature 1), "
                               "so Method 3 takes the first one listed; a view of an image counts as a sample when "
                               "the teachers see the student's views."])


# ----------------------------------------------------------------------------- the table of contents

RUN_PAGES = ("teachers",)   # run pages that are no manifest row (written by `python -m cakd reproduce`)
TOC_HEADER = ("# Generated from cakd/manifest.py by `python -m cakd notebooks`: do not edit by hand "
              "(a test compares).\n"
              "# book/runs/<id> pages are written by `python -m cakd reproduce` (a placeholder until a row has run).\n")


def toc_parts() -> list[tuple[str, list[str]]]:
    """(caption, page files) of every part of the book, in reading order."""
    points = manifest.FIGURE_POINTS
    fig2 = [row.id for row in points if "fig2" in row.figures]
    fig4 = [row.id for row in points if "fig4" in row.figures]
    if other := [row.id for row in points if row.id not in fig2 + fig4]:
        raise ValueError(f"figure point(s) {other} belong to neither Figure 2 nor Figure 4; give the book a part "
                         "for them in cakd.report.toc_parts")
    runs = lambda ids: [f"book/runs/{i}" for i in ids]
    return [("The report and this book", ["book/method", "book/reproduction"]),
            ("Results", ["book/runs/results", "book/performance"]),
            ("Runs: Table 1 rows", runs([*RUN_PAGES, *(row.id for row in manifest.ROWS)])),
            ("Runs: Figure 2 points (alpha)", runs(fig2)),
            ("Runs: Figure 4 points (temperature)", runs(fig4)),
            ("Reproduce", ["book/reproduce", "book/references"])]


def render_toc() -> str:
    """_toc.yml's text (jupyter-book's jb-book format)."""
    lines = [TOC_HEADER.rstrip("\n"), "format: jb-book", "root: book/intro", "parts:"]
    for caption, pages in toc_parts():
        lines += [f'  - caption: "{caption}"', "    chapters:", *(f"      - file: {page}" for page in pages)]
    return "\n".join(lines) + "\n"
