"""Datasets, the authors' stratified split, and the student's views (cakd.data; the authors' data).

Nothing here touches the network.
"""
from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest
import torch

from cakd.training import data
from cakd.definitions.config import RunConfig, Views
from cakd.definitions.profiles import profile_config
from cakd.training.data import (DataUnavailableError, load_cifar100, load_imagefolder, load_splits, make_synthetic,
                                stratified_split)
from cakd.training.views import apply_views, centre_views, eval_images, random_views, resize

PAD4 = Views(resize=0, pad=4, crop=32, augment="crop_flip")           # consistent profile: 162 views
PAPER = Views(resize=256, pad=0, crop=224, augment="crop_flip")       # paper profile: 2178 views
SMOKE = Views(resize=36, pad=0, crop=32, augment="crop_flip")         # smoke profile: 50 views


def view_id(dy: int, dx: int, flip: int, offsets: int = 9) -> int:
    # v = 2 * (dy * offsets + dx) + flip (cakd.training.views.apply_views docstring)
    return 2 * (dy * offsets + dx) + flip


def nonzero_image(seed: int = 0) -> torch.Tensor:
    """A random uint8 image [1,3,32,32] with every pixel in [1, 255], so the zero padding stands out."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 256, (1, 3, 32, 32), generator=g, dtype=torch.uint8)


def as_float(image: torch.Tensor) -> torch.Tensor:
    return image.float() / 255


# ----------------------------------------------------------------------------- synthetic

def test_synthetic_split_sizes():
    # 600 images: test 600 // 6 = 100; val max(100 classes, 500 // 10) = 100; train 500 - 100 = 400
    splits = make_synthetic(600)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (400, 100, 100)


def test_synthetic_images_are_uint8_chw_and_labels_cover_the_classes():
    splits = make_synthetic(600)
    assert splits.train.images.shape == (400, 3, 32, 32) and splits.train.images.dtype == torch.uint8
    assert splits.train.labels.dtype == torch.int64
    labels = torch.cat([splits.train.labels, splits.val.labels, splits.test.labels])
    # 600 images, labels (arange(600) % 100) shuffled: every class 6 times
    assert splits.num_classes == 100 and torch.equal(labels.bincount(minlength=100), torch.full((100,), 6))


def test_synthetic_validation_split_is_stratified():
    # 100 validation images over 100 classes, stratified: one per class
    assert torch.equal(make_synthetic(600).val.labels.bincount(minlength=100), torch.ones(100, dtype=torch.long))


def test_synthetic_is_deterministic():
    a, b = make_synthetic(600), make_synthetic(600)
    for part in ("train", "val", "test"):
        assert torch.equal(getattr(a, part).images, getattr(b, part).images)
        assert torch.equal(getattr(a, part).labels, getattr(b, part).labels)
    assert a.fingerprint == b.fingerprint


def test_synthetic_fingerprint_depends_on_the_content():
    assert make_synthetic(600).fingerprint != make_synthetic(660).fingerprint
    assert make_synthetic(600).fingerprint != make_synthetic(600, seed=1).fingerprint


def test_load_splits_dispatches_synthetic_by_config():
    splits = load_splits(profile_config("smoke", synthetic_size=600))
    assert splits.fingerprint == make_synthetic(600).fingerprint


def test_too_small_a_dataset_to_split_is_refused():
    # 120 images for 100 classes: a class cannot have a test, a validation and a training image
    with pytest.raises(ValueError, match="at least 600 for 100 classes"):
        make_synthetic(120)
    with pytest.raises(ValueError, match="synthetic_size"):
        profile_config("smoke", synthetic_size=599)


@pytest.mark.parametrize("size", [600, 601, 1200])
def test_every_synthetic_size_the_config_accepts_can_be_split(size):
    # RunConfig.synthetic_size has minimum 600; each split then holds every class (stratified draws)
    profile_config("smoke", synthetic_size=size)
    splits = make_synthetic(size)
    for part in (splits.train, splits.val, splits.test):
        assert len(part.labels.unique()) == 100


# ----------------------------------------------------------------------------- the authors' split

def _cifar_labels(seed: int = 0) -> np.ndarray:
    """A CIFAR-100-shaped label vector: 100 classes x 500 images, shuffled (50,000 labels)."""
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(100), 500))


def test_split_is_scikit_learns_stratified_shuffle_split_with_seed_42():
    from sklearn.model_selection import StratifiedShuffleSplit

    labels = np.random.default_rng(1).permutation(np.repeat(np.arange(100), 50))   # 100 classes x 50
    expected = next(StratifiedShuffleSplit(n_splits=1, test_size=500, random_state=42).split(labels, labels))
    train, val = stratified_split(labels, 500)
    assert np.array_equal(train, expected[0]) and np.array_equal(val, expected[1])


def test_split_at_cifar_size_holds_out_50_images_per_class():
    # 45,000 / 5,000 of 50,000; stratified: 450 train and 50 validation images of each class, disjoint
    labels = _cifar_labels()
    train, val = stratified_split(labels)
    assert (len(train), len(val)) == (45_000, 5_000)
    assert np.array_equal(np.bincount(labels[val], minlength=100), np.full(100, 50))
    assert np.array_equal(np.bincount(labels[train], minlength=100), np.full(100, 450))
    assert len(np.union1d(train, val)) == 50_000


# ----------------------------------------------------------------------------- views

@pytest.mark.parametrize("views, count, centre", [
    (PAPER, 2178, 1088),   # 256 - 224 + 1 = 33 offsets: 33 * 33 * 2 = 2178; centre corner 16: (16 * 33 + 16) * 2
    (PAD4, 162, 80),       # 40 - 32 + 1 = 9 offsets: 9 * 9 * 2 = 162; centre corner 4: (4 * 9 + 4) * 2
    (SMOKE, 50, 24),       # 36 - 32 + 1 = 5 offsets: 5 * 5 * 2 = 50; centre corner 2: (2 * 5 + 2) * 2
])
def test_view_count_and_centre_view(views, count, centre):
    assert (views.count, views.centre) == (count, centre)


def test_no_augmentation_has_one_view_and_every_random_view_is_the_centre():
    views = Views(256, 0, 224, "none")
    assert views.count == 1
    assert torch.equal(random_views(5, views, torch.Generator().manual_seed(0)), centre_views(5, views))


@pytest.mark.parametrize("views", [PAPER, PAD4, SMOKE], ids=["256-224", "pad4-32", "36-32"])
def test_centre_view_equals_the_evaluation_images(views):
    image = nonzero_image(5)
    torch.testing.assert_close(apply_views(image, centre_views(1, views), views), eval_images(image, views))


def test_identity_view_returns_the_image():
    image = nonzero_image()
    assert torch.equal(apply_views(image, torch.tensor([80]), PAD4), as_float(image))


def test_centred_flipped_view_is_the_horizontal_flip():
    image = nonzero_image()
    assert torch.equal(apply_views(image, torch.tensor([81]), PAD4), as_float(image).flip(-1))


@pytest.mark.parametrize("dy, dx", [(0, 0), (2, 7), (8, 8)])
def test_flipped_view_is_the_flip_of_the_same_crop(dy, dx):
    image = nonzero_image(1)
    crop = apply_views(image, torch.tensor([view_id(dy, dx, 0)]), PAD4)
    assert torch.equal(apply_views(image, torch.tensor([view_id(dy, dx, 1)]), PAD4), crop.flip(-1))


def test_top_left_corner_view_shows_padding_at_top_and_left():
    # view 0: dy = dx = 0 -> padded rows 0..31, cols 0..31: 4 zero rows on top, 4 zero columns on the left,
    # and the image's top-left 28x28 at [4:, 4:]
    image = nonzero_image()
    out = apply_views(image, torch.tensor([0]), PAD4)
    assert (out[..., :4, :] == 0).all() and (out[..., :, :4] == 0).all()
    assert torch.equal(out[..., 4:, 4:], as_float(image)[..., :28, :28])


def test_bottom_right_flipped_view_shows_padding_at_bottom_and_left():
    # view 161: dy = dx = 8, flip -> crop = image[4:, 4:] at [:28, :28], zeros bottom and right;
    # flipped: zeros bottom and *left*
    image = nonzero_image()
    out = apply_views(image, torch.tensor([161]), PAD4)
    assert (out[..., 28:, :] == 0).all() and (out[..., :, :4] == 0).all()
    assert torch.equal(out[..., :28, 4:], as_float(image)[..., 4:, 4:].flip(-1))


def test_dy_moves_rows_and_dx_moves_columns():
    # dy = 4, dx = 0 (view 72): rows as in the image, columns shifted right by 4
    # dy = 0, dx = 4 (view 8):  columns as in the image, rows shifted down by 4
    image = as_float(nonzero_image())
    shifted_right = apply_views(nonzero_image(), torch.tensor([view_id(4, 0, 0)]), PAD4)
    shifted_down = apply_views(nonzero_image(), torch.tensor([view_id(0, 4, 0)]), PAD4)
    assert (shifted_right[..., :4] == 0).all() and torch.equal(shifted_right[..., 4:], image[..., :28])
    assert (shifted_down[..., :4, :] == 0).all() and torch.equal(shifted_down[..., 4:, :], image[..., :28, :])


def test_all_162_views_of_a_random_image_are_distinct():
    image = nonzero_image(2)
    views = apply_views(image.expand(162, -1, -1, -1), torch.arange(162), PAD4)
    assert torch.unique(views.flatten(1), dim=0).shape[0] == 162


def test_paper_view_is_a_224_crop_of_the_bicubic_256_resize():
    # view id of corner (dy=5, dx=30), flipped, among 33 offsets: 2 * (5 * 33 + 30) + 1 = 391
    image = nonzero_image(6)
    big = resize(as_float(image), 256, "bicubic")
    out = apply_views(image, torch.tensor([391]), PAPER)
    assert out.shape == (1, 3, 224, 224)
    torch.testing.assert_close(out, big[..., 5:229, 30:254].flip(-1))


def test_a_batch_gets_one_view_per_image():
    images = torch.cat([nonzero_image(s) for s in range(4)])
    ids = torch.tensor([0, 80, 81, 161])
    batched = apply_views(images, ids, PAD4)
    for i in range(4):
        assert torch.equal(batched[i:i + 1], apply_views(images[i:i + 1], ids[i:i + 1], PAD4))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_views_are_floats_in_zero_one_of_the_asked_dtype(dtype):
    out = apply_views(torch.cat([nonzero_image(), nonzero_image(1)]), torch.tensor([3, 100]), PAD4, dtype)
    assert out.dtype == dtype and out.shape == (2, 3, 32, 32) and 0 <= out.min() and out.max() <= 1


def test_random_views_lie_in_range_and_cover_every_view():
    ids = random_views(20000, PAD4, torch.Generator().manual_seed(0))
    assert ids.dtype == torch.int64 and ids.min() >= 0 and ids.max() < 162
    assert len(torch.unique(ids)) == 162


def test_random_views_are_reproducible_with_a_seeded_generator():
    a = random_views(100, PAD4, torch.Generator().manual_seed(3))
    b = random_views(100, PAD4, torch.Generator().manual_seed(3))
    c = random_views(100, PAD4, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


# ----------------------------------------------------------------------------- CIFAR-100 (offline)

def test_cifar100_offline_without_data_names_both_fixes(tmp_path, no_cifar_download):
    root = tmp_path / "empty"
    root.mkdir()
    with pytest.raises(DataUnavailableError) as error:
        load_cifar100(root)
    message = str(error.value)
    assert no_cifar_download, "the loader should have tried torchvision's download"
    assert "internet" in message and "download" in message          # fix 1: go online
    assert "cifar-100-python" in message and str(root) in message    # fix 2: place the folder there
    assert "URLError" in message


def test_cifar100_offline_config_uses_the_data_home(isolated_homes, no_cifar_download):
    # no data_dir: the loader looks in (and would download to) CAKD_DATA, and says so
    with pytest.raises(DataUnavailableError) as error:
        load_splits(RunConfig(dataset="cifar100"))
    assert str(isolated_homes["data"].resolve()) in str(error.value)
    assert no_cifar_download


N_TRAIN, N_TEST = 5_200, 10   # the split holds out 5,000 (the authors' number), so the fake needs more


def _write_fake_cifar100(root, n_train: int, n_test: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """A `cifar-100-python` folder in the official format: pickled dicts with uint8 'data' [N, 3072] (CHW rows)
    and 'fine_labels'. Each image's first two bytes are its index, so a test can tell them apart."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (n_train, 3072), dtype=np.uint8)
    train[:, 0], train[:, 1] = np.arange(n_train) // 256, np.arange(n_train) % 256
    test = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    train_labels = rng.permutation([i % 100 for i in range(n_train)]).tolist()
    for name, array, labels in (("train", train, train_labels), ("test", test, [i % 100 for i in range(n_test)])):
        with open(folder / name, "wb") as f:
            pickle.dump({"data": array, "fine_labels": labels, "coarse_labels": [0] * len(array)}, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"class{i}" for i in range(100)], "coarse_label_names": ["x"] * 20}, f)
    return train, test, train_labels


@pytest.fixture(scope="module")
def fake_cifar100_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake-cifar")
    return (root, *_write_fake_cifar100(root, N_TRAIN, N_TEST))


@pytest.fixture
def fake_cifar100(fake_cifar100_folder, monkeypatch, no_cifar_download):
    import torchvision.datasets.cifar as cifar

    # our files cannot match the official md5 sums: accept them
    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)
    return fake_cifar100_folder


def test_cifar100_from_a_local_folder_holds_out_5000_and_keeps_the_official_test(fake_cifar100):
    # 5,200 train images: val 5,000 (the authors' test_size), train 200; test = the 10 official images, in order
    root, _, test, _ = fake_cifar100
    splits = load_cifar100(root)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (200, 5_000, 10)
    assert torch.equal(splits.test.images, torch.from_numpy(test.reshape(10, 3, 32, 32)))
    assert splits.test.labels.tolist() == list(range(10))
    assert splits.num_classes == 100


def test_cifar100_split_is_the_authors_stratified_split_of_the_official_train_set(fake_cifar100):
    root, train, _, labels = fake_cifar100
    splits = load_cifar100(root)
    train_idx, val_idx = stratified_split(np.array(labels))
    official = torch.from_numpy(train.reshape(N_TRAIN, 3, 32, 32))
    assert torch.equal(splits.train.images, official[train_idx]) and torch.equal(splits.val.images, official[val_idx])
    assert splits.val.labels.tolist() == [labels[i] for i in val_idx]


def test_cifar100_with_a_local_folder_does_not_try_to_download(fake_cifar100, no_cifar_download):
    load_cifar100(fake_cifar100[0])
    assert no_cifar_download == []


# ----------------------------------------------------------------------------- imagefolder

RED, GREEN = (200, 10, 30), (5, 180, 60)


def _write_tree(root, classes):
    """root/<part>/<class>/<i>.png, each a constant-colour image of the given (width, height)."""
    from PIL import Image

    for part, per_class in classes.items():
        for name, (colour, sizes) in per_class.items():
            folder = root / part / name
            folder.mkdir(parents=True)
            for i, size in enumerate(sizes):
                Image.new("RGB", size, colour).save(folder / f"{i}.png")


def _two_class_tree(root):
    sizes = [(32, 32), (64, 48), (20, 40), (33, 31), (100, 100)] * 2       # 10 per class
    _write_tree(root, {"train": {"cat": (RED, sizes), "dog": (GREEN, sizes)},
                       "test": {"cat": (RED, [(32, 32), (50, 50)]), "dog": (GREEN, [(16, 16)])}})


def test_imagefolder_resizes_every_image_to_32x32_and_splits_train(tmp_path):
    # 20 train images: val = max(2 classes, 20 * 5000 // 50000 = 2) = 2, train = 18; test = 3
    _two_class_tree(tmp_path)
    splits = load_imagefolder(tmp_path)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 2, 3)
    assert splits.train.images.shape == (18, 3, 32, 32) and splits.train.images.dtype == torch.uint8
    assert splits.num_classes == 2


def test_imagefolder_labels_follow_sorted_class_folders_and_keep_colours(tmp_path):
    # classes sorted: cat = 0 (red), dog = 1 (green); resizing a constant image keeps its colour exactly
    _two_class_tree(tmp_path)
    splits = load_imagefolder(tmp_path)
    for split in (splits.train, splits.val, splits.test):
        for image, label in zip(split.images, split.labels):
            colour = RED if label == 0 else GREEN
            assert torch.equal(image, torch.tensor(colour, dtype=torch.uint8).view(3, 1, 1).expand(3, 32, 32))
    assert splits.test.labels.tolist() == [0, 0, 1]
    assert sorted(splits.val.labels.tolist()) == [0, 1]          # stratified: one of each class


def test_imagefolder_through_load_splits(tmp_path):
    _two_class_tree(tmp_path)
    splits = load_splits(RunConfig(dataset="imagefolder", data_dir=str(tmp_path)))
    assert splits.fingerprint == load_imagefolder(tmp_path).fingerprint


@pytest.mark.parametrize("missing", ["train", "test"])
def test_imagefolder_without_a_part_names_data_dir(tmp_path, missing):
    _two_class_tree(tmp_path)
    shutil.rmtree(tmp_path / missing)
    with pytest.raises(ValueError, match=rf"data_dir=.*'{missing}/'"):
        load_imagefolder(tmp_path)


def test_imagefolder_with_different_train_and_test_classes_is_refused(tmp_path):
    _two_class_tree(tmp_path)
    _write_tree(tmp_path, {"test": {"emu": (RED, [(32, 32)])}})
    with pytest.raises(ValueError, match="different class folders"):
        load_imagefolder(tmp_path)


def test_imagefolder_with_an_empty_class_folder_is_refused(tmp_path):
    _two_class_tree(tmp_path)
    (tmp_path / "train" / "emu").mkdir()
    with pytest.raises(ValueError, match="data_dir"):
        load_imagefolder(tmp_path)


def test_outbound_connections_are_refused_during_tests():
    # conftest's guard: a download attempt fails at once instead of reaching the network (192.0.2.1 is TEST-NET-1)
    import socket

    with pytest.raises(OSError, match="must not use the network"):
        socket.create_connection(("192.0.2.1", 80), timeout=1)


def test_synthetic_config_never_loads_cifar(monkeypatch):
    monkeypatch.setattr(data, "load_cifar100", lambda *a, **k: pytest.fail("synthetic must not load CIFAR"))
    load_splits(profile_config("smoke", synthetic_size=600))
