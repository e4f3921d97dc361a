"""The benchmark's record: its pipelines per profile, teacher-pass counts, settings checks, the CLI. Never timings."""
import json

import pytest
import torch

from cakd.definitions.profiles import PROFILES
from cakd.orchestration import bench
from cakd.definitions.manifest import all_rows

TINY = dict(batch_size=4, steps=1, warmup=1, train_images=16, teacher_batch_size=4, eval_batch_size=8,
            loader_workers=0)
pytestmark = pytest.mark.xdist_group("bench")   # one worker builds the module fixture, not each

TINY_PAPER = dict(model_scale="tiny", teacher_weights="train", resize=36, crop=32)   # the smoke sizes


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """One tiny benchmark per kind of profile (module fixtures run before conftest's per-test setup)."""
    folder = tmp_path_factory.mktemp("bench")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # as conftest.TORCH_THREADS: 2-thread OpenMP crawls on busy shared cores
    try:
        yield {"smoke": (bench.run_benchmark("cpu", "smoke", repeats=2, out=folder / "smoke.json", **TINY),
                         folder / "smoke.json"),
               "consistent": (bench.run_benchmark("cpu", "consistent", repeats=2, write=False,
                                                  config={"model_scale": "tiny", "teacher_weights": "train"},
                                                  **TINY), None),
               "paper": (bench.run_benchmark("cpu", "paper", repeats=2, write=False, config=TINY_PAPER, **TINY),
                         None)}
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow   # the tiny benchmarks of `records`
def test_benchmark_writes_the_record_it_returns_as_json(records):
    result, out = records["smoke"]
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["machine"]["torch"] == torch.__version__
    assert result["settings"]["batch_size"] == 4 and result["settings"]["repeats"] == 2


@pytest.mark.slow   # the tiny benchmarks of `records`
def test_clean_image_profiles_time_the_authors_pipeline_and_the_consistent_profile_online_teachers(records):
    # on a CPU there is no graphed step, so no eager twin of the cached-KD pipeline
    assert list(records["paper"][0]["pipelines"]) == ["plain", "kd_cached", "authors"]
    assert list(records["smoke"][0]["pipelines"]) == ["plain", "kd_cached", "authors"]
    assert list(records["consistent"][0]["pipelines"]) == ["plain", "kd_cached", "kd_online"]


@pytest.mark.slow   # the tiny benchmarks of `records`
def test_every_pipeline_has_a_positive_rate_and_memory_and_is_eager_on_a_cpu(records):
    for result, _ in records.values():
        for timing in result["pipelines"].values():
            assert timing["images_per_s"] > 0 and timing["peak_memory_mb"] >= 0
            assert len(timing["seconds"]) == 2 and timing["graphed"] is False
            # batch x (warm-up + repeats x (the Timer's own 2 warm-up steps + steps))
            assert timing["images_seen"] == 4 * (1 + 2 * (2 + 1))


@pytest.mark.slow   # the tiny benchmarks of `records`
def test_ratios_are_the_ones_whose_pipelines_were_timed(records):
    assert set(records["paper"][0]["ratios"]) == {"optimized/authors", "KD/plain"}
    assert set(records["consistent"][0]["ratios"]) == {"KD/plain", "cached/online"}
    result = records["paper"][0]
    rate = {name: p["images_per_s"] for name, p in result["pipelines"].items()}
    assert result["ratios"]["optimized/authors"] == pytest.approx(rate["kd_cached"] / rate["authors"])
    assert set(result["targets"]) == {"optimized/authors", "KD/plain"}


@pytest.mark.slow   # the tiny benchmarks of `records`
def test_cached_kd_runs_no_teacher_and_online_pipelines_run_each_of_the_three_once_per_image(records):
    passes = {profile: {name: t["teacher_passes_per_image"] for name, t in result["pipelines"].items()}
              for profile, (result, _) in records.items()}
    assert passes["paper"] == {"plain": 0, "kd_cached": 0, "authors": 3}
    assert passes["consistent"] == {"plain": 0, "kd_cached": 0, "kd_online": 3}


@pytest.mark.slow   # the tiny benchmarks of `records`
def test_the_teachers_of_every_manifest_row_and_the_student_eval_are_timed(records):
    teachers = sorted({t for row in all_rows() for t in row.params.get("teachers", [])})
    for result, _ in records.values():
        assert sorted(result["teacher_forward"]) == teachers
        assert result["student_eval"]["images_per_s"] > 0


def test_an_unknown_or_bad_setting_is_refused_with_its_name():
    with pytest.raises(ValueError, match="unknown benchmark setting"):
        bench.bench_settings("smoke", torch.device("cpu"), batchsize=4)
    with pytest.raises(ValueError, match="steps=0"):
        bench.bench_settings("smoke", torch.device("cpu"), steps=0)
    with pytest.raises(ValueError, match="must be a .json file"):
        bench.run_benchmark("cpu", "smoke", out="bench.md")


@pytest.mark.slow
def test_the_bench_command_writes_the_file_named_by_out(tmp_path):
    from cakd.__main__ import main

    out = tmp_path / "b.json"
    args = ["bench", "--repeats", "1", "--out", str(out), "--batch-size=4", "--steps=1", "--warmup=1",
            "--train-images=16", "--teacher-batch-size=4", "--eval-batch-size=8"]
    assert main(args) == 0
    assert json.loads(out.read_text())["settings"]["train_images"] == 16
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
