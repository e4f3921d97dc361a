"""Small run settings the tests share (the session fixture in conftest.py trains teachers for exactly these)."""
from __future__ import annotations

from typing import Any

from cakd.config import RunConfig, profile_config

D, R18, R34, R50 = "densenet121_cifar100", "resnet18_cifar100", "resnet34_cifar100", "resnet50_cifar100"
V = "vit_base_patch16_224_in21k_ft_cifar100"
# The two cheapest tiny teachers, trained once per pytest run (conftest.session_teachers).
SESSION_TEACHERS = (D, R18)
# 600 generated images: 100 test, 100 val, 400 train (make_synthetic: size // 6 test, max(100, 500 // 10) val).
# Below 500 a class can keep a single training image and the stratified split refuses it.
SMALL: dict[str, Any] = dict(synthetic_size=600, epochs=1, batch_size=32, teacher_epochs=1, teacher_batch_size=32,
                             precision="fp32")


def smoke_config(**overrides: Any) -> RunConfig:
    """The smoke profile at test size (fp32, 1 epoch, 600 images); `overrides` on top."""
    return profile_config("smoke", **{**SMALL, **overrides})
