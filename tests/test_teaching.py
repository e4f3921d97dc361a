"""Teacher logits while the student trains (cakd.training.teaching): cache == online for clean and student-view
inputs, fixed targets cost one pass per image, cache keys and fingerprints, corruption, the host-resident lookup."""
import dataclasses

import numpy as np
import pytest
import torch

from cakd.definitions import paths
from cakd.definitions.config import Views
from cakd.training import probes, teaching
from cakd.training.data import Split, Splits, make_synthetic
from cakd.training.models import create_teacher
from cakd.training.runs import load_or_train
from cakd.training.teachers import load_teacher
from cakd.training.teaching import (CachedTeachers, OnlineTeachers, StaleCacheError, TeacherLogitCache,
                                    load_or_build_cache, teacher_forward)
from cakd.training.views import apply_views
from support import D, R18, R50, SESSION_TEACHERS, V, smoke_config

CPU = torch.device("cpu")
PAD4 = Views(resize=0, pad=4, crop=32, augment="crop_flip")   # 162 views (consistent profile)
FAMILIES = [R50, D, V]


@pytest.fixture(scope="module")
def splits():
    """6 train, 4 val, 4 test images of the synthetic set (6 x 162 = 972 cached views per teacher)."""
    full = make_synthetic(600)
    part = lambda s, n: Split(s.images[:n], s.labels[:n])   # noqa: E731
    return Splits(part(full.train, 6), part(full.val, 4), part(full.test, 4), 100, "first-6-4-4-of-600")


def _teacher(name: str, seed: int = 0):
    torch.manual_seed(seed)
    return create_teacher(name, 100, "tiny").eval()


def _build(tmp_path, model, splits, teacher_input="clean", weights="w0"):
    fingerprint = TeacherLogitCache.fingerprint(weights, model, splits)
    cache = TeacherLogitCache.build(tmp_path / "cache", model, splits, fingerprint, teacher_input, PAD4, CPU,
                                    "fp32", batch_size=1000)
    return cache, fingerprint


def _batch(splits, n=64, seed=1):
    g = torch.Generator().manual_seed(seed)
    indices = torch.randint(0, len(splits.train), (n,), generator=g)
    view_ids = torch.randint(0, PAD4.count, (n,), generator=g)
    return indices, view_ids, apply_views(splits.train.images[indices], view_ids, PAD4)


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("teacher_input", ["clean", "student_view"])
@pytest.mark.slow
def test_cached_logits_equal_online_logits(tmp_path, splits, name, teacher_input):
    model = _teacher(name)
    cache, _ = _build(tmp_path, model, splits, teacher_input)
    indices, view_ids, views = _batch(splits)
    online = OnlineTeachers([model], [name], teacher_input, splits.train, "fp32")(indices, view_ids, views)
    cached = CachedTeachers([cache], [name], CPU)(indices, view_ids, views)
    # both are fp16-rounded teacher outputs; batch composition may move a value by one fp16 ulp
    torch.testing.assert_close(cached, online, rtol=2e-3, atol=2e-3)


def test_clean_cache_holds_one_logit_vector_per_image(tmp_path, splits):
    # clean input: the teacher's targets are fixed per image, train [N, C]; val and test [N, C]
    cache, _ = _build(tmp_path, _teacher(D), splits, "clean")
    assert cache.train.shape == (6, 100) and cache.train.dtype == torch.float16
    assert cache.val.shape == (4, 100) and cache.test.shape == (4, 100)
    assert cache.forward_passes == 6 + 4 + 4


@pytest.mark.slow
def test_student_view_cache_holds_every_view(tmp_path, splits):
    # 6 images x 162 views, plus the clean val and test images: 972 + 8 passes
    cache, _ = _build(tmp_path, _teacher(D), splits, "student_view")
    assert cache.train.shape == (6, 162, 100) and cache.val.shape == (4, 100)
    assert cache.forward_passes == 6 * 162 + 4 + 4


def test_clean_cache_ignores_the_students_view(tmp_path, splits):
    # the same image under two different views gets the same (clean) targets
    cache, _ = _build(tmp_path, _teacher(R18), splits, "clean")
    lookup = CachedTeachers([cache], [R18], CPU)
    index = torch.tensor([3, 3])
    out = lookup(index, torch.tensor([0, 161]), apply_views(splits.train.images[index], torch.tensor([0, 161]), PAD4))
    assert torch.equal(out[0, 0], out[0, 1])


def test_cache_val_and_test_hold_the_clean_logits(tmp_path, splits):
    model = _teacher(R18)
    cache, _ = _build(tmp_path, model, splits)
    with torch.no_grad():
        expected = teacher_forward(model, splits.test.images.float() / 255, "fp32")
    torch.testing.assert_close(cache.test, expected, rtol=2e-3, atol=2e-3)


@pytest.mark.gpu
def test_host_resident_lookup_equals_the_device_lookup(tmp_path, splits, monkeypatch):
    # a cache too large for the GPU stays on the host and is gathered there; the numbers must not change (on a CPU
    # both lookups are the same code: this compares two paths only on a GPU)
    device = torch.device("cuda", torch.cuda.current_device())
    _, fingerprint = _build(tmp_path, _teacher(D), splits, "student_view")
    indices, view_ids, views = _batch(splits)
    indices, view_ids = indices.to(device), view_ids.to(device)
    monkeypatch.setattr(teaching, "_fits", lambda array, device: device.type == "cuda")
    on_device = TeacherLogitCache.load(tmp_path / "cache", fingerprint, device)
    monkeypatch.setattr(teaching, "_fits", lambda array, device: False)
    on_host = TeacherLogitCache.load(tmp_path / "cache", fingerprint, device)
    assert on_host.train.device == CPU
    expected = CachedTeachers([on_device], [D], device)(indices, view_ids, views)
    looked_up = CachedTeachers([on_host], [D], device)(indices, view_ids, views)
    assert looked_up.device == expected.device and torch.equal(looked_up, expected)


def test_online_teachers_count_forward_passes_and_cache_counts_none(tmp_path, splits):
    a, b = _teacher(R18, 0), _teacher(D, 1)
    online = OnlineTeachers([a, b], ["a", "b"], "student_view", splits.train, "fp32")
    cached = CachedTeachers([_build(tmp_path, a, splits)[0]], ["a"], CPU)
    indices, view_ids, views = _batch(splits, n=10)
    online(indices, view_ids, views)
    online(indices, view_ids, views)
    cached(indices, view_ids, views)
    assert online.forward_passes == 2 * 2 * 10    # 2 calls x 2 teachers x 10 images
    assert cached.forward_passes == 0


def test_load_refuses_a_cache_built_for_other_teacher_weights(tmp_path, splits):
    _, fingerprint = _build(tmp_path, _teacher(D), splits, weights="w0")
    with pytest.raises(StaleCacheError, match="weights"):
        TeacherLogitCache.load(tmp_path / "cache", {**fingerprint, "weights": "w1"}, CPU)


def test_load_refuses_a_cache_of_other_data(tmp_path, splits):
    _, fingerprint = _build(tmp_path, _teacher(D), splits)
    with pytest.raises(StaleCacheError, match="data"):
        TeacherLogitCache.load(tmp_path / "cache", {**fingerprint, "data": "another-dataset"}, CPU)


def test_other_views_or_inputs_are_another_cache_and_the_clean_input_ignores_the_views():
    config = smoke_config(method="ca_wkd", teachers=SESSION_TEACHERS, resize=0, pad=4, crop=32,
                          teacher_input="student_view")
    folder = teaching.cache_folder(config, D)
    assert teaching.cache_folder(dataclasses.replace(config, pad=2), D) != folder
    assert teaching.cache_folder(dataclasses.replace(config, teacher_input="clean"), D) != folder
    assert teaching.cache_folder(config, R18) != folder and teaching.cache_folder(config, D) == folder
    clean = dataclasses.replace(config, teacher_input="clean")
    assert teaching.cache_folder(dataclasses.replace(clean, pad=2), D) == teaching.cache_folder(clean, D)


def test_a_trained_teachers_cache_changes_with_what_trains_it():
    config = smoke_config(method="ca_wkd", teachers=SESSION_TEACHERS)
    assert teaching.cache_folder(dataclasses.replace(config, teacher_epochs=3), D) != \
        teaching.cache_folder(config, D)
    assert teaching.cache_folder(dataclasses.replace(config, seed=4), D) == teaching.cache_folder(config, D)


def test_load_detects_a_corrupted_array(tmp_path, splits):
    _, fingerprint = _build(tmp_path, _teacher(D), splits)
    path = tmp_path / "cache" / "train.npy"
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0xFF                       # one flipped byte inside the logits, size unchanged
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupt"):
        TeacherLogitCache.load(tmp_path / "cache", fingerprint, CPU)


def test_load_detects_a_truncated_array(tmp_path, splits):
    _, fingerprint = _build(tmp_path, _teacher(D), splits)
    path = tmp_path / "cache" / "val.npy"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="corrupt"):
        TeacherLogitCache.load(tmp_path / "cache", fingerprint, CPU)


def test_build_refuses_non_finite_teacher_logits(tmp_path, splits):
    model = _teacher(D)
    with torch.no_grad():
        model.net.classifier.bias.fill_(float("nan"))
    with pytest.raises(ValueError, match="NaN or infinite"):
        _build(tmp_path, model, splits)
    assert not (tmp_path / "cache" / "meta.json").exists()


@pytest.mark.slow
def test_cache_file_is_a_plain_npy_readable_without_cakd(tmp_path, splits):
    cache, _ = _build(tmp_path, _teacher(D), splits, "student_view")
    array = np.load(tmp_path / "cache" / "train.npy")
    assert array.dtype == np.float16 and array.shape == tuple(cache.train.shape)


# ----------------------------------------------------------------------------- with trained teachers

@pytest.fixture
def trained(smoke_teachers):
    """The session's trained DenseNet stand-in, its config and data (clean input, as the paper profile)."""
    config = smoke_config(method="ca_wkd", teachers=SESSION_TEACHERS)
    from cakd.training.data import load_splits

    data = load_splits(config)
    return config, load_teacher(config, D, data), data


def test_clean_cache_costs_one_pass_per_image_and_is_then_loaded(trained):
    # N_train + N_val + N_test = 90 + 10 + 20 (CIFAR: 45,000 + 5,000 + 10,000 = 60,000 per teacher)
    config, teacher, data = trained
    cache, built = load_or_build_cache(config, teacher, data, CPU)
    assert built == 90 + 10 + 20 and cache.train.shape == (90, 10)
    assert load_or_build_cache(config, teacher, data, CPU)[1] == 0           # second time: loaded


@pytest.mark.slow
def test_changed_teacher_weights_make_the_cache_stale_and_it_is_rebuilt(trained):
    config, teacher, data = trained
    load_or_build_cache(config, teacher, data, CPU)
    with torch.no_grad():
        teacher.model.net.classifier.bias.add_(1.0)                   # the teacher changed...
    teacher.weights_digest = "a-different-checkpoint-hash"           # ...and so did its hash
    cache, rebuilt = load_or_build_cache(config, teacher, data, CPU)  # another fingerprint: another folder
    assert rebuilt == 120 and cache.meta["fingerprint"]["weights"] == "a-different-checkpoint-hash"


@pytest.mark.slow
def test_corrupt_cache_is_reported_and_rebuilt_never_used(trained):
    config, teacher, data = trained
    cache, _ = load_or_build_cache(config, teacher, data, CPU)
    good = cache.train.clone()
    path = cache.folder / "train.npy"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="corrupt"):
        rebuilt, passes = load_or_build_cache(config, teacher, data, CPU)
    assert passes == 120 and torch.equal(rebuilt.train, good)


@pytest.mark.slow
def test_cache_killed_before_meta_is_never_opened(trained):
    config, teacher, data = trained
    cache, _ = load_or_build_cache(config, teacher, data, CPU)
    (cache.folder / "meta.json").unlink()                            # as if killed before the last write
    assert load_or_build_cache(config, teacher, data, CPU)[1] == 120


def _history_without_passes(result):
    return [{k: v for k, v in row.items() if k not in ("seconds", "teacher_passes")} for row in result.history]


@pytest.mark.slow
def test_clean_input_run_makes_no_teacher_passes_while_training(smoke_teachers):
    # 2 teachers x (90 + 10 + 20) cache passes, then 0 while the student trains
    result = load_or_train(smoke_config(method="ca_wkd", teachers=SESSION_TEACHERS))
    assert result.metrics["teacher_forward_passes"] == 0
    assert result.metrics["cache_build_passes"] == 2 * 120
    assert paths.logit_cache_dir("smoke").is_dir()


@pytest.mark.slow
@pytest.mark.parametrize("teacher_input", ["clean", "student_view"])
def test_cache_and_online_runs_give_the_same_history(smoke_teachers, teacher_input):
    # student views crop 32 of the unpadded image: 2 views (flipped or not), so the student-view cache is 90 x 2
    views = dict(resize=0, pad=0, crop=32)
    cached = load_or_train(smoke_config(method="ca_wkd", teachers=SESSION_TEACHERS, teacher_input=teacher_input,
                                        **views))
    online = load_or_train(smoke_config(method="ca_wkd", teachers=SESSION_TEACHERS, teacher_input=teacher_input,
                                        teacher_mode="online", **views))
    assert cached.config.run_id != online.config.run_id               # two distinct runs in the registry
    for a, b in zip(_history_without_passes(cached), _history_without_passes(online), strict=True):
        assert a.keys() == b.keys()
        # measured: equal to the last bit here (1 and 2 threads, AVX-512 and AVX2 kernels). The tolerance is for a
        # CPU whose convolution depends on the batch (cache: whole splits, online: 32 images), where a teacher's
        # logit can round the other way to float16 (2**-11 relative) in a few samples
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key
    assert cached.metrics["teacher_forward_passes"] == 0
    # 1 epoch of 90 // 32 = 2 full batches of 32, 2 teachers
    assert online.metrics["teacher_forward_passes"] == 2 * 32 * 2


@pytest.mark.slow
def test_method3_ties_count_every_cached_sample_and_do_not_depend_on_the_chunk(smoke_teachers):
    from cakd.training.data import load_splits
    from cakd.training.losses import order_dependent, true_class_probability

    config = smoke_config(method="adaptive_alpha", teachers=SESSION_TEACHERS, resize=0, pad=0, crop=32,
                          teacher_input="student_view")     # 2 views per image (flipped or not): views are samples
    data = load_splits(config)
    caches = [load_or_build_cache(config, load_teacher(config, name, data), data, CPU)[0] for name in config.teachers]
    whole = probes.method3_ties(config, caches, data, CPU, chunk=10_000)
    assert whole == probes.method3_ties(config, caches, data, CPU, chunk=7)
    assert whole["samples"] == 90 * 2
    logits = torch.stack([c.train.float().flatten(0, 1) for c in caches])
    p_true = true_class_probability(logits, data.train.labels.repeat_interleave(2))
    assert whole["tied_pct"] == pytest.approx(100 * order_dependent(p_true).double().mean().item())
