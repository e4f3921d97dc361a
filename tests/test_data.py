"""Datasets and the 162-view augmentation (cakd.data; DESIGN section 3). Nothing here touches the network."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from cakd import data
from cakd.config import RunConfig, profile_config
from cakd.data import (IDENTITY_VIEW, NUM_VIEWS, DataUnavailableError, apply_views, load_cifar100,
                       load_imagefolder, load_splits, make_synthetic, random_views)


def view_id(dy: int, dx: int, flip: int) -> int:
    # v = 2 * (dy * 9 + dx) + flip (cakd.data.apply_views docstring)
    return 2 * (dy * 9 + dx) + flip


def nonzero_image(seed: int = 0) -> torch.Tensor:
    """A random uint8 image [1,3,32,32] with every pixel in [1, 255], so the zero padding stands out."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 256, (1, 3, 32, 32), generator=g, dtype=torch.uint8)


# ----------------------------------------------------------------------------- synthetic

def test_synthetic_split_sizes_follow_45_5_10():
    # 2000 * 45 // 60 = 1500 train; 2000 * 5 // 60 = 166 val; the rest, 2000 - 1666 = 334, test
    splits = make_synthetic(2000)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1500, 166, 334)


def test_synthetic_images_are_uint8_chw_and_labels_cover_the_classes():
    splits = make_synthetic(600)
    assert splits.train.images.shape == (450, 3, 32, 32) and splits.train.images.dtype == torch.uint8
    assert splits.train.labels.dtype == torch.int64
    labels = torch.cat([splits.train.labels, splits.val.labels, splits.test.labels])
    # 600 images, labels (arange(600) % 100) shuffled: every class 6 times
    assert splits.num_classes == 100 and torch.equal(labels.bincount(minlength=100), torch.full((100,), 6))


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
    # 10 images: train 10 * 45 // 60 = 7, val 10 * 5 // 60 = 0 -> empty validation split
    with pytest.raises(ValueError, match="val split is empty"):
        make_synthetic(10)


# ----------------------------------------------------------------------------- views

def test_there_are_162_views_and_the_identity_is_the_centred_unflipped_crop():
    # 9 x-offsets x 9 y-offsets x 2 flips; centre dy = dx = 4 -> 2 * (4 * 9 + 4) = 80
    assert NUM_VIEWS == 162 and IDENTITY_VIEW == view_id(4, 4, 0) == 80


def test_identity_view_returns_the_image():
    image = nonzero_image()
    assert torch.equal(apply_views(image, torch.tensor([80])), image)


def test_centred_flipped_view_is_the_horizontal_flip():
    image = nonzero_image()
    assert torch.equal(apply_views(image, torch.tensor([81])), image.flip(-1))


@pytest.mark.parametrize("dy, dx", [(0, 0), (2, 7), (8, 8)])
def test_flipped_view_is_the_flip_of_the_same_crop(dy, dx):
    image = nonzero_image(1)
    crop = apply_views(image, torch.tensor([view_id(dy, dx, 0)]))
    assert torch.equal(apply_views(image, torch.tensor([view_id(dy, dx, 1)])), crop.flip(-1))


def test_top_left_corner_view_shows_padding_at_top_and_left():
    # view 0: dy = dx = 0 -> padded rows 0..31, cols 0..31: 4 zero rows on top, 4 zero columns on the left,
    # and the image's top-left 28x28 at [4:, 4:]
    image = nonzero_image()
    out = apply_views(image, torch.tensor([0]))
    assert (out[..., :4, :] == 0).all() and (out[..., :, :4] == 0).all()
    assert torch.equal(out[..., 4:, 4:], image[..., :28, :28])


def test_bottom_right_flipped_view_shows_padding_at_bottom_and_left():
    # view 161: dy = dx = 8, flip -> crop = image[4:, 4:] at [:28, :28], zeros bottom and right;
    # flipped: zeros bottom and *left*
    image = nonzero_image()
    out = apply_views(image, torch.tensor([161]))
    assert (out[..., 28:, :] == 0).all() and (out[..., :, :4] == 0).all()
    assert torch.equal(out[..., :28, 4:], image[..., 4:, 4:].flip(-1))


def test_dy_moves_rows_and_dx_moves_columns():
    # dy = 4, dx = 0 (view 72): rows as in the image, columns shifted right by 4
    # dy = 0, dx = 4 (view 8):  columns as in the image, rows shifted down by 4
    image = nonzero_image()
    shifted_right = apply_views(image, torch.tensor([view_id(4, 0, 0)]))
    shifted_down = apply_views(image, torch.tensor([view_id(0, 4, 0)]))
    assert (shifted_right[..., :4] == 0).all() and torch.equal(shifted_right[..., 4:], image[..., :28])
    assert (shifted_down[..., :4, :] == 0).all() and torch.equal(shifted_down[..., 4:, :], image[..., :28, :])


def test_all_162_views_of_a_random_image_are_distinct():
    image = nonzero_image(2)
    views = apply_views(image.expand(NUM_VIEWS, -1, -1, -1), torch.arange(NUM_VIEWS))
    assert torch.unique(views.flatten(1), dim=0).shape[0] == NUM_VIEWS


def test_a_batch_gets_one_view_per_image():
    images = torch.cat([nonzero_image(s) for s in range(4)])
    ids = torch.tensor([0, 80, 81, 161])
    batched = apply_views(images, ids)
    for i in range(4):
        assert torch.equal(batched[i:i + 1], apply_views(images[i:i + 1], ids[i:i + 1]))


def test_views_keep_dtype_and_shape():
    out = apply_views(torch.cat([nonzero_image(), nonzero_image(1)]), torch.tensor([3, 100]))
    assert out.dtype == torch.uint8 and out.shape == (2, 3, 32, 32)


def test_random_views_lie_in_range_and_cover_every_view():
    ids = random_views(20000, torch.Generator().manual_seed(0))
    assert ids.dtype == torch.int64 and ids.min() >= 0 and ids.max() < NUM_VIEWS
    assert len(torch.unique(ids)) == NUM_VIEWS


def test_random_views_are_reproducible_with_a_seeded_generator():
    a = random_views(100, torch.Generator().manual_seed(3))
    b = random_views(100, torch.Generator().manual_seed(3))
    c = random_views(100, torch.Generator().manual_seed(4))
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


def _write_fake_cifar100(root, n_train: int, n_test: int) -> tuple[np.ndarray, np.ndarray]:
    """A `cifar-100-python` folder in the official format: pickled dicts with uint8 'data' [N, 3072] (CHW rows)
    and 'fine_labels'. Python-3 pickles with str keys (torchvision unpickles with encoding='latin1')."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (n_train, 3072), dtype=np.uint8)
    test = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    for name, array in (("train", train), ("test", test)):
        labels = [i % 100 for i in range(len(array))]
        with open(folder / name, "wb") as f:
            pickle.dump({"data": array, "fine_labels": labels, "coarse_labels": [0] * len(array)}, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"class{i}" for i in range(100)], "coarse_label_names": ["x"] * 20}, f)
    return train, test


@pytest.fixture
def fake_cifar100(tmp_path, monkeypatch, no_cifar_download):
    import torchvision.datasets.cifar as cifar

    # our files cannot match the official md5 sums: accept them
    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)
    train, test = _write_fake_cifar100(tmp_path, n_train=50, n_test=10)
    return tmp_path, train, test


def test_cifar100_from_a_local_folder_splits_train_45_5_and_keeps_the_official_test(fake_cifar100):
    # 50 train images: val = 50 * 5 // 50 = 5, train = 45; test = the 10 official test images, in order
    root, train, test = fake_cifar100
    splits = load_cifar100(root)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (45, 5, 10)
    assert torch.equal(splits.test.images, torch.from_numpy(test.reshape(10, 3, 32, 32)))
    assert splits.test.labels.tolist() == list(range(10))
    assert splits.num_classes == 100


def test_cifar100_train_and_val_partition_the_official_train_set(fake_cifar100):
    # labels are 0..49, one image each: the labels say which official image went where
    root, train, _ = fake_cifar100
    splits = load_cifar100(root)
    labels = torch.cat([splits.train.labels, splits.val.labels])
    assert sorted(labels.tolist()) == list(range(50))
    official = torch.from_numpy(train.reshape(50, 3, 32, 32))
    assert torch.equal(torch.cat([splits.train.images, splits.val.images]), official[labels])


def test_cifar100_split_is_deterministic_and_not_the_file_order(fake_cifar100):
    root, _, _ = fake_cifar100
    a, b = load_cifar100(root), load_cifar100(root)
    assert torch.equal(a.val.labels, b.val.labels) and a.fingerprint == b.fingerprint
    assert a.val.labels.tolist() != list(range(5))


def test_cifar100_with_a_local_folder_does_not_try_to_download(fake_cifar100, no_cifar_download):
    load_cifar100(fake_cifar100[0])
    assert no_cifar_download == []


# ----------------------------------------------------------------------------- imagefolder

RED, GREEN = (200, 10, 30), (5, 180, 60)


def _write_tree(root, classes: dict[str, dict[str, tuple[tuple[int, int, int], list[tuple[int, int]]]]]):
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
    # 20 train images: val = max(1, 20 * 5 // 50) = 2, train = 18; test = 3
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


def test_imagefolder_through_load_splits(tmp_path):
    _two_class_tree(tmp_path)
    splits = load_splits(RunConfig(dataset="imagefolder", data_dir=str(tmp_path)))
    assert splits.fingerprint == load_imagefolder(tmp_path).fingerprint


@pytest.mark.parametrize("missing", ["train", "test"])
def test_imagefolder_without_a_part_names_data_dir(tmp_path, missing):
    _two_class_tree(tmp_path)
    import shutil
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
    load_splits(profile_config("smoke", synthetic_size=60))
