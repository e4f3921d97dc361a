"""Table 1, the conclusions check, the figures and the cost model, on hand-made registries (nothing trains)."""
from __future__ import annotations

import math
import re

import pandas as pd
import pytest

from cakd.definitions.profiles import PROFILES
from cakd.reading import costs, plots, report

from cakd.definitions import files, manifest, paths
from cakd.reading.conclusions import CONCLUSIONS, Conclusion, check_conclusions, conclusions_table, judge, judge_pair
from cakd.definitions.registry import find_run, run_folder
from cakd.reading.tables import render_table


def write_run(row_id: str, profile: str, seed: int, accuracy: float, epochs: int = 3) -> None:
    """A finished run in the registry as load_or_train leaves it: config.json, history.csv, metrics.json."""
    config = manifest.get_row(row_id).config(profile, seed)
    folder = run_folder(config)
    history = "epoch,val_acc,test_acc\n" + "".join(f"{e},{accuracy - epochs + e},{accuracy - epochs + e}\n"
                                                   for e in range(1, epochs + 1))
    files.write_json(folder / "config.json", config.to_dict())
    files.write_text(folder / "history.csv", history)
    files.write_json(folder / "metrics.json", {"test_acc": accuracy, "best_val_acc": accuracy, "best_epoch": epochs,
                                               "last_test_acc": accuracy})


def test_written_runs_are_found_by_the_registry():
    write_run("baseline", "smoke", 0, 50.0)
    assert find_run(manifest.get_row("baseline").config("smoke", 0)).accuracy == 50.0


def test_results_table_averages_the_seeds_found_and_counts_them():
    write_run("baseline", "paper", 0, 66.0)
    write_run("baseline", "paper", 1, 68.0)
    write_run("kd_vit", "paper", 0, 70.0)
    table = report.results_table("paper").set_index("id")
    # baseline: mean (66 + 68) / 2 = 67, sample sd sqrt(((-1)^2 + 1^2) / 1) = sqrt(2); report 66.29
    assert table.loc["baseline", "n"] == 2
    assert table.loc["baseline", "mean"] == pytest.approx(67.0)
    assert table.loc["baseline", "std"] == pytest.approx(math.sqrt(2))
    assert table.loc["baseline", "difference"] == pytest.approx(67.0 - 66.29)
    assert table.loc["baseline", "authors"] == pytest.approx(69.84)
    assert table.loc["kd_vit", "n"] == 1 and math.isnan(table.loc["kd_vit", "std"])
    assert table.loc["m1_drv", "n"] == 0 and math.isnan(table.loc["m1_drv", "mean"])
    assert list(table.index) == [row.id for row in manifest.ROWS]


def test_results_table_with_seeds_reads_only_seeds_below_it():
    write_run("baseline", "paper", 0, 66.0)
    write_run("baseline", "paper", 3, 80.0)
    assert report.results_table("paper", seeds=1).set_index("id").loc["baseline", "n"] == 1
    assert report.results_table("paper").set_index("id").loc["baseline", "mean"] == pytest.approx(73.0)


def test_smoke_table_has_no_difference_and_says_why():
    write_run("baseline", "smoke", 0, 50.0)
    table = report.results_table("smoke")
    assert table["difference"].isna().all()
    html = report.table1("smoke", table=table).html
    assert "Difference not computed for the &#x27;smoke&#x27; profile" in html


def test_table1_html_has_grouped_headers_signed_differences_and_no_index():
    write_run("baseline", "paper", 0, 67.5)
    html = report.table1("paper").html
    assert re.search(r'<th [^>]*colspan="2"[^>]*>Reference</th>', html)
    assert re.search(r'<th [^>]*colspan="3"[^>]*>Ours</th>', html)
    assert re.search(r'<td [^>]*class="[^"]*\bnum\b[^"]*" >\+1\.21</td>', html)    # 67.50 - 66.29, signed
    assert "row_heading" not in html and "Profile &#x27;paper&#x27;" in html   # no index column
    assert "Jeen-Freecs/kd_thesis" in html                  # the authors' re-run names its source


def test_seeds_summary_names_the_rows_and_the_command_that_adds_seeds():
    write_run("baseline", "smoke", 0, 50.0)
    text = report.seeds_summary(report.results_table("smoke"), "smoke")
    assert "1 seed: 1 row (`baseline`)" in text
    assert "`python -m cakd reproduce --profile smoke --seeds N`" in text


@pytest.mark.parametrize("bad", ["nope", None, ["paper"]])
def test_unknown_profile_is_a_value_error_naming_the_profiles(bad):
    with pytest.raises(ValueError, match=r"profile=.* is not one of \[.*'paper'"):
        report.results_table(bad)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3"])
def test_bad_seeds_is_a_value_error(bad):
    with pytest.raises(ValueError, match="seeds="):
        report.results_table("smoke", seeds=bad)


def test_every_profile_says_what_it_is_and_only_the_authors_code_goes_unlabelled():
    for name, profile in PROFILES.items():
        assert profile.summary and profile.comparable == (name != "smoke")
        assert bool(profile.banner) == (not profile.authors_code)


# ----------------------------------------------------------------------------- conclusions

def test_judge_pair_supported_contradicted_within_spread_and_not_enough():
    # [75, 77] vs [70, 72]: difference 5; each variance 2, so SE = sqrt(2/2 + 2/2) = 1.414 and 2 SE = 2.83 < 5
    diff, spread, verdict = judge_pair([75, 77], [70, 72])
    assert (diff, verdict) == (pytest.approx(5.0), "supported") and spread == pytest.approx(2 * math.sqrt(2))
    assert judge_pair([70, 72], [75, 77])[2] == "contradicted"
    assert judge_pair([74, 76], [73, 77])[2] == "within spread"     # difference 0
    diff, spread, verdict = judge_pair([75], [70, 72])
    assert verdict == "not enough runs" and diff == pytest.approx(4.0) and math.isnan(spread)


def test_judge_a_contradicting_pair_decides_and_is_shown():
    claim = Conclusion("a beats b and c", (("kd_vit", "baseline"), ("kd_vit", "kd_resnet50")))
    table = judge({"kd_vit": [75, 77], "baseline": [60, 62], "kd_resnet50": [80, 82]}, [claim])
    assert table.loc[0, "verdict"] == "contradicted"
    assert table.loc[0, "compared"].startswith("kd_vit > kd_resnet50")
    assert table.loc[0, "ours"] == pytest.approx(-5.0)
    assert table.loc[0, "report"] == pytest.approx(74.00 - 73.75)


def test_judge_all_pairs_supported_is_supported():
    claim = Conclusion("a beats b and c", (("kd_vit", "baseline"), ("kd_vit", "kd_resnet50")))
    table = judge({"kd_vit": [75, 77], "baseline": [60, 62], "kd_resnet50": [70, 72]}, [claim])
    assert table.loc[0, "verdict"] == "supported"
    assert table.loc[0, "compared"].startswith("kd_vit > kd_resnet50")   # the smaller margin is shown


def test_check_conclusions_reads_the_registry():
    for seed, (m1, m2) in enumerate([(75.0, 70.0), (77.0, 72.0)]):
        write_run("m1_drv", "smoke", seed, m1)
        write_run("m2_drv", "smoke", seed, m2)
    table = check_conclusions("smoke").set_index("conclusion")
    assert table.loc["Method 1 beats Method 2 (D, R, V)", "verdict"] == "supported"
    assert table.loc["Method 1 beats Method 2 (D, R, V)", "seeds"] == "2 / 2"
    assert table.loc["DenseNet-121 gives the best single-teacher student", "verdict"] == "not enough runs"
    assert "not enough runs" in conclusions_table("smoke").html


def test_conclusions_name_manifest_rows_only():
    ids = {row.id for row in manifest.all_rows()}
    for conclusion in CONCLUSIONS:
        assert conclusion.pairs and all(a in ids and b in ids and a != b for a, b in conclusion.pairs), conclusion


# ----------------------------------------------------------------------------- tables, figures, costs

def test_render_table_aligns_numbers_escapes_text_and_checks_columns():
    frame = pd.DataFrame({"name": ["<b>"], "value": [1.5], "missing": [float("nan")]})
    html = render_table(frame, formats={"value": "{:.1f}"}, na_rep="n/a").html
    assert re.search(r"<td [^>]*>&lt;b&gt;</td>", html) and "<b>" not in html
    assert re.search(r'<td [^>]*class="[^"]*\bnum" >1\.5</td>', html)
    assert re.search(r'<td [^>]*class="[^"]*\bnum" >n/a</td>', html)
    with pytest.raises(ValueError, match=r"column\(s\) \['nope'\] are not in the table"):
        render_table(frame, formats={"nope": "{}"})


def test_figures_are_saved_name_missing_runs_and_label_the_profile():
    write_run("m3_dr_t8", "smoke", 0, 60.0)
    plot = plots.figure4("smoke")
    assert plot.png.parent == paths.figures_dir("smoke") and plot.png.exists()
    svg = plot.svg.read_text()
    assert "not run yet" in svg and "m3_dr_t4" in svg and "m3_dr_t8" not in svg.split("not run yet")[1]
    assert "smoke profile" in svg and "τ 1 (ours)" not in svg     # tau 1 did not run: in the note, not the legend


def test_paper_figures_carry_no_profile_label_and_draw_ours_labelled():
    for row_id in ("m3_dr_t1", "m3_dr_t8"):
        write_run(row_id, "paper", 0, 70.0)
    svg = plots.figure4("paper").svg.read_text()
    assert "τ 1 (ours)" in svg and "τ 8" in svg and "profile:" not in svg
    assert plots.figure2("paper").png.exists() and plots.figure3("paper").png.exists()


def _record(profile: str, device: str = "cuda", rows=None) -> dict:
    """A benchmark record as `python -m cakd bench` writes it (schema 3): every row's ours at 45,000 images/s and
    the authors' at 4,500, the plain step at 45,000, the evaluation at 15,000, every teacher at 1,000."""
    timed = lambda rate: {"images_per_s": rate, "teacher_passes_per_image": 0, "peak_memory_mb": 1.0}   # noqa: E731
    return {"schema": 3, "profile": profile, "device": device, "created": "today", "memory_method": "m",
            "machine": {"device_name": "GPU X", "torch": "2", "threads": 1}, "commit": "abc1234",
            "settings": {"batch_size": 8, "repeats": 1, "steps": 1}, "config": {"precision": "bf16"},
            "command": "python -m cakd bench", "student_eval": {"images_per_s": 15_000.0},
            "reference": {"pipelines": {"plain": timed(45_000.0), "kd": timed(45_000.0)}},
            "rows": {row.id: {"pipelines": {"ours": timed(45_000.0), "authors_2": timed(4_500.0)}}
                     for row in manifest.ROWS if rows is None or row.id in rows},
            "teacher_forward": {t: {"images_per_s": 1_000.0} for t in manifest.teachers_used()}}


def test_estimate_table1_adds_runs_and_caches_at_each_rows_rate():
    e = costs.estimate_table1(_record("smoke"))
    # each run: epochs x 45,000 / 45,000 + epochs x 15,000 / 15,000 = 2 x epochs seconds
    assert e["student_total_s"] == pytest.approx(sum(2 * r.config("smoke").epochs for r in manifest.all_rows()))
    # smoke teaches as the authors did (clean image): each teacher (45,000 + 15,000) / 1,000 images/s
    assert e["cache_build_total_s"] == pytest.approx(len(e["cache_build_s"]) * (45_000 + 15_000) / 1_000)
    assert e["total_s"] == pytest.approx(e["student_total_s"] + e["cache_build_total_s"]) and e["assumed"] == []
    # the authors' pipeline: epochs x 45,000 / 4,500 = 10 x epochs seconds
    assert sum(e["authors_runs_s"].values()) == pytest.approx(sum(10 * r.config("smoke").epochs
                                                                  for r in manifest.all_rows()))


def test_a_figure_point_takes_its_rows_rate_and_an_untimed_row_the_heaviest_rows():
    record = _record("paper", rows={"baseline", "m3_drv", "m3_dr_t8"})
    record["rows"]["m3_dr_t8"]["pipelines"]["ours"]["images_per_s"] = 22_500.0   # twice as slow
    e = costs.estimate_table1(record)
    epochs = manifest.get_row("m3_dr_t4").config("paper").epochs
    assert e["student_runs_s"]["m3_dr_t4"] == pytest.approx(epochs * (2 + 1))       # Figure 4 point: its row's rate
    assert "kd_vit" in e["assumed"] and "m3_dr_t4" not in e["assumed"] and "baseline" not in e["assumed"]
    assert e["student_runs_s"]["kd_vit"] == pytest.approx(epochs * (1 + 1))          # the heaviest row's rate
    assert "Not timed" in costs.estimate_table(record).html


def test_estimate_of_consistent_teaching_caches_every_view():
    e = costs.estimate_table1(_record("consistent"))
    # each teacher: (45,000 x 162 views + 15,000) / 1,000 images/s
    assert e["views_per_image"] == 162
    assert e["cache_build_total_s"] == pytest.approx(len(e["cache_build_s"]) * (45_000 * 162 + 15_000) / 1_000)


def test_no_estimate_from_a_stand_in_benchmark():
    assert costs.estimate_basis(_record("smoke")) is None and costs.estimate_table(_record("smoke")) is None
    assert "CPU" in costs.estimate_basis(_record("paper", device="cpu"))
    assert "Estimated" in costs.estimate_table(_record("paper")).html
    assert all("Measured" in t.html for t in costs.measured_tables(_record("smoke")))


def test_the_measured_table_shows_every_row_against_the_authors_pipeline():
    text = costs.measured_tables(_record("paper"))[0].text
    for row in manifest.ROWS:
        assert re.search(rf"{re.escape(row.label)}\s+45,000\.0\s+4,500\.0\s+10\.00x", text), row.label
    assert "ours/authors (2 workers) >= 10 on every row" in text


def test_a_first_format_benchmark_file_reads_as_its_one_heaviest_row():
    import json

    record = json.loads((paths.BOOK / "measurements" / "h100_paper.json").read_text())
    rates = costs.row_rates(record)
    assert list(rates) == ["m3_drv"] and set(rates["m3_drv"]) == {"ours", "authors_4"}
    assert rates["m3_drv"]["ours"] / rates["m3_drv"]["authors_4"] == pytest.approx(record["ratios"]["optimized/authors"])
    assert set(costs.reference(record)) == {"plain", "kd", "kd_eager"}


def test_runs_spread_over_gpus_longest_first():
    # 3 -> GPU a; 2 -> b; 2 -> b (load 2 < 3); 1 -> a (3 < 4): loads 4 and 4
    assert costs.spread([1.0, 2.0, 3.0, 2.0], 2) == 4.0
    assert costs.spread([5.0, 1.0], 8) == 5.0            # a run cannot be split over GPUs
    assert costs.spread([1.0, 2.0, 3.0], 1) == 6.0


# ----------------------------------------------------------------------------- downloads and run pages

def test_table1_and_figure_csvs_read_back_equal_to_the_registry():
    for row_id, seed, accuracy in (("baseline", 0, 60.0), ("baseline", 1, 62.0), ("m3_dr_t8", 0, 70.0),
                                   ("kd_vit_a50", 0, 65.0)):
        write_run(row_id, "smoke", seed, accuracy)
    table = pd.read_csv(report.table1_csv("smoke", report.results_table("smoke"))).set_index("id")
    assert list(table.index) == [row.id for row in manifest.ROWS]
    assert (table.loc["baseline", "seed 0"], table.loc["baseline", "seed 1"]) == (60.0, 62.0)
    assert table.loc["baseline", "mean"] == pytest.approx(61.0) and table.loc["baseline", "report"] == 66.29
    assert table.loc["m3_dr_t8", "authors"] == 72.72 and math.isnan(table.loc["kd_vit", "seed 0"])
    for figure in (plots.figure2, plots.figure3, plots.figure4):
        points = pd.read_csv(figure("smoke").csv)
        expected = [(row.id, run.config.seed, int(h["epoch"]), h["val_acc"])
                    for row, runs in report.figure_series("smoke", f"fig{figure.__name__[-1]}") for run in runs
                    for h in run.history]
        assert list(points[["row", "seed", "epoch", "val_acc"]].itertuples(index=False, name=None)) == expected
        assert expected                                   # each figure drew something to compare
    assert "{download}`table1.csv <" in report.downloads({"table1.csv": paths.results_home() / "table1.csv"})


def test_a_run_page_shows_its_rows_report_number_and_our_seeds():
    write_run("kd_vit", "smoke", 0, 50.0)
    write_run("kd_vit", "smoke", 1, 54.0)
    text = report.row_numbers(manifest.get_row("kd_vit").config("smoke")).text
    assert "Table 1 row kd_vit" in text and "74.00" in text and "73.19" in text     # the report, the re-run
    assert re.search(r"52\.00\s+2\.83\s+2$", text.splitlines()[2]), text           # ours: mean, sd, seeds
    assert "not comparable with the report" in text


def test_a_page_of_a_subset_without_method_3_says_there_are_no_ties_to_count():
    table = report.ties_table({})
    assert "No Method 3 row" in table.text and "<table" not in table.html


def test_a_run_lists_where_each_option_comes_from():
    from cakd.definitions.profiles import profile_config
    from cakd.reading.recipe import option_sources

    def sources(config):
        return dict(zip(*option_sources(config)[["option", "source"]].T.values))
    paper = sources(manifest.get_row("m2_drv").config("paper"))
    assert paper["gamma"].startswith("the report and the authors' re-run") and "between sources" in paper["gamma"]
    assert paper["weighting"] == "the authors' code, cell 20" and paper["lr"] == "the report"
    assert paper["precision"] == "the authors' code, cells 16, 28, 36" and "synthetic_size" not in paper
    assert sources(manifest.get_row("kd_vit").config("paper"))["alpha"] == "the report's Table 1 row"
    assert sources(manifest.get_row("m3_dr_t8").config("consistent"))["resize"] == "the consistent profile (ours)"
    assert sources(profile_config("paper", lr=0.001))["lr"] == "this run's parameters"
    assert sources(manifest.get_row("m3_dr_t1").config("paper"))["temperature"].startswith("ours")
