"""Student and teacher networks by name (DESIGN section 4). Every model takes uint8 images [B,3,32,32].

The student is MobileNetV2 adapted to 32x32 inputs; teachers come from timm with their input size and
normalization. The `tiny` scale (smoke profile) builds a small member of the same family under the same name.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import CIFAR100_MEAN, CIFAR100_STD, STUDENTS, TEACHERS, TeacherSpec

SCALES = ("full", "tiny")                    # tiny = the smoke profile's stand-ins of the same families
PRETRAINED_DIR_ENV = "CAKD_PRETRAINED_DIR"   # folder of <timm_name>.pth / .safetensors for offline use
StudentFn = Callable[[int, str], nn.Module]
STUDENT_BUILDERS: dict[str, StudentFn] = {}


class PretrainedUnavailableError(RuntimeError):
    """ImageNet weights were asked for but neither the hub nor a local file could provide them."""


class ImageClassifier(nn.Module):
    """uint8 images -> float in [0,1] -> resize to the network's input size -> normalize -> network."""

    def __init__(self, net: nn.Module, input_size: int, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.net = net
        self.input_size = input_size
        self.channels_last = False   # set by the training loop on CUDA, with the weights' memory format
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        x = images.float() / 255
        if x.shape[-1] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        return self.net(x.contiguous(memory_format=torch.channels_last) if self.channels_last else x)


def register_student(name: str) -> Callable[[StudentFn], StudentFn]:
    def add(fn: StudentFn) -> StudentFn:
        STUDENT_BUILDERS[name] = fn
        return fn
    return add


@register_student("mobilenetv2")
def cifar_mobilenetv2(num_classes: int, scale: str) -> nn.Module:
    """MobileNetV2 with a stride-1 stem and a stride-1 second stage: 32x32 -> 4x4 final features."""
    from torchvision.models import MobileNetV2

    # (expansion t, channels c, repeats n, stride s) of the paper, stage 2 stride 2 -> 1 for 32x32 inputs
    setting = [[1, 16, 1, 1], [6, 24, 2, 1], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2],
               [6, 320, 1, 1]]
    width = 1.0
    if scale == "tiny":  # same blocks, one repeat a stage, quarter width; stage 2 keeps its ImageNet stride
        setting = [[t, c, 1, 2 if i == 1 else s] for i, (t, c, _, s) in enumerate(setting)]
        width = 0.25
    net = MobileNetV2(num_classes=num_classes, width_mult=width, inverted_residual_setting=setting)
    net.features[0][0].stride = (1, 1)   # stem: 3x3 conv, stride 2 -> 1
    return ImageClassifier(net, 32, CIFAR100_MEAN, CIFAR100_STD)


@register_student("mobilenet_v2")
def torchvision_mobilenet_v2(num_classes: int, scale: str) -> nn.Module:
    """torchvision's MobileNetV2, unmodified (stride-32 downsampling: 32x32 -> 1x1 final features)."""
    from torchvision.models import mobilenet_v2

    net = mobilenet_v2(num_classes=num_classes, width_mult=0.25 if scale == "tiny" else 1.0)
    return ImageClassifier(net, 32, CIFAR100_MEAN, CIFAR100_STD)


def create_student(name: str, num_classes: int, scale: str = "full") -> nn.Module:
    _check_scale(scale)
    if name not in STUDENT_BUILDERS:
        raise ValueError(f"student={name!r} is unknown; known students are {sorted(STUDENT_BUILDERS)}")
    return STUDENT_BUILDERS[name](num_classes, scale)


def create_teacher(name: str, num_classes: int, scale: str = "full", pretrained: bool = False) -> nn.Module:
    """A timm teacher wrapped with its input size and normalization; `pretrained` loads ImageNet weights."""
    _check_scale(scale)
    if name not in TEACHERS:
        raise ValueError(f"teacher={name!r} is unknown; known teachers are {sorted(TEACHERS)}")
    spec = TEACHERS[name]
    if scale == "tiny":
        if pretrained:
            raise ValueError(f"teacher {name!r}: the tiny smoke stand-ins have no pretrained weights; "
                             "use teacher_pretrained=False with the smoke profile")
        net = _timm_model(spec, num_classes, pretrained=False, **spec.tiny_kwargs)
        return ImageClassifier(net, spec.tiny_input_size, spec.mean, spec.std)
    return ImageClassifier(_timm_model(spec, num_classes, pretrained), spec.input_size, spec.mean, spec.std)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _check_scale(scale: str) -> None:
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r} is not one of {list(SCALES)}; tiny = smoke-profile stand-ins")


def _timm_model(spec: TeacherSpec, num_classes: int, pretrained: bool, **kwargs) -> nn.Module:
    import timm

    if not pretrained:
        return timm.create_model(spec.timm_name, pretrained=False, num_classes=num_classes, **kwargs)
    local = _local_weights(spec.timm_name)
    overlay = {"pretrained_cfg_overlay": dict(file=str(local))} if local else {}
    try:
        return timm.create_model(spec.timm_name, pretrained=True, num_classes=num_classes, **overlay, **kwargs)
    except Exception as e:  # offline: huggingface_hub / urllib raise several types; all mean "no weights"
        raise PretrainedUnavailableError(
            f"could not load ImageNet weights for teacher {spec.timm_name!r} ({type(e).__name__}: {e}). "
            f"Fixes: connect to the internet once (timm caches the weights), or put {spec.timm_name}.pth or "
            f"{spec.timm_name}.safetensors in a folder and set {PRETRAINED_DIR_ENV}=<folder>, or train the "
            "teacher from scratch with teacher_pretrained=False."
        ) from e


def _local_weights(timm_name: str) -> Path | None:
    folder = os.environ.get(PRETRAINED_DIR_ENV)
    if not folder:
        return None
    for suffix in (".safetensors", ".pth", ".bin"):
        if (path := Path(folder) / f"{timm_name}{suffix}").is_file():
            return path
    raise PretrainedUnavailableError(f"{PRETRAINED_DIR_ENV}={folder!r} holds no {timm_name}.safetensors/.pth/.bin")

