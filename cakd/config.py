"""Every knob of a run, its validation, its hash, and the two profiles (`paper`, `smoke`).

The defaults here are the single place where the report's settings and our choices for what it leaves open
are written down; `CHOICES` gives the reason for each choice and the book prints it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

METHODS = ("baseline", "kd", "ca_wkd", "alpha_guided", "adaptive_alpha")
METHOD_TITLES = {"baseline": "Baseline (no teacher)", "kd": "Single-teacher KD", "ca_wkd": "Method 1 (CA-WKD)",
                 "alpha_guided": "Method 2 (alpha-guided)", "adaptive_alpha": "Method 3 (adaptive alpha)"}
DATASETS = ("cifar100", "synthetic", "imagefolder")
STUDENTS = ("mobilenetv2", "mobilenet_v2")
PROFILES = ("paper", "smoke")
CHOICE_FIELDS = {  # ambiguity options of the report (book: reproduction notes); first value = literal reading
    "weighting": ("sample", "batch"),
    "aggregation": ("sum_kl", "mean_logits"),
    "confidence_temperature": ("one", "tau"),
    "m2_confidence": ("max_prob", "true_class"),
    "m3_alpha": ("batch", "sample"),
    "schedule": ("cosine", "constant"),
    "augment": ("crop_flip", "none"),
    "teacher_mode": ("cache", "online"),
    "model_scale": ("full", "tiny"),
    "device": ("auto", "cpu", "cuda"),
}


@dataclass(frozen=True)
class TeacherSpec:
    """How a teacher is built (timm name) and fed (input size, normalization), like timm's PretrainedCfg."""
    timm_name: str
    input_size: int                      # images are resized (bilinear) from 32x32 to this
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    tiny_kwargs: dict[str, Any]          # smoke-profile stand-in: the same timm family, tiny widths/depths
    tiny_input_size: int


_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_INCEPTION = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))   # timm's vit_base_patch16_224.augreg2_in21k_ft_in1k stats
_TINY_RESNET = dict(channels=(8, 16, 32, 64), stem_width=8, stem_type="deep")  # no 7x7+maxpool: 4x faster on CPU
TEACHERS: dict[str, TeacherSpec] = {
    "resnet18": TeacherSpec("resnet18", 224, *_IMAGENET, dict(_TINY_RESNET, layers=(1, 1, 1, 1)), 32),
    "resnet34": TeacherSpec("resnet34", 224, *_IMAGENET, dict(_TINY_RESNET, layers=(1, 2, 1, 1)), 32),
    "resnet50": TeacherSpec("resnet50", 224, *_IMAGENET, dict(_TINY_RESNET, layers=(1, 1, 1, 1)), 32),
    "densenet121": TeacherSpec("densenet121", 224, *_IMAGENET, dict(growth_rate=8, block_config=(2, 2, 2, 2)), 32),
    "vit_base_patch16_224": TeacherSpec("vit_base_patch16_224", 224, *_INCEPTION,
                                        dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3), 32),
}
TEACHER_LABELS = {"resnet18": "ResNet-18", "resnet34": "ResNet-34", "resnet50": "ResNet-50",
                  "densenet121": "DenseNet-121", "vit_base_patch16_224": "ViT-B/16"}

# CIFAR-100 training-set statistics: the student's input normalization.
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
SPLIT_FRACTIONS = (45, 5, 10)   # train / val / test, as CIFAR-100's 45k / 5k / 10k
# Part of every run hash: bump it when a code change alters results, so old registry entries are not reused.
RESULTS_VERSION = 2
FLOAT_FIELDS = ("lr", "weight_decay", "temperature", "alpha", "gamma", "theta", "teacher_lr")


def _nohash(default: Any) -> Any:
    """A field that changes how fast a run goes, not what it computes: left out of the run hash."""
    return field(default=default, metadata={"hash": False})


@dataclass(frozen=True)
class RunConfig:
    """One training run of the student (or, with method='baseline' and no teachers, the plain student)."""
    profile: str = "smoke"
    method: str = "baseline"             # baseline | kd | ca_wkd (M1) | alpha_guided (M2) | adaptive_alpha (M3)
    teachers: tuple[str, ...] = ()       # timm names, e.g. ("densenet121", "resnet50")
    # data
    dataset: str = "synthetic"           # cifar100 | synthetic | imagefolder
    data_dir: str | None = None          # imagefolder root, or the folder holding cifar-100-python/
    synthetic_size: int = 2000           # images in all (train/val/test = 45/5/10 parts)
    augment: str = "crop_flip"           # zero-pad 4, random 32x32 crop, horizontal flip (162 views)
    # models
    student: str = "mobilenetv2"         # CIFAR MobileNetV2 (stride-1 stem); mobilenet_v2 = torchvision's
    model_scale: str = "full"            # tiny = smoke stand-ins of the same families
    # optimisation (report: AdamW, lr 1e-2, 100 epochs; the rest is ours, see CHOICES)
    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-2
    weight_decay: float = 0.01           # torch's AdamW default
    schedule: str = "cosine"
    # distillation
    temperature: float = 4.0
    alpha: float = 0.5                   # weight of the KL term (torchdistill's alpha weights CE instead)
    gamma: float = 2.0                   # Method 2: alpha = sigmoid(gamma * (conf - theta))
    theta: float = 0.3
    use_ce: bool = True                  # Method 3 without CE: L = KL to the chosen teacher
    weighting: str = "sample"            # M1/M2 teacher weights per sample or per batch
    aggregation: str = "sum_kl"          # M1/M2: sum of weighted KLs (Eq. 3) or KL to weighted mean logits
    divide_by_k: bool = False            # M1/M2: divide the KD term by K (as CA-MKD's code does)
    confidence_temperature: str = "one"  # softmax temperature of teacher confidences: 1 or tau
    m2_confidence: str = "max_prob"      # M2 batch confidence: max probability or true-class probability
    m3_alpha: str = "batch"              # M3 alpha: batch mean (report) or per sample
    # teachers (fine-tuned once per profile and shared by every run)
    teacher_mode: str = "cache"          # cache = exact 162-view logit cache; online = teachers every step
    teacher_epochs: int = 5
    teacher_lr: float = 1e-4
    teacher_batch_size: int = 128
    teacher_pretrained: bool = True      # ImageNet weights through timm (needs the hub or a local file)
    teacher_seed: int = 0
    seed: int = 0
    # speed only: not part of the run hash
    device: str = _nohash("auto")
    compile: bool = _nohash(False)
    eval_batch_size: int = _nohash(1024)

    def __post_init__(self) -> None:
        if isinstance(self.teachers, str):   # papermill's `-p teachers resnet50` passes a plain string
            raise ValueError(f"RunConfig.teachers={self.teachers!r} must be a list of teacher names, "
                             f"e.g. ['{self.teachers}'] (papermill: -y 'teachers: [{self.teachers}]')")
        if not isinstance(self.teachers, (list, tuple)):   # `-p teachers 5`: not a TypeError from tuple()
            raise ValueError(f"RunConfig.teachers={self.teachers!r} must be a list of teacher names, "
                             f"e.g. ['densenet121', 'resnet50']; known teachers are {sorted(TEACHERS)}")
        object.__setattr__(self, "teachers", tuple(self.teachers))
        _validate(self)
        for name in FLOAT_FIELDS:   # papermill's `-p temperature 16` is an int: 16 and 16.0 are one run
            object.__setattr__(self, name, float(getattr(self, name)))

    @property
    def run_id(self) -> str:
        return f"{self.method}-{self.digest()[:10]}"

    def digest(self) -> str:
        """Stable hash of every field that can change the result."""
        return _digest({f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                        if f.metadata.get("hash", True)})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RunConfig":
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"RunConfig has no field(s) {unknown}; known fields: {sorted(cls.field_names())}")
        return cls(**values)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def teacher_config(self, name: str) -> "TeacherConfig":
        return TeacherConfig(profile=self.profile, name=name, dataset=self.dataset, data_dir=self.data_dir,
                             synthetic_size=self.synthetic_size, augment=self.augment,
                             model_scale=self.model_scale, epochs=self.teacher_epochs, lr=self.teacher_lr,
                             batch_size=self.teacher_batch_size,
                             pretrained=self.teacher_pretrained, seed=self.teacher_seed, device=self.device)


@dataclass(frozen=True)
class TeacherConfig:
    """Fine-tuning of one teacher on the train split (shared by every student run of a profile)."""
    profile: str
    name: str
    dataset: str
    data_dir: str | None
    synthetic_size: int
    augment: str
    model_scale: str
    epochs: int
    lr: float
    pretrained: bool
    seed: int
    batch_size: int
    weight_decay: float = 0.05
    device: str = _nohash("auto")

    def digest(self) -> str:
        return _digest({f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                        if f.metadata.get("hash", True)})

    @property
    def run_id(self) -> str:
        return f"{self.name}-{self.digest()[:10]}"

    @property
    def spec(self) -> TeacherSpec:
        return TEACHERS[self.name]

    @property
    def input_size(self) -> int:
        return self.spec.tiny_input_size if self.model_scale == "tiny" else self.spec.input_size


PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    # The report's setting: CIFAR-100, real architectures, 100 epochs, a GPU.
    "paper": dict(profile="paper", dataset="cifar100", model_scale="full", epochs=100, batch_size=128,
                  teacher_epochs=5, teacher_lr=1e-4, teacher_pretrained=True),
    # Runs anywhere in minutes, offline: generated data, tiny stand-ins of every architecture.
    # Tiny models learn best at lr 3e-3 (1e-2 stalls them near chance); batch 32 gives enough steps.
    "smoke": dict(profile="smoke", dataset="synthetic", synthetic_size=2000, model_scale="tiny", epochs=5,
                  batch_size=32, lr=3e-3, teacher_epochs=8, teacher_lr=3e-3, teacher_batch_size=32,
                  teacher_pretrained=False, device="cpu"),
}

# Every choice the report leaves open, with the reason for ours (printed on the book's reproduction page).
CHOICES: dict[str, str] = {
    "split": "45k/5k/10k as in the report: CIFAR-100's 50k train images split by a seeded permutation "
             "(seed 0) into 45k train and 5k validation; the official 10k test set is the test split.",
    "batch_size": "128: the report names none; the common CIFAR default, and it fits every GPU.",
    "schedule": "cosine decay of the lr to 0 over all steps: the report names none; a constant AdamW lr of "
                "1e-2 oscillates late in training, and the best-validation protocol hides neither choice.",
    "weight_decay": "0.01, torch's AdamW default: the report names AdamW but no decay.",
    "augmentation": "zero-pad 4, random 32x32 crop, horizontal flip: the standard CIFAR recipe, and it has "
                    "exactly 162 views per image, which makes the exact teacher-logit cache possible.",
    "temperature": "tau = 4 wherever the report gives none (its tuned Method 3 rows use 8 and 16).",
    "teacher_input": "teachers see the 32x32 image resized (bilinear) to 224x224, their pretraining size; "
                     "ViT-B/16 needs 224, and the CNNs are far better at 224 than at 32.",
    "teacher_finetune": "5 epochs of AdamW (lr 1e-4, weight decay 0.05, cosine), batch 128, same "
                        "augmentation: a short fine-tune from ImageNet weights.",
    "protocol": "reported accuracy = test accuracy at the epoch of best validation accuracy; we also keep "
                "the last epoch's.",
    "student": "MobileNetV2 (torchvision's blocks) with a stride-1 stem and stride-1 second stage, the usual "
               "CIFAR adaptation; 2,351,972 parameters with 100 classes.",
}


def profile_config(profile: str, **overrides: Any) -> RunConfig:
    """A RunConfig with the profile's defaults, then `overrides` (e.g. method='kd', teachers=('resnet50',)).

    An override of None means "the profile's default" (how notebooks leave a parameter unset).
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if not isinstance(profile, str) or profile not in PROFILE_DEFAULTS:   # a YAML list is unhashable: check str
        raise ValueError(f"profile={profile!r} is not one of {sorted(PROFILE_DEFAULTS)}; "
                         "smoke runs offline in minutes, paper is the report's CIFAR-100 setting")
    unknown = sorted(set(overrides) - set(RunConfig.field_names()))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; RunConfig fields are {RunConfig.field_names()}")
    return RunConfig(**{**PROFILE_DEFAULTS[profile], **overrides})


def check_flag(name: str, value: Any) -> bool:
    """`value` if it is True or False: papermill's `-p force yes` is a string, which must not count as True."""
    if not isinstance(value, bool):
        raise ValueError(f"{name}={value!r} must be True or False (papermill: -p {name} True)")
    return value


def _digest(values: dict[str, Any]) -> str:
    values = {**values, "results_version": RESULTS_VERSION}
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=list).encode()).hexdigest()


def _validate(c: RunConfig) -> None:
    def bad(name: str, allowed: str) -> ValueError:
        return ValueError(f"RunConfig.{name}={getattr(c, name)!r} is invalid: {allowed}")

    for name, allowed in [("profile", PROFILES), ("method", METHODS), ("dataset", DATASETS),
                          ("student", STUDENTS), *CHOICE_FIELDS.items()]:
        if getattr(c, name) not in allowed:
            raise bad(name, f"allowed values are {list(allowed)}")
    for name in ("use_ce", "divide_by_k", "teacher_pretrained", "compile"):
        if not isinstance(getattr(c, name), bool):
            raise bad(name, "must be True or False")
    unknown = [t for t in c.teachers if not isinstance(t, str) or t not in TEACHERS]   # str first: [[x]] is unhashable
    if unknown:
        raise bad("teachers", f"unknown teacher(s) {unknown}; known teachers are {sorted(TEACHERS)}")
    if len(set(c.teachers)) != len(c.teachers):
        raise bad("teachers", "each teacher may appear once")
    k = len(c.teachers)
    if c.method == "baseline" and k:
        raise bad("teachers", "the baseline trains without teachers; pass teachers=() or another method")
    if c.method == "kd" and k != 1:
        raise bad("teachers", f"single-teacher KD takes exactly one teacher, got K={k}")
    if c.method in ("ca_wkd", "alpha_guided", "adaptive_alpha") and k < 2:
        raise bad("teachers", f"{c.method} is a multi-teacher method and needs K >= 2 teachers, got K={k}; "
                              "use method='kd' for one teacher")
    for name in ("epochs", "batch_size", "teacher_epochs", "teacher_batch_size", "eval_batch_size"):
        if not _is_int(getattr(c, name)) or getattr(c, name) < 1:
            raise bad(name, "must be an integer >= 1")
    for name in ("seed", "teacher_seed"):
        if not _is_int(getattr(c, name)) or getattr(c, name) < 0:
            raise bad(name, "must be an integer >= 0")
    if not _is_int(c.synthetic_size) or c.synthetic_size < 60:
        raise bad("synthetic_size", "must be an integer >= 60 (it is split 45/5/10)")
    for name in ("temperature", "lr", "teacher_lr"):
        if not _is_real(getattr(c, name)) or not getattr(c, name) > 0:
            raise bad(name, "must be a finite number > 0")
    if not _is_real(c.weight_decay) or c.weight_decay < 0:
        raise bad("weight_decay", "must be a finite number >= 0")
    if not _is_real(c.alpha) or not 0.0 <= c.alpha <= 1.0:
        raise bad("alpha", "must lie in [0, 1]; it weights the KL term, e.g. alpha=0.75 for the ResNet-teacher row")
    for name in ("gamma", "theta"):
        if not _is_real(getattr(c, name)):
            raise bad(name, "must be a finite number")
    if c.dataset == "imagefolder" and not c.data_dir:
        raise bad("data_dir", "dataset='imagefolder' needs data_dir=<folder with train/<class>/ and test/<class>/>")
    if c.data_dir is not None and not isinstance(c.data_dir, str):
        raise bad("data_dir", "must be a folder path (str) or None")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_real(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
