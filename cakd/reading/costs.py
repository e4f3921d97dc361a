"""What a benchmark file says, for the book's Performance page. `measured_tables` are its timings: the rates per Table 1
row, ours against the authors' pipeline. `estimate_table1` is arithmetic on them, kept apart: the cost of every manifest
run and of the teacher-logit caches, made only for a profile comparable with the report (a smoke benchmark times tiny
stand-in models). A file of the first format (schema 2) timed one row, the heaviest: it reads as that row alone."""
from __future__ import annotations

from typing import Any

import pandas as pd

from ..definitions.manifest import BENCH_REFERENCE, ROWS, Row, all_rows, get_row
from ..definitions.profiles import PROFILES, get_profile
from .tables import HtmlTable, render_table

TRAIN_IMAGES = 45_000            # the 45,000 / 5,000 split of CIFAR-100's training set (report section 4.1)
EVAL_IMAGES = 5_000 + 10_000     # validation after every epoch, test at most as often (a new best, the last)
GPU_COUNTS = (1, 2, 4, 8)        # the estimate's machine sizes (python -m cakd reproduce --runs-per-gpu 1 on each)
NAMES = {"ours": "ours", "online": "ours, teachers online", "plain": "student alone", "kd": "KD, cached (ours)",
         "kd_eager": "KD, cached, eager step"}


def row_rates(record: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per timed Table 1 row: images/s of each pipeline timed for it (ours, authors_2, authors_4, online)."""
    if record.get("schema", 2) >= 3:
        return {rid: {n: p["images_per_s"] for n, p in r["pipelines"].items()} for rid, r in record["rows"].items()}
    p, workers = record["pipelines"], record["settings"]["loader_workers"]
    names = {"kd_cached": "ours", "authors": f"authors_{workers}", "kd_online": "online"}
    return {BENCH_REFERENCE: {new: p[old]["images_per_s"] for old, new in names.items() if old in p}}


def reference(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The reference pipelines: the plain student step, the heaviest row's KD step, and that step eagerly."""
    if record.get("schema", 2) >= 3:
        return record["reference"]["pipelines"]
    p, names = record["pipelines"], {"plain": "plain", "kd_cached": "kd", "kd_cached_eager": "kd_eager"}
    return {new: p[old] for old, new in names.items() if old in p}


def spread(seconds: list[float], gpus: int) -> float:
    """Wall time of runs on `gpus` GPUs, one each at a time, longest first (Ray's order when all start at once)."""
    loads = [0.0] * gpus
    for s in sorted(seconds, reverse=True):
        loads[loads.index(min(loads))] += s
    return max(loads)


def timed_row(row: Row) -> Row:
    """The Table 1 row timed for `row`: itself, or its method and teachers' (a figure point's alpha or tau is free)."""
    return next(r for r in ROWS if r.params["method"] == row.params["method"]
                and r.params.get("teachers") == row.params.get("teachers"))


def estimate_table1(record: dict[str, Any]) -> dict[str, Any]:
    """Seconds to train every manifest run of the record's profile and to build the teacher-logit caches it reads: each
    run its config's epochs (the maximum: early stopping can end it sooner) over TRAIN_IMAGES, EVAL_IMAGES evaluated
    after each, at its row's measured rate (untimed rows, named in `assumed`, take the heaviest row's rate, or the plain
    step's without teachers); the same runs in the authors' pipeline at 2 workers where it was timed."""
    profile = get_profile(record["profile"]).name
    rates, plain = row_rates(record), reference(record)["plain"]["images_per_s"]
    eval_rate, teacher_rates = record["student_eval"]["images_per_s"], record["teacher_forward"]
    runs, authors, assumed = {}, {}, []
    for row in all_rows():
        timed, config = rates.get(timed_row(row).id, {}), row.config(profile)
        if (rate := timed.get("ours")) is None:
            assumed.append(row.id)
            rate = rates[BENCH_REFERENCE]["ours"] if config.teachers else plain
        runs[row.id] = config.epochs * (TRAIN_IMAGES / rate + EVAL_IMAGES / eval_rate)
        if "authors_2" in timed:
            authors[row.id] = config.epochs * TRAIN_IMAGES / timed["authors_2"]
    configs = [row.config(profile) for row in all_rows() if row.params.get("teachers")]
    # logits cached per training image: one when the teachers see the clean image (the authors' recipe), every
    # student view when they see the student's own (consistent teaching: 9 x 9 offsets x 2 flips = 162)
    views = max(c.views.count if c.teacher_input == "student_view" else 1 for c in configs)
    passes = TRAIN_IMAGES * views + EVAL_IMAGES
    cache = {n: passes / teacher_rates[n]["images_per_s"] for n in sorted({t for c in configs for t in c.teachers})}
    return {"profile": profile, "runs": len(runs), "student_runs_s": runs, "student_total_s": sum(runs.values()),
            "on_gpus_s": {n: sum(cache.values()) / n + spread(list(runs.values()), n) for n in GPU_COUNTS},
            "views_per_image": views, "cache_build_s": cache, "cache_build_total_s": sum(cache.values()),
            "cache_teacher_passes": passes * len(cache), "total_s": sum(runs.values()) + sum(cache.values()),
            "authors_runs_s": authors, "assumed": assumed}


def estimate_basis(record: dict[str, Any]) -> str | None:
    """What an estimate from `record` would be worth, or None when none should be made (a stand-in profile)."""
    profile = record.get("profile")
    if profile not in PROFILES or not PROFILES[profile].comparable:
        return None
    if record.get("device") != "cuda":
        return "an extrapolation from the full-size models timed on a CPU: an upper bound, not GPU time"
    return f"estimated from the rates measured on {record['machine']['device_name']}"


def measured_tables(record: dict[str, Any]) -> list[HtmlTable]:
    """The benchmark's timings: per row, ours against the authors' pipeline (or online teaching); the references
    (the KD overhead, what the graph saves), with the profile's targets; the teachers' forward pass."""
    m, s = record["machine"], record["settings"]
    caption = (f"Measured: profile '{record['profile']}' on {m['device_name']} ({record['device']}), precision "
               f"{record['config']['precision']}, torch {m['torch']}, {m['threads']} threads, batch "
               f"{s['batch_size']}, median of {s['repeats']} x {s['steps']} steps, {record['created']}, commit "
               f"{record.get('commit') or 'not recorded'}, by {record.get('command') or 'python -m cakd bench'}.")
    rates = row_rates(record)
    columns = list(dict.fromkeys(name for r in rates.values() for name in r))
    label = lambda n: NAMES.get(n, n.replace("authors_", "authors', ") + " workers")   # noqa: E731
    frame = pd.DataFrame.from_records([
        {"row": get_row(rid).label, **{f"{label(n)} (img/s)": r.get(n) for n in columns},
         **{f"ours / {label(n)}": r["ours"] / r[n] if n in r else None for n in columns if n != "ours"}}
        for rid, r in rates.items()])
    ref = {name: pipeline["images_per_s"] for name, pipeline in reference(record).items()}
    ratios = {"KD/plain": ("kd", "plain"), "graphed/eager": ("kd", "kd_eager")}
    targets = get_profile(record["profile"]).bench_targets
    refs = pd.DataFrame.from_records([
        {"ratio": f"{name} ({get_row(BENCH_REFERENCE).label})", "value": ref[a] / ref[b],
         "target": f">= {targets[name]:g}" if name in targets else ""}
        for name, (a, b) in ratios.items() if a in ref and b in ref])
    teachers = pd.DataFrame.from_records([{"teacher (cache-build step)": n, "images/s": t["images_per_s"]}
                                          for n, t in record["teacher_forward"].items()])
    rate = "{:,.1f}".format
    return [render_table(frame, caption=caption, formats={c: rate if "img/s" in c else "{:.2f}x" for c in frame.columns
                                                          if c != "row"},
                         notes=[f"Peak memory: {record['memory_method']}.", *(
                             f"Target, reported and never asserted: {n} >= {t:g} on every row."
                             for n, t in targets.items() if n.startswith("ours/"))]),
            render_table(refs, caption="Measured: the KD step against the plain student step, and the graphed step "
                                       "against the same step run eagerly.", formats={"value": "{:.2f}x"}),
            render_table(teachers, caption="Measured: one teacher's forward pass at the cache build's batch size.",
                         formats={"images/s": rate}, code_columns=["teacher (cache-build step)"])]


def estimate_table(record: dict[str, Any]) -> HtmlTable | None:
    """The whole-Table-1 estimate from `record`'s rates as a table, or None when estimate_basis says none."""
    if (basis := estimate_basis(record)) is None:
        return None
    e = estimate_table1(record)
    views = "the un-augmented image" if e["views_per_image"] == 1 else f"{e['views_per_image']} views each"
    parts = [
        (f"{e['runs']} student runs (each its config's maximum epochs x {TRAIN_IMAGES:,} images, evaluation after "
         "each epoch)", e["student_total_s"]),
        (f"teacher-logit caches: {len(e['cache_build_s'])} teachers x ({TRAIN_IMAGES:,} training images, {views}, "
         f"+ {EVAL_IMAGES:,} validation and test images)", e["cache_build_total_s"]),
        ("total, one GPU", e["total_s"]),
        *((f"total on {n} GPUs (runs spread by Ray, caches split between them)", e["on_gpus_s"][n])
          for n in GPU_COUNTS if n > 1)]
    if len(e["authors_runs_s"]) == e["runs"]:
        parts.append(("for comparison: the same runs' training steps in the authors' pipeline at 2 workers",
                      sum(e["authors_runs_s"].values())))
    notes = [f"Teacher forward passes to build the caches: {e['cache_teacher_passes']:,}."]
    if e["assumed"]:
        notes.append(f"Not timed, so at the heaviest row's rate (the plain step's without teachers): "
                     f"{', '.join(e['assumed'])}.")
    frame = pd.DataFrame([{"part": part, "hours": seconds / 3600} for part, seconds in parts])
    return render_table(frame, caption=f"Estimated: the whole of Table 1 and the figure points, profile "
                                       f"'{e['profile']}' ({basis}).", formats={"hours": "{:,.2f}"},
                        wide_columns=["part"], notes=notes)
