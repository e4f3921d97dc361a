"""The benchmark's record: every Table 1 row against the authors' pipeline at 2 and 4 workers, the references, the
GPU check's dry run on a CPU, settings checks, the command line. Never timings: rates are only checked to exist."""
import json
import resource

import pytest
import torch

from cakd.__main__ import main
from cakd.definitions.manifest import ROWS, teachers_used
from cakd.definitions.profiles import PROFILES
from cakd.orchestration import bench

TINY = ["--batch-size", "4", "--steps", "1", "--warmup", "1", "--repeats", "2", "--train-images", "16",
        "--teacher-batch-size", "4", "--eval-batch-size", "8"]
pytestmark = pytest.mark.xdist_group("bench")   # one worker builds the module fixture, not each


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """The GPU check's dry run, as `make test` runs it (smoke profile, small sizes, every row at 2 and 4 workers),
    and a consistent-profile benchmark of two rows (module fixtures run before conftest's per-test setup)."""
    folder = tmp_path_factory.mktemp("bench")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # as conftest.TORCH_THREADS: 2-thread OpenMP crawls on busy shared cores
    try:
        assert main(["bench", "--check", "--device", "cpu", "--out", str(folder / "check.json"), *TINY]) == 0
        consistent = bench.run_benchmark("cpu", "consistent", ["baseline", "m3_drv"], repeats=2, write=False,
                                         config={"model_scale": "tiny", "teacher_weights": "train"}, batch_size=4,
                                         steps=1, warmup=1, train_images=16, teacher_batch_size=4, eval_batch_size=8)
        yield {"check": json.loads((folder / "check.json").read_text()), "consistent": consistent}
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow   # the benchmarks of `records`
def test_every_table1_row_is_timed_against_the_authors_pipeline_at_2_and_4_workers(records):
    record = records["check"]
    assert set(record["rows"]) == {row.id for row in ROWS} and record["settings"]["workers"] == [2, 4]   # JSON: sorted
    for row in ROWS:
        timed = record["rows"][row.id]
        assert set(timed["pipelines"]) == {"ours", "authors_2", "authors_4"}
        assert set(timed["ratios"]) == {"ours/authors (2 workers)", "ours/authors (4 workers)"}
        rate = {name: p["images_per_s"] for name, p in timed["pipelines"].items()}
        assert timed["ratios"]["ours/authors (2 workers)"] == pytest.approx(rate["ours"] / rate["authors_2"])
        # ours looks the teachers up; the authors' pipeline runs each of the row's teachers once per image
        passes = {name: p["teacher_passes_per_image"] for name, p in timed["pipelines"].items()}
        k = len(row.params.get("teachers", []))
        assert passes == {"ours": 0, "authors_2": k, "authors_4": k} and timed["teachers"] == row.params.get(
            "teachers", [])
        # batch x (warm-up + repeats x (the Timer's own 2 warm-up steps + steps))
        assert all(p["images_seen"] == 4 * (1 + 2 * (2 + 1)) and not p["graphed"] for p in timed["pipelines"].values())


@pytest.mark.slow   # the benchmarks of `records`
def test_the_references_the_teachers_and_the_evaluation_are_timed_once(records):
    record = records["check"]
    assert set(record["reference"]["pipelines"]) == {"plain", "kd"}      # no eager twin without a graph
    assert set(record["reference"]["ratios"]) == {"KD/plain"} and set(record["reference"]["targets"]) == {"KD/plain"}
    assert sorted(record["teacher_forward"]) == sorted(teachers_used())
    assert record["student_eval"]["images_per_s"] > 0 and record["schema"] == 3
    assert record["command"].startswith("python -m cakd bench --check") and record["machine"]["torch"]


@pytest.mark.slow   # the benchmarks of `records`
def test_the_checks_dry_run_compares_graphed_and_eager_training_and_trains_two_epochs(records):
    record = records["check"]
    for precision in ("fp16", "bf16"):
        compared = record["graphed_vs_eager"][precision]
        assert compared["steps"] == 10 and compared["finite"] and compared["max_abs_loss_difference"] == 0.0
        assert not compared["images_per_s"]["graphed_is_graphed"]        # a CPU has no graph: both run eagerly
    assert record["overflow"].startswith("needs CUDA")
    two = record["two_epochs"]
    assert (two["row"], two["epochs"], two["images"]) == ("m3_drv", 2, 600) and len(two["losses"]) == 2


@pytest.mark.slow   # the benchmarks of `records`
def test_a_profile_whose_teachers_see_the_students_views_is_timed_against_online_teaching(records):
    rows = records["consistent"]["rows"]
    assert list(rows["baseline"]["pipelines"]) == ["ours"] and list(rows["m3_drv"]["pipelines"]) == ["ours", "online"]
    assert rows["m3_drv"]["pipelines"]["online"]["teacher_passes_per_image"] == 3
    assert set(rows["m3_drv"]["ratios"]) == {"cached/online"}


def test_peak_memory_on_a_cpu_is_the_growth_of_the_peak_rss_in_megabytes(monkeypatch):
    peaks = iter([512 * 1024, 512 * 1024, 800 * 1024])   # ru_maxrss in KiB on Linux: 512 MB, then 800 MB

    class Usage:
        @property
        def ru_maxrss(self):
            return next(peaks)
    monkeypatch.setattr(resource, "getrusage", lambda who: Usage())
    monkeypatch.setattr(bench.sys, "platform", "linux")
    cpu = torch.device("cpu")
    before = bench._reset_peak_memory(cpu)
    assert before == 512 and bench._peak_memory_mb(cpu) - before == 0 and bench._peak_memory_mb(cpu) - before == 288


def test_an_unknown_or_bad_setting_is_refused_with_its_name():
    with pytest.raises(ValueError, match="unknown benchmark setting"):
        bench.bench_settings("smoke", torch.device("cpu"), batchsize=4)
    with pytest.raises(ValueError, match="steps=0"):
        bench.bench_settings("smoke", torch.device("cpu"), steps=0)
    with pytest.raises(ValueError, match="must be a .json file"):
        bench.run_benchmark("cpu", "smoke", out="bench.md")
    with pytest.raises(ValueError, match="row='nope'"):
        bench.run_benchmark("cpu", "smoke", ["nope"])
    with pytest.raises(ValueError, match=r"workers=\(-1,\)"):
        bench.run_benchmark("cpu", "smoke", workers=(-1,))


@pytest.mark.slow
def test_the_bench_command_writes_the_rows_it_names_to_out(tmp_path):
    out = tmp_path / "b.json"
    assert main(["bench", "--out", str(out), "--rows", "kd_resnet50", "--loader-workers", "0", *TINY]) == 0
    record = json.loads(out.read_text())
    assert list(record["rows"]) == ["kd_resnet50"] and set(record["rows"]["kd_resnet50"]["pipelines"]) == {
        "ours", "authors_0"} and record["settings"]["train_images"] == 16
    assert main(["bench", "--steps", "0"]) == 2   # a bad setting: one-line error, exit code 2


def test_reproduce_benchmarks_a_profile_once_and_the_paper_profile_only_on_a_gpu(isolated_homes, monkeypatch):
    from cakd.definitions import paths
    from cakd.orchestration import reproduce

    calls, logged = [], []

    def fake_benchmark(device, profile, out, command):
        calls.append((device, profile))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("{}")

    monkeypatch.setattr(bench, "run_benchmark", fake_benchmark)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    smoke, paper = PROFILES["smoke"], PROFILES["paper"]
    assert reproduce._bench(smoke, False, logged.append) == []
    assert reproduce._bench(smoke, False, logged.append) == []             # the file exists now: reused
    assert reproduce._bench(paper, False, logged.append) == []             # no GPU: left to the user
    assert calls == [("auto", "smoke")]
    assert (paths.results_home() / "smoke" / "bench.json").exists()
    assert "reused" in logged[-2] and "--device cuda" in logged[-1]
    assert reproduce._bench(smoke, True, logged.append) == [] and len(calls) == 2     # --force measures again


def test_a_failed_benchmark_is_reported_and_does_not_stop_reproduce(isolated_homes, monkeypatch):
    from cakd.orchestration import reproduce

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(bench, "run_benchmark", broken)
    logged = []
    assert reproduce._bench(PROFILES["smoke"], False, logged.append) == ["bench"]
    assert "RuntimeError: out of memory" in logged[-1]
