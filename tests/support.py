"""Small run settings the tests share (the session fixture in conftest.py trains teachers for exactly these)."""
from __future__ import annotations

from typing import Any

from cakd.definitions.config import RunConfig
from cakd.definitions.profiles import profile_config

D, R18, R34, R50 = "densenet121_cifar100", "resnet18_cifar100", "resnet34_cifar100", "resnet50_cifar100"
V = "vit_base_patch16_224_in21k_ft_cifar100"
# The two cheapest tiny teachers, trained once per pytest run (conftest.session_teachers).
SESSION_TEACHERS = (D, R18)
# 120 generated images of 10 classes: 20 test, 10 val, 90 train (make_synthetic: size // 6 test,
# max(classes, 100 // 10) val), so every class keeps 9 training images; a fifth of the cost of the smoke profile's
# 100 classes at their smallest size (600).
SMALL: dict[str, Any] = dict(synthetic_size=120, synthetic_classes=10, epochs=1, batch_size=32, teacher_epochs=1,
                             teacher_batch_size=32, precision="fp32")


def smoke_config(**overrides: Any) -> RunConfig:
    """The smoke profile at test size (fp32, 1 epoch, 600 images); `overrides` on top."""
    return profile_config("smoke", **{**SMALL, **overrides})
