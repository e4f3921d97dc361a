"""A run's resolved recipe in words: student, input size, transforms, teachers and their inputs, optimizer, schedule,
epochs, early stopping, split, precision, loss. `python -m cakd config` prints it and the run pages show it."""
from __future__ import annotations

from ..definitions import authors
from ..definitions.config import RunConfig
from ..definitions.networks import STUDENT_PIPELINE, TEACHER_LABELS, teacher_pipeline
from ..definitions.profiles import PROFILES


def describe(config: RunConfig) -> str:
    """What the run does, one fact a line, as the book's reproduction notes list them."""
    c = config
    where = ("PIL on the 8-bit image, once per image" if c.teacher_input == "clean"
             else "on the student's float view, on the device")
    teachers = [f"  {i}. {name} ({TEACHER_LABELS[name]}, {teacher_pipeline(name, c.model_scale).describe()} "
                f"[{where}]; weights: {c.teacher_weights})" for i, name in enumerate(c.teachers, 1)]
    cosine = (f"CosineAnnealingLR(T_max={c.cosine_epochs}, eta_min={c.eta_min:g}) stepped per epoch"
              if c.schedule == "cosine" else "constant")
    lines = [
        f"run {c.run_id}: method {c.method}, profile {c.profile}, seed {c.seed}",
        f"data: {c.dataset}" + (f" ({c.synthetic_size} generated images of {c.synthetic_classes} classes)"
                                if c.dataset == "synthetic" else ""),
        "split: StratifiedShuffleSplit(n_splits=1, random_state=42) of the training images into train and "
        + ("val, test_size=5000 (45,000 / 5,000); test: the official 10,000" if c.dataset == "cifar100"
           else "val (a tenth held out); test: the dataset's test part"),
        f"student: {c.student} ({c.model_scale}), from scratch, input {c.crop}x{c.crop}",
        f"student transforms: {c.views.describe()}; then {STUDENT_PIPELINE.describe()}",
        f"teachers ({c.teacher_input} input, {c.teacher_mode}):" if c.teachers else "teachers: none",
        *teachers,
        f"optimizer: AdamW(lr={c.lr:g}, weight_decay={c.weight_decay:g}), batch {c.batch_size}",
        f"schedule: {cosine}",
        f"epochs: at most {c.epochs}; early stopping: " + (f"patience {c.patience} on validation accuracy"
                                                          if c.patience else "off"),
        "reported: test accuracy at the epoch of best validation accuracy",
        f"precision: {PRECISIONS[c.precision]}",
        f"loss ({c.loss.title}): {c.loss.formula(c)}",
        "loss options: " + (", ".join(f"{k}={v!r}" for k, v in c.loss_options().items()) or "none"),
        *(f"as the authors' code ({fact.topic}): {fact.code}" for fact in authors_facts(c)),
    ]
    return "\n".join(lines)


def authors_facts(c: RunConfig) -> list[authors.CodeFact]:
    """The facts of the authors' code this run follows: those its profile takes and its options keep."""
    taken = {k for k, v in authors.settings().items() if PROFILES[c.profile].settings.get(k) == v == getattr(c, k)}
    return [f for f in authors.facts_for(c.method) if set(f.settings) <= taken and (f.settings or taken)]


PRECISIONS = {"fp16": "fp16 autocast with a gradient scaler on CUDA (the authors' precision=16); fp32 on a CPU",
              "bf16": "bf16 autocast on CUDA (ours); fp32 on a CPU", "fp32": "fp32", "fp64": "fp64"}
