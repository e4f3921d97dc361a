"""A run's resolved recipe in words, and fixed-batch probes: numbers that pin its mathematics on any machine.

`describe(config)` lists, line by line, what a run does (student, input size, transforms, teachers and their inputs,
optimizer, schedule, epochs, early stopping, split): `python -m cakd config` prints it and the notebooks show it. The
probes are deterministic by construction (closed-form float64 inputs, no training), so the golden notebooks can compare
them exactly on any CPU: the loss and diagnostics of the run's method on a fixed batch, and the learning rate the run
will use in each epoch."""
from __future__ import annotations

import pandas as pd
import torch

from . import authors, train
from .config import PROFILES, TEACHER_LABELS, RunConfig
from .losses import LOSSES
from .models import STUDENT_PIPELINE, TEACHERS, count_parameters, create_student, create_teacher

PROBE_BATCH, PROBE_CLASSES = 6, 5


def describe(config: RunConfig) -> str:
    """What the run does, one fact a line, as the book's reproduction notes list them."""
    c = config
    where = ("PIL on the 8-bit image, once per image" if c.teacher_input == "clean"
             else "on the student's float view, on the device")
    teachers = [f"  {i}. {name} ({TEACHER_LABELS[name]}, {TEACHERS[name].pipeline_for(c.model_scale).describe()} "
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
        f"loss ({c.loss.title}): {loss_formula(c)}",
        "loss options: " + (", ".join(f"{k}={v!r}" for k, v in c.loss_options().items()) or "none"),
        *(f"as the authors' code ({fact.topic}): {fact.code}" for fact in authors_facts(c)),
    ]
    return "\n".join(lines)


def authors_facts(c: RunConfig) -> list[authors.CodeFact]:
    """The facts of the authors' code this run follows: those its profile takes (cakd.authors) and its options keep."""
    taken = {k for k, v in authors.settings().items() if PROFILES[c.profile].get(k) == v == getattr(c, k)}
    return [f for f in authors.facts_for(c.method) if set(f.settings) <= taken and (f.settings or taken)]


PRECISIONS = {"fp16": "fp16 autocast with a gradient scaler on CUDA (the authors' precision=16); fp32 on a CPU",
              "bf16": "bf16 autocast on CUDA (ours); fp32 on a CPU", "fp32": "fp32", "fp64": "fp64"}


def loss_formula(c: RunConfig) -> str:
    """The run's loss in words, as its options resolve it (KL_k = tau^2 KL(p_t_k^tau || p_s^tau) per sample)."""
    tau = f"tau {c.temperature:g}"
    if c.method == "baseline":
        return "L = CE"
    if c.method == "kd":
        return f"L = {c.alpha:g} mean_i KL_i + {1 - c.alpha:g} CE, {tau}"
    at = "1" if c.confidence_temperature == "one" else "tau"
    if c.method == "adaptive_alpha":
        chosen = (f"k*_i = argmax_k p_k(y_i) at temperature {at} (the first teacher listed wins a tie); "
                  f"alpha = {'mean_i p_k*(y_i)' if c.m3_alpha == 'batch' else 'p_k*(y_i) per sample'}")
        return f"{chosen}; L = " + ("alpha KL_k* + (1 - alpha) CE" if c.use_ce else "KL_k*") + f", {tau}"
    weights = {"sample": "w_k,i = (1 - softmax_k(CE_k,i)) / (K - 1) per sample",
               "batch": "w_k = (1 - softmax_k(mean_i CE_k,i)) / (K - 1)",
               "batch_mean": "w_k = mean_i (1 - softmax_k(CE_k,i)) / (K - 1)"}[c.weighting]
    kd = ("L_KL = mean_i KL(softmax(sum_k w_k t_k,i / tau) || p_s^tau)" if c.aggregation != "sum_kl" else
          "L_KL = mean_i sum_k w_k,i KL_k,i" if c.weighting == "sample" else "L_KL = sum_k w_k mean_i KL_k,i")
    kd += " / K" if c.divide_by_k else ""
    head = f"{weights} (CE_k at temperature {at}); {kd}"
    if c.method == "ca_wkd":
        return f"{head}; L = L_KL + CE, {tau}"
    conf = {"max_prob": "conf = mean_i max_c softmax(mean_k t_k,i)",
            "true_class": "conf = mean_i softmax(mean_k t_k,i)[y_i]",
            "teacher_true_class": "conf_i = mean_k softmax(t_k,i)[y_i]"}[c.m2_confidence]
    per_sample = c.m2_gate == "sample_mean"
    if per_sample and c.m2_confidence != "teacher_true_class":
        conf = conf.replace("conf = mean_i ", "conf_i = ")
    if not per_sample and c.m2_confidence == "teacher_true_class":
        conf = "conf = mean_i mean_k softmax(t_k,i)[y_i]"
    gate = (f"g = mean_i sigmoid({c.gamma:g} (conf_i - {c.theta:g}))" if per_sample
            else f"g = sigmoid({c.gamma:g} (conf - {c.theta:g}))")
    return f"{head}; {conf} (temperature {at}); {gate}; L = g L_KL + (1 - g) {c.m2_ce_weight:g} CE, {tau}"


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
          "input pipeline": TEACHERS[name].pipeline_for(config.model_scale).describe(),
          "parameters": f"{count_parameters(create_teacher(name, 100, config.model_scale)):,}"} for name in names],
        index="teacher")
