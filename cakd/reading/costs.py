"""What a benchmark file says, for the book's Performance page: the measured rates as tables, and the cost of the whole
of Table 1 estimated from them (every manifest run, the teacher-logit caches, the online alternative).

Measured and estimated numbers are kept apart: the tables of `measured_tables` are timings; `estimate_table1` is
arithmetic on them, and only for a profile comparable with the report (a smoke benchmark times tiny stand-in models, so
no hours are derived from it)."""
from __future__ import annotations

from typing import Any

import pandas as pd

from ..definitions.manifest import all_rows, teachers_used
from ..definitions.profiles import PROFILES, get_profile
from .tables import HtmlTable, render_table

TRAIN_IMAGES = 45_000            # the 45,000 / 5,000 split of CIFAR-100's training set (report section 4.1)
EVAL_IMAGES = 5_000 + 10_000     # validation and test, evaluated after every epoch


GPU_COUNTS = (1, 2, 4, 8)   # the estimate's machine sizes (python -m cakd reproduce --runs-per-gpu 1 on each)


def spread(seconds: list[float], gpus: int) -> float:
    """Wall time of independent runs on `gpus` GPUs, one run each at a time, the longest first (what the
    Ray scheduler does when every run is submitted at once)."""
    loads = [0.0] * gpus
    for s in sorted(seconds, reverse=True):
        loads[loads.index(min(loads))] += s
    return max(loads)


def estimate_table1(images_per_s: dict[str, float], teacher_images_per_s: dict[str, float],
                    eval_images_per_s: float, profile: str) -> dict[str, Any]:
    """Seconds to train every manifest run of `profile` and to build the teacher-logit caches it reads: each run trains
    its config's epochs (the maximum: early stopping can end it sooner) over TRAIN_IMAGES and evaluates EVAL_IMAGES
    after each; KD runs use the cached-KD rate whatever their number of teachers (a lookup costs next to nothing); the
    teachers are public checkpoints, used frozen."""
    get_profile(profile)
    for name in ("plain", "kd_cached"):
        if name not in images_per_s:
            raise ValueError(f"images_per_s has no {name!r} rate; it has {sorted(images_per_s)}")
    rows = all_rows()
    teachers = sorted(teachers_used(rows))
    if missing := [t for t in teachers if t not in teacher_images_per_s]:
        raise ValueError(f"teacher_images_per_s has no rate for teacher(s) {missing}; "
                         f"it has {sorted(teacher_images_per_s)}")
    runs, online = {}, {}
    for row in rows:
        epochs, names = row.config(profile).epochs, row.params.get("teachers", [])
        eval_s = epochs * EVAL_IMAGES / eval_images_per_s
        runs[row.id] = epochs * TRAIN_IMAGES / images_per_s["kd_cached" if names else "plain"] + eval_s
        # online alternative: the plain student step plus each teacher's forward pass, every step
        online[row.id] = epochs * TRAIN_IMAGES * (1 / images_per_s["plain"]
                                                  + sum(1 / teacher_images_per_s[n] for n in names)) + eval_s
    # teacher logits cached per training image: one when the teachers see the clean image (the authors' recipe),
    # every student view when they see the student's own (consistent teaching: 9 x 9 offsets x 2 flips = 162)
    views = max(c.views.count if c.teacher_input == "student_view" else 1
                for c in (row.config(profile) for row in rows if row.params.get("teachers")))
    passes = TRAIN_IMAGES * views + EVAL_IMAGES
    cache = {n: passes / teacher_images_per_s[n] for n in teachers}
    return {"profile": profile, "runs": len(runs), "student_runs_s": runs, "student_total_s": sum(runs.values()),
            "on_gpus_s": {n: sum(cache.values()) / n + spread(list(runs.values()), n) for n in GPU_COUNTS},
            "views_per_image": views, "cache_build_s": cache, "cache_build_total_s": sum(cache.values()),
            "cache_teacher_passes": passes * len(cache), "total_s": sum(runs.values()) + sum(cache.values()),
            "online_total_s": sum(online.values()),
            "online_teacher_passes": sum(row.config(profile).epochs * TRAIN_IMAGES * len(row.params.get("teachers", []))
                                         for row in rows)}


def estimate_basis(record: dict[str, Any]) -> str | None:
    """What an estimate from `record` would be worth, or None when none should be made (a stand-in profile)."""
    profile = record.get("profile")
    if profile not in PROFILES or not PROFILES[profile].comparable:
        return None
    if record.get("device") != "cuda":
        return ("an extrapolation from the full-size models timed on a CPU: an upper bound, not GPU time")
    return f"estimated from the rates measured on {record['machine']['device_name']}"


def measured_tables(record: dict[str, Any]) -> list[HtmlTable]:
    """The benchmark's timings: the four pipelines, their ratios (with the targets), the teachers' forward pass."""
    m, s = record["machine"], record["settings"]
    caption = (f"Measured: profile '{record['profile']}' on {m['device_name']} ({record['device']}), precision "
               f"{record['config']['precision']}, torch {m['torch']}, {m['threads']} threads, batch "
               f"{s['batch_size']}, median of {s['repeats']} x {s['steps']} steps, {record['created']}, commit "
               f"{record.get('commit') or 'not recorded'}, by {record.get('command') or 'python -m cakd bench'}.")
    pipelines = pd.DataFrame.from_records([
        {"pipeline": p.get("label", name), "images/s": p["images_per_s"],
         "teacher passes / image": p["teacher_passes_per_image"], "peak memory (MB)": p["peak_memory_mb"]}
        for name, p in sorted(record["pipelines"].items(), key=lambda item: item[1].get("label", item[0]))])
    ratios = pd.DataFrame.from_records([
        {"ratio": name, "value": value,
         "target": (f">= {record['targets'][name]['target']:g}: "
                    f"{'met' if record['targets'][name]['met'] else 'NOT met'}") if name in record["targets"] else ""}
        for name, value in record["ratios"].items()])
    teachers = pd.DataFrame.from_records([{"teacher (cache-build step)": n, "images/s": t["images_per_s"]}
                                          for n, t in record["teacher_forward"].items()])
    rate = "{:,.1f}".format
    return [render_table(pipelines, caption=caption, notes=[f"Peak memory: {record['memory_method']}."],
                         formats={"images/s": rate, "teacher passes / image": "{:g}", "peak memory (MB)": "{:,.0f}"}),
            render_table(ratios, caption="Measured: throughput ratios (targets are reported, never asserted)."),
            render_table(teachers, caption="Measured: one teacher's forward pass at the cache build's batch size.",
                         formats={"images/s": rate}, code_columns=["teacher (cache-build step)"])]


def estimate_table(record: dict[str, Any]) -> HtmlTable | None:
    """The whole-Table-1 estimate from `record`'s rates as a table, or None when estimate_basis says none."""
    basis = estimate_basis(record)
    if basis is None:
        return None
    profile = record["profile"]
    e = estimate_table1({n: p["images_per_s"] for n, p in record["pipelines"].items()},
                        {n: t["images_per_s"] for n, t in record["teacher_forward"].items()},
                        record["student_eval"]["images_per_s"], profile)
    views = "the un-augmented image" if e["views_per_image"] == 1 else f"{e['views_per_image']} views each"
    frame = pd.DataFrame.from_records([
        {"part": f"{e['runs']} student runs (each its config's maximum epochs x {TRAIN_IMAGES:,} images, "
                 f"evaluation after each epoch)", "hours": e["student_total_s"] / 3600},
        {"part": f"teacher-logit caches: {len(e['cache_build_s'])} teachers x ({TRAIN_IMAGES:,} training images, "
                 f"{views}, + {EVAL_IMAGES:,} validation and test images)", "hours": e["cache_build_total_s"] / 3600},
        {"part": "total, one GPU", "hours": e["total_s"] / 3600},
        *({"part": f"total on {n} GPUs (runs spread by Ray, caches split between them)",
           "hours": e["on_gpus_s"][n] / 3600} for n in GPU_COUNTS if n > 1),
        {"part": "for comparison: every KD run teaching online instead of from the caches",
         "hours": e["online_total_s"] / 3600}])
    return render_table(frame, caption=f"Estimated: the whole of Table 1 and the figure points, profile "
                                       f"'{profile}' ({basis}).", formats={"hours": "{:,.2f}"}, wide_columns=["part"],
                        notes=[f"Teacher forward passes: {e['cache_teacher_passes']:,} to build the caches, "
                               f"{e['online_teacher_passes']:,} to teach every KD run online."])
