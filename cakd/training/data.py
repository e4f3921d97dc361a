"""Datasets as uint8 tensors that live on the device while a run trains, and the authors' split (report section 4.1):
CIFAR-100 through torchvision, any image folder, or generated images (the smoke profile, offline). The student's views
of an image are cakd.training.views'."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..definitions import files, paths
from ..definitions.config import IMAGE_SIZE, RunConfig

VAL_SIZE = 5_000       # the authors' StratifiedShuffleSplit(n_splits=1, test_size=5000, random_state=42)
SPLIT_SEED = 42


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
    fingerprint: str  # content hash of all three splits: keys the teacher-logit caches

    def to(self, device: torch.device | str) -> "Splits":
        return Splits(self.train.to(device), self.val.to(device), self.test.to(device), self.num_classes,
                      self.fingerprint)


def load_splits(config: RunConfig) -> Splits:
    """The train / val / test splits of `config.dataset`, on the CPU (move them with `.to(device)`)."""
    if config.dataset == "synthetic":
        return make_synthetic(config.synthetic_size, config.synthetic_classes)
    if config.dataset == "cifar100":
        return load_cifar100(Path(config.data_dir) if config.data_dir else paths.data_home())
    return load_imagefolder(Path(config.data_dir))


def check_available(config: RunConfig) -> None:
    """Fail now, with the fix in the message, if the run's data is neither on disk nor downloadable."""
    if config.dataset == "cifar100":
        root = Path(config.data_dir) if config.data_dir else paths.data_home()
        if not (root / "cifar-100-python").is_dir():
            _cifar100(root)   # downloads when online, DataUnavailableError offline
    elif config.dataset == "imagefolder":
        _check_imagefolder(Path(config.data_dir))


def stratified_split(labels: np.ndarray, val_size: int = VAL_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, val indices): scikit-learn's StratifiedShuffleSplit(n_splits=1, test_size=val_size,
    random_state=42) over the labels, exactly the authors' split (45,000 / 5,000 of CIFAR-100's 50,000)."""
    from sklearn.model_selection import StratifiedShuffleSplit

    splitter = StratifiedShuffleSplit(n_splits=1, test_size=val_size, random_state=SPLIT_SEED)
    return next(splitter.split(np.zeros(len(labels)), labels))


# ----------------------------------------------------------------------------- datasets

def make_synthetic(size: int, num_classes: int = 100, seed: int = 1234) -> Splits:
    """Procedural 32x32 RGB images of `num_classes` classes, learnable by a small CNN in a few CPU epochs. Each class is
    a smooth random colour pattern (a 4x4x3 grid upsampled to 36x36); an image is a random 32x32 window of its class
    pattern, with random brightness and pixel noise. Generated in memory, seeded."""
    if size < 6 * num_classes:
        raise ValueError(f"synthetic_size={size} is too small: every class needs 6 images (one for test, one for "
                         f"validation, the rest to train), so at least {6 * num_classes} for {num_classes} classes")
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
    # test and val held out per class (CIFAR-100's 50,000 / 10,000 as 5 : 1, then a tenth for validation)
    trainval_idx, test_idx = (torch.from_numpy(i) for i in stratified_split(labels.numpy(), size // 6))
    return _split_train_val(Split(images[trainval_idx], labels[trainval_idx]),
                            Split(images[test_idx], labels[test_idx]), num_classes,
                            val_size=max(num_classes, len(trainval_idx) // 10))


def load_cifar100(root: Path) -> Splits:
    """CIFAR-100 via torchvision: the authors' stratified 45k/5k split of the official train set; the 10k test set."""
    train, test = _cifar100(Path(root))
    return _split_train_val(Split(_hwc_to_chw(train.data), torch.tensor(train.targets, dtype=torch.long)),
                            Split(_hwc_to_chw(test.data), torch.tensor(test.targets, dtype=torch.long)), 100)


def _cifar100(root: Path) -> tuple[Any, Any]:
    """torchvision's CIFAR100 train and test sets, downloaded into `root` when absent and online."""
    from torchvision.datasets import CIFAR100

    on_disk = (root / "cifar-100-python").is_dir()
    try:
        return CIFAR100(str(root), train=True, download=not on_disk), CIFAR100(str(root), train=False)
    except Exception as e:  # URLError, socket errors, a corrupt archive: all leave us without data
        where = (f"{root / 'cifar-100-python'} exists but could not be read" if on_disk else
                 f"CIFAR-100 is not in {root} and could not be downloaded there")
        raise DataUnavailableError(
            f"{where} ({type(e).__name__}: {e}). "
            f"Either connect to the internet (torchvision downloads it to {root}), or copy an extracted "
            f"'cifar-100-python/' folder into {root} (set data_dir=... or CAKD_DATA to use another folder).") from e


def load_imagefolder(root: Path) -> Splits:
    """`root/train/<class>/*` and `root/test/<class>/*` (any image size; resized to 32x32)."""
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    root = Path(root)
    _check_imagefolder(root)
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

    classes = len(train.classes)
    trainval = Split(*stack(train))
    return _split_train_val(trainval, Split(*stack(test)), classes,
                            val_size=max(classes, len(trainval) * VAL_SIZE // 50_000))


def _check_imagefolder(root: Path) -> None:
    need = "an imagefolder dataset needs data_dir/train/<class>/*.png and data_dir/test/<class>/*.png"
    if not root.is_dir():
        raise ValueError(f"data_dir={str(root)!r} is not a folder; {need}")
    for part in ("train", "test"):
        if not (root / part).is_dir():
            raise ValueError(f"data_dir={str(root)!r} has no '{part}/' folder; {need}")


def _split_train_val(trainval: Split, test: Split, num_classes: int, val_size: int = VAL_SIZE) -> Splits:
    """The official training set split stratified into train and val (the authors' split), and the test set."""
    if len(trainval) <= val_size:
        raise ValueError(f"the training set has {len(trainval)} images, too few to hold out {val_size} for "
                         "validation; use a larger dataset (synthetic_size)")
    try:
        train_idx, val_idx = stratified_split(trainval.labels.numpy(), val_size)
    except ValueError as e:   # a class with a single image cannot be stratified
        raise ValueError(f"the training set cannot be split stratified ({e}); every class needs 2+ images") from e
    train_idx, val_idx = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
    train = Split(trainval.images[train_idx], trainval.labels[train_idx])
    val = Split(trainval.images[val_idx], trainval.labels[val_idx])
    parts = []
    for name, split in (("train", train), ("val", val), ("test", test)):
        if len(split) == 0:
            raise ValueError(f"the {name} split is empty; the dataset is too small to split 45/5/10")
        bad = (split.labels < 0) | (split.labels >= num_classes)
        if bad.any():
            raise ValueError(f"{name} labels must lie in [0, {num_classes}); found {split.labels[bad][:5].tolist()}")
        parts += [split.images.contiguous().numpy().tobytes(), split.labels.numpy().tobytes()]
    return Splits(train, val, test, num_classes, files.digest(*parts))


def _hwc_to_chw(array: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2).contiguous()
