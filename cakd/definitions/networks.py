"""The networks by name, and each one's input pipeline as data (report section 4.1), like timm's PretrainedCfg: what a
teacher's checkpoint expects (resize, centre crop, normalization). cakd.training.models builds exactly these names;
the recipe pages and `python -m cakd config` describe them without building anything."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Student = Literal["mobilenetv2_100", "cifar_mobilenetv2"]
Scale = Literal["full", "tiny"]                # tiny: the smoke profile's stand-ins of each family
Interpolation = Literal["bilinear", "bicubic"]
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)       # the ResNet checkpoints' normalization
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
HALF = (0.5, 0.5, 0.5)                         # the student's and the ViT's normalization (mean 0.5, std 0.5)


@dataclass(frozen=True)
class InputPipeline:
    """A model's eval transform: resize (None: keep), centre crop (None: keep), normalize. torchvision's
    Resize((r, r)) -> CenterCrop(c) -> Normalize, which cakd.training.models applies batched or with PIL."""
    resize: int | None
    crop: int | None
    interpolation: Interpolation
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def describe(self) -> str:
        steps = [f"Resize(({self.resize}, {self.resize}), {self.interpolation})"] if self.resize else []
        steps += [f"CenterCrop({self.crop})"] if self.crop else []
        return " -> ".join(steps + [f"Normalize(mean {self.mean}, std {self.std})"])


STUDENT_PIPELINE = InputPipeline(None, None, "bicubic", HALF, HALF)   # resize and crop are the augmentation's

# The public CIFAR-100 teachers and how the book names them.
TEACHER_LABELS: dict[str, str] = {
    "resnet18_cifar100": "ResNet-18", "resnet34_cifar100": "ResNet-34", "resnet50_cifar100": "ResNet-50",
    "densenet121_cifar100": "DenseNet-121", "vit_base_patch16_224_in21k_ft_cifar100": "ViT-B/16"}

_AS_IS = InputPipeline(None, None, "bilinear", CIFAR100_MEAN, CIFAR100_STD)   # the ResNets: the 32x32 image
_DENSENET = InputPipeline(36, 32, "bilinear", (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))
# each teacher's (full, tiny) pipeline; the tiny ViT keeps the real one's resize-then-crop (248 -> 224 is 40 -> 32
# here) at a CPU-sized input
TEACHER_PIPELINES: dict[str, tuple[InputPipeline, InputPipeline]] = {
    "resnet18_cifar100": (_AS_IS, _AS_IS), "resnet34_cifar100": (_AS_IS, _AS_IS),
    "resnet50_cifar100": (_AS_IS, _AS_IS), "densenet121_cifar100": (_DENSENET, _DENSENET),
    "vit_base_patch16_224_in21k_ft_cifar100": (InputPipeline(248, 224, "bicubic", HALF, HALF),
                                               InputPipeline(40, 32, "bicubic", HALF, HALF)),
}


def teacher_pipeline(name: str, scale: Scale) -> InputPipeline:
    """Teacher `name`'s input pipeline at `scale`."""
    full, tiny = TEACHER_PIPELINES[name]
    return tiny if scale == "tiny" else full
