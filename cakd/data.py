"""Datasets as device-resident uint8 tensors, and the batched on-device augmentation (DESIGN section 3).

The augmentation (zero-pad 4, random 32x32 crop, horizontal flip) has exactly 162 views per image: 9 x-offsets
x 9 y-offsets x 2 flips. Each sampled view carries its id, so teacher logits can be cached per (image, view).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import paths
from .config import SPLIT_FRACTIONS, RunConfig, TeacherConfig

PAD = 4
IMAGE_SIZE = 32
OFFSETS = 2 * PAD + 1                    # 9 crop positions per axis
NUM_VIEWS = OFFSETS * OFFSETS * 2        # 162
IDENTITY_VIEW = (PAD * OFFSETS + PAD) * 2  # centred crop, no flip: the un-augmented image
SPLIT_SEED = 0                           # the train/val split is a property of the dataset, not of a run


class DataUnavailableError(RuntimeError):
    """The requested dataset is neither on disk nor downloadable."""


@dataclass
class Split:
    images: Tensor   # uint8 [N, 3, 32, 32]
    labels: Tensor   # int64 [N]

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> "Split":
        return Split(self.images.to(device), self.labels.to(device))


@dataclass
class Splits:
    train: Split
    val: Split
    test: Split
    num_classes: int
    fingerprint: str  # content hash of all three splits: keys the teacher-logit cache

    def to(self, device: torch.device | str) -> "Splits":
        return Splits(self.train.to(device), self.val.to(device), self.test.to(device), self.num_classes,
                      self.fingerprint)


def load_splits(config: RunConfig | TeacherConfig) -> Splits:
    """The train / val / test splits of `config.dataset`, on the CPU (move them with `.to(device)`)."""
    if config.dataset == "synthetic":
        return make_synthetic(config.synthetic_size)
    if config.dataset == "cifar100":
        return load_cifar100(Path(config.data_dir) if config.data_dir else paths.data_home())
    return load_imagefolder(Path(config.data_dir))


# ----------------------------------------------------------------------------- augmentation

def random_views(n: int, generator: torch.Generator) -> Tensor:
    """n view ids, uniform over the 162 views (drawn on the CPU generator, for reproducibility)."""
    return torch.randint(0, NUM_VIEWS, (n,), generator=generator)


def apply_views(images: Tensor, view_ids: Tensor) -> Tensor:
    """Crop and flip a uint8 batch [B,3,32,32] to the given views, in one gather on the images' device.

    view id v: flip = v % 2, and (v // 2) = dy * 9 + dx is the crop's top-left corner in the padded image.
    """
    view_ids = view_ids.to(images.device)
    flip, corner = view_ids % 2, view_ids // 2
    dy, dx = corner // OFFSETS, corner % OFFSETS
    padded = F.pad(images, (PAD, PAD, PAD, PAD))                        # [B, 3, 40, 40], zeros
    ar = torch.arange(IMAGE_SIZE, device=images.device)
    rows = dy[:, None] + ar                                              # [B, 32]
    cols = dx[:, None] + torch.where(flip[:, None].bool(), IMAGE_SIZE - 1 - ar, ar)
    b = torch.arange(len(images), device=images.device)
    c = torch.arange(images.shape[1], device=images.device)
    return padded[b[:, None, None, None], c[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]


def identity_views(n: int) -> Tensor:
    return torch.full((n,), IDENTITY_VIEW, dtype=torch.long)


# ----------------------------------------------------------------------------- datasets

def make_synthetic(size: int, num_classes: int = 100, seed: int = 1234) -> Splits:
    """Procedural 32x32 RGB images of `num_classes` classes, learnable by a small CNN in a few CPU epochs.

    Each class is a smooth random colour pattern (a 4x4x3 grid upsampled to 36x36); an image is a random
    32x32 window of its class pattern, with random brightness and pixel noise. Generated in memory, seeded.
    """
    g = torch.Generator().manual_seed(seed)
    frame = IMAGE_SIZE + 4
    patterns = F.interpolate(torch.rand(num_classes, 3, 4, 4, generator=g), size=(frame, frame),
                             mode="bilinear", align_corners=False)                      # [C, 3, 36, 36]
    labels = (torch.arange(size) % num_classes)[torch.randperm(size, generator=g)]
    sy, sx = torch.randint(0, frame - IMAGE_SIZE + 1, (2, size), generator=g)         # window corners
    ar = torch.arange(IMAGE_SIZE)
    rows, cols = sy[:, None] + ar, sx[:, None] + ar
    images = patterns[labels[:, None, None, None], torch.arange(3)[None, :, None, None],
                      rows[:, None, :, None], cols[:, None, None, :]]
    images = images * (0.8 + 0.4 * torch.rand(size, 1, 1, 1, generator=g))
    images = images + 0.08 * torch.randn(images.shape, generator=g)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    return _split_by_fractions(images, labels, num_classes)


def load_cifar100(root: Path) -> Splits:
    """CIFAR-100 through torchvision: 45k/5k seeded split of the official train set, official 10k test set."""
    from torchvision.datasets import CIFAR100

    root = Path(root)
    on_disk = (root / "cifar-100-python").is_dir()
    try:
        train = CIFAR100(str(root), train=True, download=not on_disk)
        test = CIFAR100(str(root), train=False, download=False)
    except Exception as e:  # URLError, socket errors, a corrupt archive: all leave us without data
        where = (f"{root / 'cifar-100-python'} exists but could not be read" if on_disk else
                 f"CIFAR-100 is not in {root} and could not be downloaded there")
        raise DataUnavailableError(
            f"{where} ({type(e).__name__}: {e}). "
            f"Either connect to the internet (torchvision downloads it to {root}), or copy an extracted "
            f"'cifar-100-python/' folder into {root} (set data_dir=... or CAKD_DATA to use another folder)."
        ) from e
    images = _hwc_to_chw(train.data)
    labels = torch.tensor(train.targets, dtype=torch.long)
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_val = len(labels) * SPLIT_FRACTIONS[1] // (SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1])   # 5,000
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    return _splits(Split(images[train_idx], labels[train_idx]), Split(images[val_idx], labels[val_idx]),
                   Split(_hwc_to_chw(test.data), torch.tensor(test.targets, dtype=torch.long)), 100)


def load_imagefolder(root: Path) -> Splits:
    """`root/train/<class>/*` and `root/test/<class>/*` (any image size; resized to 32x32)."""
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"data_dir={str(root)!r} is not a folder; an imagefolder dataset needs "
                         "data_dir/train/<class>/*.png and data_dir/test/<class>/*.png")
    for part in ("train", "test"):
        if not (root / part).is_dir():
            raise ValueError(f"data_dir={str(root)!r} has no '{part}/' folder; an imagefolder dataset needs "
                             "data_dir/train/<class>/*.png and data_dir/test/<class>/*.png")
    resize = transforms.Compose([transforms.Resize((IMAGE_SIZE, IMAGE_SIZE)), transforms.PILToTensor()])
    try:
        train, test = (ImageFolder(str(root / part), transform=resize) for part in ("train", "test"))
    except (FileNotFoundError, RuntimeError) as e:
        raise ValueError(f"data_dir={str(root)!r} is not a valid image folder: {e}") from e
    if train.classes != test.classes:
        raise ValueError(f"data_dir={str(root)!r}: train/ and test/ have different class folders "
                         f"({len(train.classes)} vs {len(test.classes)}); they must match")

    def stack(ds: ImageFolder) -> tuple[Tensor, Tensor]:
        pairs = [ds[i] for i in range(len(ds))]
        return (torch.stack([x.expand(3, -1, -1) for x, _ in pairs]),
                torch.tensor([y for _, y in pairs], dtype=torch.long))

    images, labels = stack(train)
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_val = max(1, len(labels) * SPLIT_FRACTIONS[1] // (SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1]))
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    return _splits(Split(images[train_idx], labels[train_idx]), Split(images[val_idx], labels[val_idx]),
                   Split(*stack(test)), len(train.classes))


def _split_by_fractions(images: Tensor, labels: Tensor, num_classes: int) -> Splits:
    n = len(labels)
    n_train = n * SPLIT_FRACTIONS[0] // sum(SPLIT_FRACTIONS)
    n_val = n * SPLIT_FRACTIONS[1] // sum(SPLIT_FRACTIONS)
    parts = [slice(0, n_train), slice(n_train, n_train + n_val), slice(n_train + n_val, n)]
    return _splits(*(Split(images[p], labels[p]) for p in parts), num_classes)


def _splits(train: Split, val: Split, test: Split, num_classes: int) -> Splits:
    h = hashlib.blake2b(digest_size=16)
    for name, split in (("train", train), ("val", val), ("test", test)):
        if len(split) == 0:
            raise ValueError(f"the {name} split is empty; the dataset is too small to split 45/5/10")
        bad = (split.labels < 0) | (split.labels >= num_classes)
        if bad.any():
            raise ValueError(f"{name} labels must lie in [0, {num_classes}); found {split.labels[bad][:5].tolist()}")
        h.update(split.images.contiguous().numpy().tobytes())
        h.update(split.labels.numpy().tobytes())
    return Splits(train, val, test, num_classes, h.hexdigest())


def _hwc_to_chw(array: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2).contiguous()
