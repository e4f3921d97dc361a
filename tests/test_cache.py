"""The teacher-logit cache: exact equality with online teaching, fingerprints, corruption, pass counts."""
import numpy as np
import pytest
import torch

from cakd import paths
from cakd.cache import CachedTeachers, OnlineTeachers, StaleCacheError, TeacherLogitCache
from cakd.config import profile_config
from cakd.data import NUM_VIEWS, apply_views, make_synthetic
from cakd.models import create_teacher
from cakd.runs import load_or_train
from cakd.teachers import load_or_build_cache, load_or_finetune

CPU = torch.device("cpu")
FAMILIES = ["resnet50", "densenet121", "vit_base_patch16_224"]


@pytest.fixture(scope="module")
def splits():
    return make_synthetic(120)   # 90 train images -> 14,580 (image, view) pairs; = load_splits(_smoke())


def _teacher(name: str, seed: int = 0):
    torch.manual_seed(seed)
    return create_teacher(name, 100, "tiny").eval()


def _build(tmp_path, model, splits, weights="w0"):
    fingerprint = TeacherLogitCache.fingerprint("t", weights, model, splits)
    return TeacherLogitCache.build(tmp_path / "cache", model, splits, fingerprint, CPU, batch_size=1000), fingerprint


@pytest.mark.parametrize("name", FAMILIES)
def test_cached_logits_equal_online_logits_for_random_image_view_pairs(tmp_path, splits, name):
    model = _teacher(name)
    cache, _ = _build(tmp_path, model, splits)
    g = torch.Generator().manual_seed(1)
    indices = torch.randint(0, len(splits.train), (64,), generator=g)
    views = torch.randint(0, NUM_VIEWS, (64,), generator=g)
    images = apply_views(splits.train.images[indices], views)
    online = OnlineTeachers([model], [name])(indices, views, images)
    cached = CachedTeachers([cache], [name])(indices, views, images)
    # both are fp16-rounded teacher outputs; batch composition may move a value by one fp16 ulp
    torch.testing.assert_close(cached, online, rtol=2e-3, atol=2e-3)


def test_cache_shapes_and_dtype(tmp_path, splits):
    cache, _ = _build(tmp_path, _teacher("densenet121"), splits)
    assert cache.train.shape == (90, NUM_VIEWS, 100) and cache.train.dtype == torch.float16
    assert cache.val.shape == (len(splits.val), 100) and cache.test.shape == (len(splits.test), 100)


def test_cache_val_and_test_hold_the_unaugmented_logits(tmp_path, splits):
    model = _teacher("resnet18")
    cache, _ = _build(tmp_path, model, splits)
    with torch.no_grad():
        expected = model(splits.test.images).half()
    torch.testing.assert_close(cache.test, expected, rtol=2e-3, atol=2e-3)


def test_online_teachers_count_forward_passes_and_cache_counts_none(tmp_path, splits):
    a, b = _teacher("resnet18", 0), _teacher("resnet34", 1)
    online = OnlineTeachers([a, b], ["a", "b"])
    cached = CachedTeachers([_build(tmp_path, a, splits)[0]], ["a"])
    indices, views = torch.arange(10), torch.zeros(10, dtype=torch.long)
    images = apply_views(splits.train.images[indices], views)
    online(indices, views, images)
    online(indices, views, images)
    cached(indices, views, images)
    assert online.forward_passes == 2 * 2 * 10
    assert cached.forward_passes == 0


def test_load_refuses_a_cache_built_for_other_teacher_weights(tmp_path, splits):
    model = _teacher("densenet121")
    _, fingerprint = _build(tmp_path, model, splits, weights="w0")
    with pytest.raises(StaleCacheError, match="weights"):
        TeacherLogitCache.load(tmp_path / "cache", {**fingerprint, "weights": "w1"}, CPU)


def test_load_refuses_a_cache_of_other_data(tmp_path, splits):
    model = _teacher("densenet121")
    _, fingerprint = _build(tmp_path, model, splits)
    with pytest.raises(StaleCacheError, match="data"):
        TeacherLogitCache.load(tmp_path / "cache", {**fingerprint, "data": "another-dataset"}, CPU)


def test_load_detects_a_corrupted_array(tmp_path, splits):
    model = _teacher("densenet121")
    _, fingerprint = _build(tmp_path, model, splits)
    path = tmp_path / "cache" / "train.npy"
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0xFF                       # one flipped byte inside the logits, size unchanged
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupt"):
        TeacherLogitCache.load(tmp_path / "cache", fingerprint, CPU)


def test_load_detects_a_truncated_array(tmp_path, splits):
    model = _teacher("densenet121")
    _, fingerprint = _build(tmp_path, model, splits)
    path = tmp_path / "cache" / "val.npy"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="corrupt"):
        TeacherLogitCache.load(tmp_path / "cache", fingerprint, CPU)


def test_build_refuses_non_finite_teacher_logits(tmp_path, splits):
    model = _teacher("densenet121")
    with torch.no_grad():
        model.net.classifier.bias.fill_(float("nan"))
    with pytest.raises(ValueError, match="NaN or infinite"):
        _build(tmp_path, model, splits)
    assert not (tmp_path / "cache" / "meta.json").exists()


def _smoke(**overrides):
    base = dict(method="ca_wkd", teachers=("densenet121", "resnet18"), synthetic_size=120, epochs=2,
                batch_size=16, teacher_epochs=1)
    return profile_config("smoke", **{**base, **overrides})


def test_changed_teacher_checkpoint_makes_the_cache_stale_and_it_is_rebuilt(splits):
    config = _smoke()
    teacher = load_or_finetune(config.teacher_config("densenet121"), splits)
    _, built = load_or_build_cache(teacher, splits, CPU)
    assert built == len(splits.train) * NUM_VIEWS + len(splits.val) + len(splits.test)
    assert load_or_build_cache(teacher, splits, CPU)[1] == 0           # second time: loaded
    with torch.no_grad():
        teacher.model.net.classifier.bias.add_(1.0)                   # the teacher changed...
    teacher.info["weights"] = "a-different-checkpoint-hash"           # ...and so did its hash
    with pytest.warns(UserWarning, match="built for other"):
        cache, rebuilt = load_or_build_cache(teacher, splits, CPU)
    assert rebuilt > 0
    assert cache.meta["fingerprint"]["weights"] == "a-different-checkpoint-hash"


def test_corrupt_cache_is_reported_and_rebuilt_never_used(splits):
    config = _smoke()
    teacher = load_or_finetune(config.teacher_config("densenet121"), splits)
    cache, _ = load_or_build_cache(teacher, splits, CPU)
    good = cache.train.clone()
    path = cache.folder / "train.npy"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="corrupt"):
        rebuilt, passes = load_or_build_cache(teacher, splits, CPU)
    assert passes > 0
    assert torch.equal(rebuilt.train, good)


def test_cache_killed_before_meta_is_never_opened(splits):
    config = _smoke()
    teacher = load_or_finetune(config.teacher_config("densenet121"), splits)
    cache, _ = load_or_build_cache(teacher, splits, CPU)
    (cache.folder / "meta.json").unlink()                            # as if killed before the last write
    _, passes = load_or_build_cache(teacher, splits, CPU)
    assert passes > 0


def test_cache_and_online_runs_give_the_same_history_and_cache_makes_no_teacher_passes():
    cached = load_or_train(_smoke(teacher_mode="cache"))
    online = load_or_train(_smoke(teacher_mode="online"))
    assert cached.config.run_id != online.config.run_id               # two distinct runs in the registry
    for a, b in zip(cached.history, online.history, strict=True):
        for key in a:
            if key not in ("seconds", "teacher_passes"):
                assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key
    assert cached.metrics["teacher_forward_passes"] == 0
    steps = 2 * (90 // 16)                                            # 2 epochs of 5 full batches of 16
    assert online.metrics["teacher_forward_passes"] == steps * 16 * 2  # 2 teachers
    assert cached.metrics["cache_build_passes"] > 0
    assert (paths.logit_cache_dir("smoke")).is_dir()


def test_cache_file_is_a_plain_npy_readable_without_cakd(tmp_path, splits):
    cache, _ = _build(tmp_path, _teacher("densenet121"), splits)
    array = np.load(tmp_path / "cache" / "train.npy")
    assert array.dtype == np.float16 and array.shape == tuple(cache.train.shape)
