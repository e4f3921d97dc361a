"""Fixed probes of a run's mathematics for the book's pages: its loss on a fixed batch, each epoch's learning rate, the
networks' sizes, deterministic by construction (float64, no training) so the golden notebooks compare them exactly on
any CPU; and measurements of its teachers (`method3_ties`: how often Method 3's choice depends on their order)."""
from __future__ import annotations

import pandas as pd
import torch

from ..definitions.config import RunConfig
from ..definitions.networks import TEACHER_LABELS, teacher_pipeline
from . import train
from .data import Splits
from .losses import LOSSES, confidence_temperature_of, order_dependent, true_class_probability
from .models import count_parameters, create_student, create_teacher
from .teaching import TeacherLogitCache

PROBE_BATCH, PROBE_CLASSES = 6, 5


def parameter_counts(config: RunConfig, num_classes: int = 100) -> dict[str, int]:
    """Parameters of the student and of each teacher of the run, as built (no weights needed)."""
    student = create_student(config.student, num_classes, config.model_scale)
    return {f"student {config.student}": count_parameters(student), **{
        f"teacher {name}": count_parameters(create_teacher(name, num_classes, config.model_scale))
        for name in config.teachers}}


def loss_probe(config: RunConfig) -> dict[str, float]:
    """The run's loss and diagnostics on a fixed float64 batch (B=6, C=5), rounded to 8 significant digits."""
    i = torch.arange(PROBE_BATCH, dtype=torch.float64)[:, None]
    c = torch.arange(PROBE_CLASSES, dtype=torch.float64)[None, :]
    student = 2 * torch.sin(1.3 * i + 0.7 * c)
    k = max(1, len(config.teachers))
    teachers = torch.stack([3 * torch.cos(0.9 * (j + 1) * i + 0.4 * c + j) for j in range(k)])   # [K, B, C]
    labels = torch.arange(PROBE_BATCH) % PROBE_CLASSES
    teachers = {"none": None, "one": teachers[0], "several": teachers}[config.loss.teachers]
    loss, diagnostics = LOSSES[config.method](student, teachers, labels, **config.loss_options())
    return {key: float(f"{value:.8g}") for key, value in train.flatten({"loss": loss, **diagnostics}).items()}


def lr_schedule(config: RunConfig) -> list[float]:
    """The learning rate of each epoch, from the same scheduler `fit` steps (8 significant digits)."""
    optimizer = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=config.lr)
    scheduler = train.make_scheduler(optimizer, config.schedule, config.cosine_epochs, config.eta_min)
    rates = []
    for _ in range(config.epochs):
        rates.append(float(f"{optimizer.param_groups[0]['lr']:.8g}"))
        optimizer.step()
        scheduler.step()
    return rates


def teacher_architectures(config: RunConfig, names: list[str]) -> pd.DataFrame:
    """Each teacher of `names` as the profile builds it: family, input pipeline, parameter count."""
    return pd.DataFrame.from_records(
        [{"teacher": name, "family": TEACHER_LABELS[name],
          "input pipeline": teacher_pipeline(name, config.model_scale).describe(),
          "parameters": f"{count_parameters(create_teacher(name, 100, config.model_scale)):,}"} for name in names])


def method3_ties(config: RunConfig, caches: list[TeacherLogitCache], splits: Splits, device: torch.device,
                 chunk: int = 4096) -> dict[str, float]:
    """How often Method 3's choice depends on the teachers' order, over their cached training logits, every cached view:
    the percentage of samples where 2+ teachers share the highest true-class probability, and where they share 1.0."""
    temperature = confidence_temperature_of(config.confidence_temperature, config.temperature)
    samples = tied = at_one = 0
    for first in range(0, len(splits.train), chunk):
        logits = torch.stack([c.train[first:first + chunk].to(device) for c in caches]).float()  # [K,b(,V),C]
        labels = splits.train.labels[first:first + chunk].to(device)
        if logits.dim() == 4:   # every view of each image: views into the batch
            labels = labels.repeat_interleave(logits.shape[2])
            logits = logits.flatten(1, 2)
        p_true = true_class_probability(logits / temperature, labels)
        tie = order_dependent(p_true)
        samples, tied = samples + len(labels), tied + int(tie.sum())
        at_one += int((tie & (p_true.max(0).values == 1)).sum())
    return {"samples": samples, "tied_pct": 100 * tied / samples, "tied_at_1_pct": 100 * at_one / samples}
