"""Every option of a run, defined once: type, default, doc, origin, who reads it.

`RunConfig` is the single source: its Literal types and per-field metadata give the validation (`check_option`), the
book's options table, the CLI's and the notebooks' parameter docs, and the run hash. Nothing here imports torch: the
book and the run registry read it."""
from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from . import files
from .methods import METHODS, Method
from .networks import TEACHER_LABELS, Scale, Student

ProfileName = Literal["paper", "consistent", "smoke"]   # cakd.definitions.profiles defines each
Dataset = Literal["cifar100", "synthetic", "imagefolder"]
Augment = Literal["crop_flip", "none"]
Schedule = Literal["cosine", "constant"]
Precision = Literal["bf16", "fp16", "fp32", "fp64"]
TeacherInput = Literal["clean", "student_view"]
TeacherMode = Literal["cache", "online"]
TeacherWeights = Literal["public", "train"]
Device = Literal["auto", "cpu", "cuda"]
# Ambiguity options (book: reproduction notes); the first value is the report's reading.
Weighting = Literal["sample", "batch", "batch_mean"]          # batch_mean: the authors' code
Aggregation = Literal["sum_kl", "mean_logits"]
ConfidenceTemperature = Literal["one", "tau"]
M2Confidence = Literal["max_prob", "true_class", "teacher_true_class"]   # teacher_true_class: the authors' code
M2Gate = Literal["batch", "sample_mean"]                      # sample_mean: the authors' code
M3Alpha = Literal["batch", "sample"]
# Where an option comes from (the book's options table says it for each one).
Origin = Literal["report", "authors", "ambiguity", "ours"]
# Who reads an option, and so which runs' hash covers it: every run, runs with teachers, runs whose loss reads
# it (METHODS), runs that train their own teachers, or none (speed only: never hashed).
Scope = Literal["common", "teaching", "loss", "teacher_training", "speed"]
# Part of every run hash: bump it when a code change alters results, so old registry entries are not reused.
RESULTS_VERSION = 5
IMAGE_SIZE = 32    # CIFAR's images; every dataset is brought to this size
POSITIVE = ("lr", "temperature", "teacher_lr")   # > 0, not only >= 0


def option(default: Any, doc: str, *, origin: Origin = "ours", scope: Scope = "common",
           minimum: float | None = None, maximum: float | None = None) -> Any:
    """A RunConfig field with its metadata: what it is, where it comes from, who reads it, its bounds."""
    return field(default=default, metadata={"doc": doc, "origin": origin, "scope": scope,
                                            "minimum": minimum, "maximum": maximum})


@dataclass(frozen=True)
class RunConfig:
    """One training run of the student: the method, its teachers, the data, the optimisation, the loss options."""
    profile: ProfileName = option("smoke", "paper: the authors' recipe; consistent: our 32x32 student taught "
                                  "consistently; smoke: offline CPU stand-in of both")
    method: str = option("baseline", "the run's method (cakd.definitions.methods.METHODS)")
    teachers: tuple[str, ...] = option((), "teacher names (cakd.definitions.networks.TEACHER_LABELS), e.g. "
                                       "['densenet121_cifar100', 'resnet50_cifar100']", origin="report")
    seed: int = option(0, "student seed: initialization, data order, augmentation views", minimum=0)
    # data
    dataset: Dataset = option("synthetic", "CIFAR-100 (torchvision), generated images, or an image folder")
    data_dir: Optional[str] = option(None, "imagefolder root, or the folder holding cifar-100-python/")
    synthetic_size: int = option(2400, "generated images in all, 5 parts train+val to 1 part test (6 per class "
                                 "and up: every class keeps images in each split)", minimum=12)
    synthetic_classes: int = option(100, "classes of the generated images (CIFAR-100's 100; fewer learn in fewer "
                                    "epochs)", minimum=2)
    augment: Augment = option("crop_flip", "student training views: random crop and horizontal flip, or none",
                              origin="authors")
    resize: int = option(256, "student images resized (bicubic) to this side before cropping; 0: not resized",
                         origin="authors", minimum=0)
    pad: int = option(0, "zero padding around the (resized) image before the random crop", minimum=0)
    crop: int = option(224, "student input size: random crop (train), centre crop (eval)", origin="authors", minimum=8)
    # models
    student: Student = option("mobilenetv2_100", "student network", origin="report")
    model_scale: Scale = option("full", "full: the real architectures; tiny: smoke stand-ins of the same families",
                                origin="report")
    # optimisation
    epochs: int = option(100, "maximum epochs", origin="report", minimum=1)
    patience: int = option(15, "early stopping: epochs without a better validation accuracy; 0: off",
                           origin="authors", minimum=0)
    batch_size: int = option(128, "images per step", origin="authors", minimum=1)
    lr: float = option(1e-2, "AdamW learning rate", origin="report", minimum=0.0)
    weight_decay: float = option(1e-4, "AdamW weight decay", origin="authors", minimum=0.0)
    schedule: Schedule = option("cosine", "learning rate per epoch: CosineAnnealingLR or constant", origin="authors")
    cosine_t_max: int = option(0, "CosineAnnealingLR's T_max in epochs; 0: the run's epochs", origin="authors",
                               minimum=0)
    eta_min: float = option(1e-6, "CosineAnnealingLR's final learning rate", origin="authors", minimum=0.0)
    precision: Precision = option("bf16", "CUDA autocast dtype (bf16, or fp16 with a grad scaler as the authors' "
                                  "code) or the weights' dtype (fp32, fp64); a CPU runs bf16/fp16 in fp32")
    # teaching
    teacher_input: TeacherInput = option("clean", "clean: each teacher sees the un-augmented image through its own "
                                         "eval pipeline (fixed targets); student_view: the student's own augmented "
                                         "view (consistent teaching)", origin="authors", scope="teaching")
    teacher_mode: TeacherMode = option("cache", "cache: logits computed once and looked up exactly; online: "
                                       "teachers run on every batch", scope="teaching")
    teacher_weights: TeacherWeights = option("public", "public: the published CIFAR-100 checkpoints, frozen; "
                                             "train: trained here from scratch (smoke)", origin="authors",
                                             scope="teaching")
    teacher_epochs: int = option(8, "epochs of a teacher trained here", scope="teacher_training", minimum=1)
    teacher_lr: float = option(3e-3, "AdamW lr of a teacher trained here", scope="teacher_training", minimum=0.0)
    teacher_batch_size: int = option(32, "batch of a teacher trained here", scope="teacher_training", minimum=1)
    teacher_seed: int = option(0, "seed of a teacher trained here", scope="teacher_training", minimum=0)
    # distillation (each read by the losses that declare it)
    temperature: float = option(4.0, "KD softmax temperature tau", origin="report", scope="loss", minimum=0.0)
    alpha: float = option(0.5, "single-teacher KD: weight of the KL term (torchdistill's alpha weights CE)",
                          origin="report", scope="loss", minimum=0.0, maximum=1.0)
    gamma: float = option(2.0, "Method 2: alpha is sigmoid(gamma (conf - theta))", origin="report", scope="loss")
    theta: float = option(0.3, "Method 2: confidence threshold", origin="report", scope="loss")
    use_ce: bool = option(True, "Method 3: False drops CE, leaving the KL to the chosen teacher", origin="report",
                          scope="loss")
    weighting: Weighting = option("sample", "Methods 1-2 teacher weights: per sample (Eq. 1), from the batch-mean "
                                  "CE, or per sample then batch-averaged (batch_mean, the authors' code)",
                                  origin="ambiguity", scope="loss")
    aggregation: Aggregation = option("sum_kl", "Methods 1-2: sum of weighted KLs (Eq. 3) or KL to the weighted "
                                      "mean of the logits (Fig. 1)", origin="ambiguity", scope="loss")
    divide_by_k: bool = option(False, "Methods 1-2: divide the KD term by K (CA-MKD's code)", origin="ambiguity",
                               scope="loss")
    confidence_temperature: ConfidenceTemperature = option("one", "softmax temperature of teacher confidences: "
                                                           "1 or tau", origin="ambiguity", scope="loss")
    m2_confidence: M2Confidence = option("max_prob", "Method 2 confidence: the ensemble's top probability, its "
                                         "true-class probability, or the teachers' mean true-class probability "
                                         "per sample (the authors' code)", origin="ambiguity", scope="loss")
    m2_gate: M2Gate = option("batch", "Method 2: sigmoid of the batch confidence, or the batch mean of "
                             "per-sample sigmoids (the authors' code)", origin="ambiguity", scope="loss")
    m2_ce_weight: float = option(1.0, "Method 2: factor on CE (the authors' class defaults to 0.5; their Table 1 "
                                 "run passed 1)", origin="ambiguity", scope="loss", minimum=0.0)
    m3_alpha: M3Alpha = option("batch", "Method 3 alpha: batch mean (the report) or per sample",
                               origin="ambiguity", scope="loss")
    # speed only: never part of the run hash
    device: Device = option("auto", "auto: CUDA when available (a paper/consistent run then refuses a CPU); cpu: "
                            "train on the CPU even so", scope="speed")
    compile: bool = option(False, "torch.compile the student", scope="speed")
    cuda_graph: bool = option(True, "CUDA: capture the whole training step as one CUDA graph", scope="speed")
    cudnn_benchmark: bool = option(True, "CUDA: cuDNN times its convolution algorithms once per shape and keeps the "
                                   "fastest (torch.backends.cudnn.benchmark)", scope="speed")
    eval_batch_size: int = option(1024, "images per evaluation batch", scope="speed", minimum=1)

    def __post_init__(self) -> None:
        if isinstance(self.teachers, str):   # papermill's `-p teachers resnet50` passes a plain string
            raise ValueError(f"RunConfig.teachers={self.teachers!r} must be a list of teacher names, "
                             f"e.g. ['{self.teachers}'] (papermill: -y 'teachers: [{self.teachers}]')")
        if not isinstance(self.teachers, (list, tuple)):   # `-p teachers 5`: not a TypeError from tuple()
            raise ValueError(f"RunConfig.teachers={self.teachers!r} must be a list of teacher names, "
                             f"e.g. ['densenet121_cifar100']; known teachers are {sorted(TEACHER_LABELS)}")
        object.__setattr__(self, "teachers", tuple(self.teachers))
        _validate(self)
        for f in OPTIONS.values():   # papermill's `-p temperature 16` is an int: 16 and 16.0 are one run
            if f.type is float:
                object.__setattr__(self, f.name, float(getattr(self, f.name)))

    @property
    def run_id(self) -> str:
        return f"{self.method}-{self.digest()[:10]}"

    @property
    def loss(self) -> Method:
        return METHODS[self.method]

    def reads(self, name: str) -> bool:
        """Whether this run's result depends on option `name` (so the run hash covers it)."""
        scope = OPTIONS[name].scope
        return (scope == "common" or (scope == "loss" and name in self.loss.reads)
                or (scope == "teaching" and bool(self.teachers))
                or (scope == "teacher_training" and bool(self.teachers) and self.teacher_weights == "train"))

    def digest(self) -> str:
        """Stable hash of the options this run reads (a baseline ignores gamma: gamma=3 reuses its run)."""
        values = {name: getattr(self, name) for name in OPTIONS if self.reads(name)}
        return files.digest({**values, "teachers": list(self.teachers), "results_version": RESULTS_VERSION})

    def loss_options(self) -> dict[str, Any]:
        """The keyword arguments of this run's loss: exactly the options it declared."""
        return {name: getattr(self, name) for name in self.loss.reads}

    @property
    def views(self) -> "Views":
        return Views(self.resize, self.pad, self.crop, self.augment)

    @property
    def cosine_epochs(self) -> int:
        return self.cosine_t_max or self.epochs

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RunConfig":
        check_names(values, OPTIONS, "RunConfig")
        return cls(**values)


@dataclass(frozen=True)
class Views:
    """The student's views of a 32x32 image: resize, pad, crop, flip (RunConfig.views)."""
    resize: int           # 0: not resized
    pad: int
    crop: int
    augment: str          # crop_flip | none

    @property
    def size(self) -> int:
        """Side of the resized, padded image the crop is taken from."""
        return (self.resize or IMAGE_SIZE) + 2 * self.pad

    @property
    def offsets(self) -> int:
        return self.size - self.crop + 1

    @property
    def count(self) -> int:
        return self.offsets ** 2 * 2 if self.augment == "crop_flip" else 1

    @property
    def centre(self) -> int:
        """The evaluation view: the centred crop (torchvision's CenterCrop), not flipped."""
        corner = round((self.size - self.crop) / 2)
        return (corner * self.offsets + corner) * 2

    def describe(self) -> str:
        steps = [f"Resize(({self.resize}, {self.resize}), bicubic)"] if self.resize else []
        steps += [f"Pad({self.pad})"] if self.pad else []
        train = steps + ([f"RandomCrop({self.crop})", "RandomHorizontalFlip"] if self.augment == "crop_flip"
                         else [f"CenterCrop({self.crop})"])
        return (f"train: {' -> '.join(train)} ({self.count} views per image); "
                f"eval: {' -> '.join(steps + [f'CenterCrop({self.crop})'])}")


@dataclass(frozen=True)
class Option:
    """One RunConfig field as the docs, the CLI and the notebooks see it."""
    name: str
    type: Any                      # int, float, bool, str, tuple, or a Literal's values as a tuple
    default: Any
    doc: str
    origin: Origin
    scope: Scope
    choices: tuple[Any, ...] | None
    optional: bool                 # None is allowed
    minimum: float | None
    maximum: float | None

    @property
    def type_name(self) -> str:
        base = {int: "int", float: "float", bool: "bool", str: "str", tuple: "list[str]"}.get(self.type, "str")
        return f"Optional[{base}]" if self.optional else base

    def read_by(self) -> str:
        """Which methods read it, in words (the book's options table)."""
        if self.scope == "loss":
            return ", ".join(m for m, spec in METHODS.items() if self.name in spec.reads)
        return {"common": "every run", "teaching": "runs with teachers", "speed": "nobody's result (speed)",
                "teacher_training": "teachers trained here"}[self.scope]


def _options() -> dict[str, Option]:
    hints = typing.get_type_hints(RunConfig)
    out = {}
    for f in dataclasses.fields(RunConfig):
        hint, optional = hints[f.name], typing.get_origin(hints[f.name]) is typing.Union   # Optional[X]
        if optional:
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        choices = typing.get_args(hint) if typing.get_origin(hint) is Literal else None
        base = str if choices else (tuple if typing.get_origin(hint) is tuple else hint)
        out[f.name] = Option(f.name, base, f.default, f.metadata["doc"], f.metadata["origin"], f.metadata["scope"],
                             choices, optional, f.metadata["minimum"], f.metadata["maximum"])
    return out


OPTIONS: dict[str, Option] = _options()

# papermill reads a parameter's doc from its comment and cannot parse one holding '=' or '#'.
if _bad_docs := [o.name for o in OPTIONS.values() if "=" in o.doc or "#" in o.doc]:
    raise ValueError(f"RunConfig option docs of {_bad_docs} hold '=' or '#', which papermill cannot parse")


def check_names(given: Any, known: Any, what: str) -> None:
    """Refuse names not in `known`, with the closest match: "unknown parameter 'teacher'; did you mean ...?"."""
    if unknown := [name for name in given if name not in known]:
        hints = [f"'{n}' (did you mean '{m[0]}'?)" if (m := difflib.get_close_matches(n, known, n=1)) else f"'{n}'"
                 for n in unknown]
        raise ValueError(f"unknown {what}(s) {', '.join(hints)}; known: {', '.join(sorted(known))}")


def is_count(value: Any, minimum: int) -> bool:
    """Whether `value` is an integer >= `minimum` (True and False are not counts)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def check_flag(name: str, value: Any) -> bool:
    """`value` if it is True or False: papermill's `-p force yes` is a string, which must not count as True."""
    if not isinstance(value, bool):
        raise ValueError(f"{name}={value!r} must be True or False (papermill: -p {name} True)")
    return value


def check_option(name: str, value: Any, owner: str = "RunConfig") -> None:
    """Refuse a value of option `name` that its type, choices or bounds do not allow: "RunConfig.alpha=1.5 is
    invalid: must be <= 1". RunConfig checks every field with it; the losses check their keyword options."""
    o = OPTIONS[name]

    def bad(allowed: str) -> ValueError:
        return ValueError(f"{owner}.{name}={value!r} is invalid: {allowed}")

    if value is None and o.optional:
        return
    if o.choices is not None and value not in o.choices:
        raise bad(f"allowed values are {list(o.choices)}")
    if o.type is bool and not isinstance(value, bool):
        raise bad("must be True or False")
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if o.type is int and not (number and isinstance(value, int)):
        raise bad("must be an integer")
    if o.type is float and not (number and math.isfinite(value)):
        raise bad("must be a finite number")
    if o.type is str and o.choices is None and not isinstance(value, str):
        raise bad("must be a string")
    if o.minimum is not None and value < o.minimum or o.maximum is not None and value > o.maximum:
        lo = "" if o.minimum is None else f">= {o.minimum:g}"
        hi = "" if o.maximum is None else f"<= {o.maximum:g}"
        raise bad(f"must be {' and '.join(filter(None, (lo, hi)))}")
    if name in POSITIVE and not value > 0:
        raise bad("must be > 0")


def _validate(c: RunConfig) -> None:
    def bad(name: str, allowed: str) -> ValueError:
        return ValueError(f"RunConfig.{name}={getattr(c, name)!r} is invalid: {allowed}")

    for name in OPTIONS:
        check_option(name, getattr(c, name))
    if c.method not in METHODS:
        raise bad("method", f"allowed values are {sorted(METHODS)}")
    if unknown := [t for t in c.teachers if not isinstance(t, str) or t not in TEACHER_LABELS]:
        raise bad("teachers", f"unknown teacher(s) {unknown}; known teachers are {sorted(TEACHER_LABELS)}")
    if len(set(c.teachers)) != len(c.teachers):
        raise bad("teachers", "each teacher may appear once")
    k, wants = len(c.teachers), c.loss.teachers
    if wants == "none" and k:
        raise bad("teachers", f"{c.method} trains without teachers; pass teachers=[] or another method")
    if wants == "one" and k != 1:
        raise bad("teachers", f"{c.method} takes exactly one teacher, got K={k}")
    if wants == "several" and k < 2:
        raise bad("teachers", f"{c.method} is a multi-teacher method and needs K >= 2 teachers, got K={k}; "
                              "use method='kd' for one teacher")
    if c.crop > c.views.size:
        raise bad("crop", f"must fit the {c.views.size} px (resized, padded) image")
    if c.teachers and c.teacher_input == "student_view" and c.teacher_mode == "cache" and c.views.count > 162:
        raise bad("teacher_mode", f"a cache of the student's views stores {c.views.count} views per image; use "
                                  "teacher_mode='online', or pad/crop views of a 32x32 image (162 views)")
    if c.schedule == "cosine" and c.eta_min >= c.lr:
        raise bad("eta_min", f"must lie below lr={c.lr}")
    if c.dataset == "synthetic" and c.synthetic_size < 6 * c.synthetic_classes:
        raise bad("synthetic_size", f"must be at least 6 images per class, {6 * c.synthetic_classes} for "
                                    f"synthetic_classes={c.synthetic_classes}")
    if c.dataset == "imagefolder" and not c.data_dir:
        raise bad("data_dir", "dataset='imagefolder' needs data_dir=<folder with train/<class>/ and test/<class>/>")
    if c.teacher_weights == "public" and c.model_scale == "tiny" and c.teachers:
        raise bad("teacher_weights", "the tiny stand-ins have no published weights; use teacher_weights='train'")


@dataclass(frozen=True)
class TeacherTraining:
    """What a teacher trained here depends on (shared by every student run of a profile): its run id names its
    folder, and the teacher-logit caches of runs that read it."""
    profile: str
    name: str
    dataset: str
    data_dir: str | None
    synthetic_size: int
    synthetic_classes: int
    model_scale: str
    epochs: int
    lr: float
    batch_size: int
    seed: int
    precision: str

    @classmethod
    def of(cls, config: RunConfig, name: str) -> "TeacherTraining":
        return cls(profile=config.profile, name=name, dataset=config.dataset, data_dir=config.data_dir,
                   synthetic_size=config.synthetic_size, synthetic_classes=config.synthetic_classes,
                   model_scale=config.model_scale, epochs=config.teacher_epochs, lr=config.teacher_lr,
                   batch_size=config.teacher_batch_size, seed=config.teacher_seed, precision=config.precision)

    @property
    def run_id(self) -> str:
        return f"{self.name}-{files.digest(dataclasses.asdict(self))[:10]}"
