"""The benchmark's record: structure, teacher-pass counts, the Table 1 estimate's arithmetic. Never timings."""
import json

import pytest
import torch

from cakd import bench
from cakd.data import NUM_VIEWS

TINY = dict(batch_size=4, steps=1, warmup=1, train_images=16, teacher_batch_size=4, eval_batch_size=8,
            naive_workers=0)


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    """One tiny benchmark shared by the tests below (module fixtures run before conftest's per-test setup)."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # as conftest.TORCH_THREADS: 2-thread OpenMP crawls on busy shared cores
    try:
        yield bench.run_benchmark("cpu", "smoke", repeats=2, out=out, **TINY), out
    finally:
        torch.set_num_threads(threads)


def test_benchmark_writes_the_record_it_returns_as_json_and_markdown(record):
    result, out = record
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert "| (2) KD, 3 teachers, cached logits |" in out.with_suffix(".md").read_text()
    assert result["machine"]["torch"] == torch.__version__
    assert result["settings"]["batch_size"] == 4 and result["settings"]["repeats"] == 2


def test_every_pipeline_has_a_positive_rate_and_memory(record):
    result, _ = record
    assert list(result["pipelines"]) == ["plain", "kd_cached", "kd_online", "naive"]
    for timing in result["pipelines"].values():
        assert timing["images_per_s"] > 0 and timing["peak_memory_mb"] >= 0
        assert len(timing["seconds"]) == 2
        assert timing["images_seen"] == 4 * (1 + 2 * 1)   # batch x (warm-up + repeats x steps)
    assert all(value > 0 for value in result["ratios"].values())
    assert set(result["targets"]) == {"kd_cached/plain", "kd_cached/naive"}


def test_cached_kd_runs_no_teacher_and_online_kd_runs_each_of_the_three_once_per_image(record):
    passes = {name: t["teacher_passes_per_image"] for name, t in record[0]["pipelines"].items()}
    assert passes == {"plain": 0, "kd_cached": 0, "kd_online": 3, "naive": 3}


def test_teacher_throughput_is_measured_for_the_five_distinct_teachers(record):
    assert sorted(record[0]["teacher_forward"]) == ["densenet121", "resnet18", "resnet34", "resnet50",
                                                    "vit_base_patch16_224"]
    assert record[0]["table1_estimate"]["basis"].startswith("NOT an estimate")   # smoke profile


def test_table1_estimate_counts_14_runs_and_5_caches_of_162_views():
    # every rate 1 image/s: a run = 100 epochs x (45,000 train + 15,000 eval) images = 6e6 s;
    # a cache = 45,000 x 162 + 15,000 passes; fine-tuning = 5 x (3 x 45,000 + 15,000)
    teachers = ["densenet121", "resnet18", "resnet34", "resnet50", "vit_base_patch16_224"]
    e = bench.estimate_table1({"plain": 1.0, "kd_cached": 1.0}, {n: 1.0 for n in teachers}, 1.0)
    assert e["runs"] == 14 and e["student_total_s"] == 14 * 6e6
    assert e["cache_build_s"] == {n: 45_000 * NUM_VIEWS + 15_000 for n in teachers}
    assert e["teacher_finetune_total_s"] == 5 * 5 * (3 * 45_000 + 15_000)
    assert e["total_s"] == e["student_total_s"] + e["cache_build_total_s"] + e["teacher_finetune_total_s"]


def test_an_unknown_or_bad_setting_is_refused_with_its_name():
    with pytest.raises(ValueError, match="unknown benchmark setting"):
        bench.bench_settings("smoke", torch.device("cpu"), batchsize=4)
    with pytest.raises(ValueError, match="steps=0"):
        bench.bench_settings("smoke", torch.device("cpu"), steps=0)


def test_the_bench_command_writes_the_file_named_by_out(tmp_path):
    from cakd.__main__ import main

    out = tmp_path / "b.json"
    args = ["bench", "--repeats", "1", "--out", str(out)] + [
        f"--{name.replace('_', '-')}={value}" for name, value in TINY.items()]
    assert main(args) == 0
    assert json.loads(out.read_text())["settings"]["train_images"] == 16
    assert main(["bench", "--steps", "0"]) == 2   # a bad setting: one-line error, exit code 2


def test_reproduce_benchmarks_a_profile_once_and_the_paper_profile_only_on_a_gpu(isolated_homes, monkeypatch):
    from cakd import paths, reproduce

    calls, logged = [], []

    def fake_benchmark(device, profile, out):
        calls.append((device, profile))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("{}")

    monkeypatch.setattr(bench, "run_benchmark", fake_benchmark)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert reproduce._bench("smoke", False, logged.append) == []
    assert reproduce._bench("smoke", False, logged.append) == []           # the file exists now: reused
    assert reproduce._bench("paper", False, logged.append) == []           # no GPU: left to the user
    assert calls == [("auto", "smoke")]
    assert (paths.results_home() / "smoke" / "bench.json").exists()
    assert "reused" in logged[-2] and "--device cuda" in logged[-1]
    assert reproduce._bench("smoke", True, logged.append) == [] and len(calls) == 2   # --force measures again


def test_a_failed_benchmark_is_reported_and_does_not_stop_reproduce(isolated_homes, monkeypatch):
    from cakd import reproduce

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(bench, "run_benchmark", broken)
    logged = []
    assert reproduce._bench("smoke", False, logged.append) == ["bench"]
    assert "RuntimeError: out of memory" in logged[-1]
