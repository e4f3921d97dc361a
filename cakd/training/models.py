"""Student and teacher networks by name, each with its own input pipeline (report section 4.1): any-size float images
[B,3,H,W] in [0, 1] are resized, centre-cropped and normalized (cakd.definitions.networks) on the device; a teacher's
`forward_clean` instead makes its input from the 8-bit image with PIL, as the authors' code did. Teachers are built
from timm as the authors' public CIFAR-100 checkpoints were made; the `tiny` scale builds a small member of each family
under the same name (smoke profile)."""
from __future__ import annotations

import os
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, get_args

import torch
from torch import Tensor, nn

from ..definitions import files, paths
from ..definitions.networks import (STUDENT_PIPELINE, TEACHER_LABELS, TEACHER_PIPELINES, InputPipeline, Scale, Student,
                                    teacher_pipeline)
from . import checkpoints
from .views import center_crop, resize

PRETRAINED_DIR_ENV = "CAKD_PRETRAINED_DIR"  # folder of <teacher name>.pth / .bin for offline use
WEIGHTS_URL = "https://huggingface.co/edadaltocg/{name}/resolve/main/pytorch_model.bin"


class PretrainedUnavailableError(RuntimeError):
    """A teacher's public weights were asked for but neither a local file nor the download could provide them."""


def pil_transform(pipeline: InputPipeline, train: bool = False, pad: int = 0) -> Callable:
    """`pipeline` as torchvision transforms of a PIL image: Resize -> CenterCrop (or, to train, RandomCrop with `pad`
    and a flip) -> ToTensor -> Normalize. PIL resizes the 8-bit image and rounds to 8 bits."""
    from torchvision import transforms as T

    p = pipeline
    steps = [T.Resize((p.resize, p.resize), T.InterpolationMode(p.interpolation))] if p.resize else []
    if train:
        steps += [T.RandomCrop(p.crop, padding=pad or None), T.RandomHorizontalFlip()]
    elif p.crop:
        steps += [T.CenterCrop(p.crop)]
    return T.Compose([*steps, T.ToTensor(), T.Normalize(p.mean, p.std)])


class Classifier(nn.Module):
    """images in [0,1] -> the model's input pipeline -> network -> logits [B, C]."""

    def __init__(self, net: nn.Module, pipeline: InputPipeline):
        super().__init__()
        self.net, self.pipeline = net, pipeline
        self.channels_last = False   # set by the training loop on CUDA, with the weights' memory format
        self.register_buffer("mean", torch.tensor(pipeline.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(pipeline.std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        x = images.to(self.mean.dtype)
        p = self.pipeline
        if p.resize and x.shape[-1] != p.resize:
            x = resize(x, p.resize, p.interpolation)
        if p.crop and x.shape[-1] != p.crop:
            x = center_crop(x, p.crop)
        return self._net((x - self.mean) / self.std)

    def forward_clean(self, images: Tensor) -> Tensor:
        """Logits of uint8 images [B,3,H,W] through the pipeline's PIL transform, image by image on the host, as
        the authors' DataLoader made a teacher's input (PIL's 8-bit resize differs from a float one)."""
        from PIL import Image

        transform = pil_transform(self.pipeline)
        pixels = images.permute(0, 2, 3, 1).cpu().numpy()
        x = torch.stack([transform(Image.fromarray(p)) for p in pixels])
        return self._net(x.to(images.device, self.mean.dtype))

    def _net(self, x: Tensor) -> Tensor:
        return self.net(x.contiguous(memory_format=torch.channels_last) if self.channels_last else x)


# ----------------------------------------------------------------------------- students

def timm_mobilenetv2(num_classes: int, scale: Scale) -> nn.Module:
    """timm `mobilenetv2_100` from scratch (the authors' student, 2,351,972 parameters with 100 classes)."""
    import timm
    from timm.models.efficientnet import _gen_mobilenet_v2

    if scale == "tiny":   # the same blocks at a quarter width and a third of the depth; a stride-1 stem keeps
        # a 2x2 final map at the smoke profile's 32-pixel input, as 224 pixels keep 7x7 in the real one
        net = _gen_mobilenet_v2("mobilenetv2_100", channel_multiplier=0.25, depth_multiplier=0.34,
                                num_classes=num_classes)
        net.conv_stem.stride = (1, 1)
        return net
    return timm.create_model("mobilenetv2_100", pretrained=False, num_classes=num_classes)


def cifar_mobilenetv2(num_classes: int, scale: Scale) -> nn.Module:
    """MobileNetV2 for 32x32 inputs (ours, consistent profile): stride-1 stem and second stage, 4x4 features."""
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
    return net


StudentFn = Callable[[int, Scale], nn.Module]   # (num_classes, scale) -> network, no input pipeline
STUDENTS: dict[str, StudentFn] = {"mobilenetv2_100": timm_mobilenetv2, "cifar_mobilenetv2": cifar_mobilenetv2}


def create_student(name: str, num_classes: int, scale: Scale = "full") -> Classifier:
    _check_scale(scale)
    if name not in STUDENTS:
        raise ValueError(f"student={name!r} is unknown; known students are {sorted(STUDENTS)}")
    return Classifier(STUDENTS[name](num_classes, scale), STUDENT_PIPELINE)


# ----------------------------------------------------------------------------- teachers

@dataclass(frozen=True)
class TeacherSpec:
    """A public CIFAR-100 teacher's architecture and a tiny stand-in of its family: num_classes -> random network."""
    build: Callable[[int], nn.Module]
    tiny: Callable[[int], nn.Module]


def _cifar_resnet(arch: str, tiny_layers: tuple[int, ...] = ()) -> Callable[[int], nn.Module]:
    """timm ResNet with the CIFAR stem of the checkpoints: conv1 3x3 stride 1 (no bias), no max-pool; `tiny_layers`:
    a narrow stand-in with those blocks per stage."""
    def build(num_classes: int) -> nn.Module:
        import timm

        tiny = dict(channels=(8, 16, 32, 64), stem_width=8, layers=tiny_layers) if tiny_layers else {}
        net = timm.create_model(arch, pretrained=False, num_classes=num_classes, **tiny)
        net.conv1 = nn.Conv2d(3, net.conv1.out_channels if tiny else 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
        return net
    return build


def _cifar_densenet(growth_rate: int, block_config: tuple[int, ...]) -> Callable[[int], nn.Module]:
    """timm DenseNet with the checkpoint's CIFAR stem: conv0 3x3 to 2 x growth channels, no norm0, no pool0."""
    def build(num_classes: int) -> nn.Module:
        from timm.models.densenet import DenseNet

        net = DenseNet(growth_rate=growth_rate, block_config=block_config, num_classes=num_classes)
        net.features.conv0 = nn.Conv2d(3, 2 * growth_rate, 3, padding=1, bias=False)
        net.features.norm0 = nn.Identity()
        net.features.pool0 = nn.Identity()
        return net
    return build


def _vit(num_classes: int) -> nn.Module:
    import timm

    return timm.create_model("vit_base_patch16_224.orig_in21k_ft_in1k", pretrained=False, num_classes=num_classes)


def _tiny_vit(num_classes: int) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, num_classes=num_classes)


TEACHERS: dict[str, TeacherSpec] = {
    "resnet18_cifar100": TeacherSpec(_cifar_resnet("resnet18"), _cifar_resnet("resnet18", (1, 1, 1, 1))),
    "resnet34_cifar100": TeacherSpec(_cifar_resnet("resnet34"), _cifar_resnet("resnet34", (1, 2, 1, 1))),
    "resnet50_cifar100": TeacherSpec(_cifar_resnet("resnet50"), _cifar_resnet("resnet50", (1, 1, 1, 1))),
    "densenet121_cifar100": TeacherSpec(_cifar_densenet(12, (6, 12, 24, 16)), _cifar_densenet(8, (2, 2, 2, 2))),
    "vit_base_patch16_224_in21k_ft_cifar100": TeacherSpec(_vit, _tiny_vit),
}


def create_teacher(name: str, num_classes: int, scale: Scale = "full") -> Classifier:
    """A teacher with random weights and its own input pipeline (load weights with `load_public_weights`)."""
    _check_scale(scale)
    if name not in TEACHERS:
        raise ValueError(f"teacher={name!r} is unknown; known teachers are {sorted(TEACHERS)}")
    spec = TEACHERS[name]
    net = spec.tiny(num_classes) if scale == "tiny" else spec.build(num_classes)
    return Classifier(net, teacher_pipeline(name, scale))


def public_weights_path(name: str) -> Path:
    """The teacher's published state_dict on disk: CAKD_PRETRAINED_DIR/<name>.(pth|bin), else downloaded once
    into the cache home. Offline and absent: PretrainedUnavailableError naming both fixes."""
    if name not in TEACHERS:
        raise ValueError(f"teacher={name!r} is unknown; known teachers are {sorted(TEACHERS)}")
    if folder := os.environ.get(PRETRAINED_DIR_ENV):
        for suffix in (".pth", ".bin"):
            if (path := Path(folder) / f"{name}{suffix}").is_file():
                return path
        raise PretrainedUnavailableError(f"{PRETRAINED_DIR_ENV}={folder!r} holds no {name}.pth or {name}.bin")
    path = paths.pretrained_dir() / f"{name}.pth"
    if not path.is_file():
        url = WEIGHTS_URL.format(name=name)
        try:
            with files.atomic_path(path) as tmp:
                torch.hub.download_url_to_file(url, str(tmp), progress=False)
        except (urllib.error.URLError, OSError) as e:
            raise PretrainedUnavailableError(
                f"the weights of teacher {name!r} are not on this machine and could not be downloaded "
                f"({type(e).__name__}: {e}). Fixes: connect to the internet once (they are saved to {path}), "
                f"or download {url} elsewhere, save it as {name}.pth in a folder and set "
                f"{PRETRAINED_DIR_ENV}=<folder>.") from e
    return path


def load_public_weights(model: Classifier, name: str) -> Classifier:
    """Load the published CIFAR-100 state_dict of teacher `name` into `model.net` (weights only, strict)."""
    model.net.load_state_dict(checkpoints.load(public_weights_path(name)))
    return model


if set(STUDENTS) != set(get_args(Student)) or not set(TEACHERS) == set(TEACHER_LABELS) == set(TEACHER_PIPELINES):
    raise TypeError("cakd.training.models must build exactly the students and teachers cakd.definitions.networks names")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _check_scale(scale: str) -> None:
    if scale not in get_args(Scale):
        raise ValueError(f"scale={scale!r} is not one of {list(get_args(Scale))}; tiny = smoke-profile stand-ins")
