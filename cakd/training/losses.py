"""The report's distillation losses as pure functions of tensors (report section 3). Shapes: student logits [B,C],
teacher logits [K,B,C] (one teacher: [B,C]), labels [B]. Every loss returns (loss, diagnostics), the diagnostics
detached tensors (an `.item()` would sync the GPU every step). KL terms are tau^2-scaled and averaged over the batch
("batchmean"), never over classes too. Where the report is ambiguous, or the authors' code differs from its equations,
a keyword option chooses, by default the report's equation. A call checks its options (cakd.definitions.config's
`check_option`); a run checks them once, in its RunConfig, and calls the loss unchecked."""
from __future__ import annotations

import functools
import inspect
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..definitions.config import (Aggregation, ConfidenceTemperature, M2Confidence, M2Gate, M3Alpha, Weighting,
                                  check_option)
from ..definitions.methods import METHODS

Diagnostics = dict[str, Tensor]
LossFn = Callable[..., tuple[Tensor, Diagnostics]]
LOSSES: dict[str, LossFn] = {}   # method name (cakd.definitions.methods.METHODS) -> its loss, options unchecked


def register_loss(name: str) -> Callable[[LossFn], LossFn]:
    """Register `fn` as the loss of method `name`, which cakd.definitions.methods.METHODS defines; its keyword
    arguments must be exactly the options the method reads (the run hash covers those, so a harmless parameter never
    retrains). The name in this module checks its options at each call; LOSSES holds `fn` itself."""
    def add(fn: LossFn) -> LossFn:
        if name not in METHODS:
            raise TypeError(f"loss {name!r} has no entry in cakd.definitions.methods.METHODS; add one (title, "
                            "teachers, notebook, formula, reads)")
        keywords = tuple(p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY)
        if set(keywords) != set(METHODS[name].reads):
            raise TypeError(f"loss {name!r} declares reads={METHODS[name].reads} but takes keywords {keywords}")
        LOSSES[name] = fn

        @functools.wraps(fn)
        def checked(*args, **options):
            for option, value in options.items():
                check_option(option, value, fn.__name__)
            return fn(*args, **options)
        return checked
    return add


@register_loss("baseline")
def ce_loss(student_logits: Tensor, teacher_logits: Tensor | None, labels: Tensor) -> tuple[Tensor, Diagnostics]:
    """The baseline: cross-entropy with the labels; `teacher_logits` is ignored (pass None)."""
    ce = F.cross_entropy(student_logits, labels)
    return ce, {"ce": ce.detach()}


@register_loss("kd")
def kd_loss(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, *, alpha: float,
            temperature: float) -> tuple[Tensor, Diagnostics]:
    """Single-teacher KD (Hinton et al.): L = alpha * tau^2 KL(p_t^tau || p_s^tau) + (1 - alpha) * CE. Here alpha
    weights the KL term, as in the report (torchdistill's KDLoss uses alpha for CE instead). `teacher_logits` is [B,C]
    (or [1,B,C])."""
    if teacher_logits.dim() == 3:
        if teacher_logits.shape[0] != 1:
            raise ValueError(f"kd_loss takes one teacher, got K={teacher_logits.shape[0]}; "
                             "use ca_wkd_loss, alpha_guided_loss or adaptive_alpha_loss for several")
        teacher_logits = teacher_logits[0]
    kd = kl_per_sample(student_logits, teacher_logits[None], temperature)[0].mean()
    ce = F.cross_entropy(student_logits, labels)
    return alpha * kd + (1 - alpha) * ce, {"ce": ce.detach(), "kd": kd.detach()}


@register_loss("ca_wkd")
def ca_wkd_loss(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, *, temperature: float,
                weighting: Weighting = "sample", aggregation: Aggregation = "sum_kl", divide_by_k: bool = False,
                confidence_temperature: ConfidenceTemperature = "one") -> tuple[Tensor, Diagnostics]:
    """Method 1 (CA-WKD): confidence-weighted teacher KLs plus CE, L = L_KL + CE.
    w_k,i = (1 - softmax_k(CE_.,i)_k) / (K - 1), with CE_k,i teacher k's cross-entropy on sample i, so the weights sum
    to 1 and the teacher with the lower CE weighs more; L_KL = mean_i sum_k w_k,i KL_k,i (Eq. 3).
    `weighting='batch_mean'` is the authors' code: sum_k mean_i(w_k,i) * mean_i(KL_k,i)."""
    weights = teacher_weights(teacher_logits, labels, weighting=weighting,
                              temperature=confidence_temperature_of(confidence_temperature, temperature))
    kd = weighted_kd(student_logits, teacher_logits, weights, temperature=temperature,
                     aggregation=aggregation, divide_by_k=divide_by_k)
    ce = F.cross_entropy(student_logits, labels)
    return kd + ce, {"ce": ce.detach(), "kd": kd.detach(), "teacher_weights": weights.mean(1).detach()}


@register_loss("alpha_guided")
def alpha_guided_loss(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, *, temperature: float,
                      gamma: float = 2.0, theta: float = 0.3, weighting: Weighting = "sample",
                      aggregation: Aggregation = "sum_kl", divide_by_k: bool = False,
                      confidence_temperature: ConfidenceTemperature = "one", m2_confidence: M2Confidence = "max_prob",
                      m2_gate: M2Gate = "batch", m2_ce_weight: float = 1.0) -> tuple[Tensor, Diagnostics]:
    """Method 2: Method 1's L_KL, balanced with CE by the ensemble's confidence. Report:
    conf = mean_i max_c softmax(mean_k t_k,i)_c; alpha = sigmoid(gamma (conf - theta)) (in [0.354, 0.802] for gamma 2,
    theta 0.3); L = alpha L_KL + (1 - alpha) CE. Options: `m2_confidence` 'true_class' (the ensemble's probability of
    the label) or 'teacher_true_class' (per sample, the teachers' mean probability of the label, the authors' code);
    `m2_gate='sample_mean'` averages per-sample gates sigmoid(gamma (conf_i - theta)) instead of gating the batch mean
    (the authors' code); `m2_ce_weight` scales CE."""
    conf_temperature = confidence_temperature_of(confidence_temperature, temperature)
    weights = teacher_weights(teacher_logits, labels, weighting=weighting, temperature=conf_temperature)
    kd = weighted_kd(student_logits, teacher_logits, weights, temperature=temperature,
                     aggregation=aggregation, divide_by_k=divide_by_k)
    if m2_confidence == "teacher_true_class":
        confidence = true_class_probability(teacher_logits / conf_temperature, labels).mean(0)   # [B]
    else:
        ensemble = (teacher_logits.mean(0) / conf_temperature).softmax(-1)                       # [B, C]
        confidence = ensemble.max(-1).values if m2_confidence == "max_prob" else \
            ensemble.gather(1, labels[:, None])[:, 0]                                            # [B]
    alpha = (torch.sigmoid(gamma * (confidence.mean() - theta)) if m2_gate == "batch"
             else torch.sigmoid(gamma * (confidence - theta)).mean()).detach()
    ce = F.cross_entropy(student_logits, labels)
    return alpha * kd + (1 - alpha) * (m2_ce_weight * ce), {
        "ce": ce.detach(), "kd": kd.detach(), "alpha": alpha, "teacher_weights": weights.mean(1).detach()}


@register_loss("adaptive_alpha")
def adaptive_alpha_loss(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, *, temperature: float,
                        use_ce: bool = True, m3_alpha: M3Alpha = "batch",
                        confidence_temperature: ConfidenceTemperature = "one") -> tuple[Tensor, Diagnostics]:
    """Method 3: per sample, distil from the teacher most confident in the label; alpha from that confidence.
    p_k,i = softmax(t_k,i)[y_i]; k*_i = argmax_k p_k,i (ties: lowest k); alpha = mean_i p_k*_i,i (a batch scalar;
    `m3_alpha='sample'` keeps it per sample); L = alpha KL_k* + (1 - alpha) CE, or KL_k* alone with `use_ce=False`."""
    _check_teachers(teacher_logits, labels, "adaptive_alpha_loss")
    conf_temperature = confidence_temperature_of(confidence_temperature, temperature)
    p_true = true_class_probability(teacher_logits / conf_temperature, labels)    # [K, B]
    chosen = most_confident(p_true)                                                # [B]
    p_chosen = p_true.gather(0, chosen[None])[0].detach()                          # [B]
    kl = kl_per_sample(student_logits, teacher_logits, temperature)                # [K, B]
    kl_chosen = kl.gather(0, chosen[None])[0]                                      # [B]
    alpha = p_chosen.mean() if m3_alpha == "batch" else p_chosen
    ce = F.cross_entropy(student_logits, labels, reduction="none")                 # [B]
    loss = (alpha * kl_chosen + (1 - alpha) * ce).mean() if use_ce else kl_chosen.mean()
    choice = F.one_hot(chosen, len(teacher_logits)).to(p_true.dtype).mean(0)
    return loss, {"ce": ce.mean().detach(), "kd": kl_chosen.mean().detach(), "alpha": alpha.mean(),
                  "teacher_choice": choice}


# ----------------------------------------------------------------------------- building blocks

def kl_per_sample(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """tau^2 * KL(softmax(t/tau) || softmax(s/tau)) per teacher and sample: [B,C], [K,B,C] -> [K,B]."""
    log_p_s = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=-1)
    return temperature ** 2 * (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)


def teacher_weights(teacher_logits: Tensor, labels: Tensor, *, weighting: Weighting = "sample",
                    temperature: float = 1.0) -> Tensor:
    """Methods 1-2: w_k = (1 - softmax_k(CE_k)) / (K - 1) -> [K, B]: per sample (Eq. 1), from the batch-mean CE
    ('batch'), or per sample then averaged over the batch ('batch_mean', the authors' code)."""
    _check_teachers(teacher_logits, labels, "the confidence-weighted losses")
    k, b, _ = teacher_logits.shape
    ce = F.cross_entropy((teacher_logits / temperature).flatten(0, 1), labels.repeat(k),
                         reduction="none").view(k, b)                               # [K, B]
    if weighting == "batch":
        ce = ce.mean(1, keepdim=True)
    weights = (1 - ce.softmax(0)) / (k - 1)
    return (weights.mean(1, keepdim=True) if weighting == "batch_mean" else weights).expand(k, b)


def weighted_kd(student_logits: Tensor, teacher_logits: Tensor, weights: Tensor, *, temperature: float,
                aggregation: Aggregation = "sum_kl", divide_by_k: bool = False) -> Tensor:
    """Methods 1-2 KD term: mean_i sum_k w_k,i KL_k,i (Eq. 3), or KL to the weighted mean of the logits."""
    if aggregation == "sum_kl":
        kd = (weights * kl_per_sample(student_logits, teacher_logits, temperature)).sum(0).mean()
    else:
        mixed = (weights[..., None] * teacher_logits).sum(0)                           # [B, C]
        kd = kl_per_sample(student_logits, mixed[None], temperature)[0].mean()
    return kd / len(teacher_logits) if divide_by_k else kd


def most_confident(p_true: Tensor) -> Tensor:
    """Method 3's choice: per sample, the teacher with the highest true-class probability (ties: lowest k)."""
    return p_true.argmax(0)


def order_dependent(p_true: Tensor) -> Tensor:
    """[K,B] -> [B] bool: samples whose Method 3 teacher depends on the teachers' order (a tie at the maximum,
    e.g. true-class probability 1.0 for two teachers: `most_confident` then takes the first listed)."""
    return (p_true == p_true.max(0).values).sum(0) > 1


def true_class_probability(teacher_logits: Tensor, labels: Tensor) -> Tensor:
    """softmax(t_k,i)[y_i] for every teacher and sample: [K,B,C], [B] -> [K,B]."""
    return teacher_logits.softmax(-1).gather(2, labels[None, :, None].expand(len(teacher_logits), -1, 1))[..., 0]


def confidence_temperature_of(option: ConfidenceTemperature, temperature: float) -> float:
    """The softmax temperature of the teachers' confidences: 1, or the KD temperature tau."""
    return 1.0 if option == "one" else temperature


def _check_teachers(teacher_logits: Tensor, labels: Tensor, where: str) -> None:
    if teacher_logits.dim() != 3:
        raise ValueError(f"{where} takes teacher logits [K,B,C], got shape {tuple(teacher_logits.shape)}")
    if teacher_logits.shape[0] < 2:
        raise ValueError(f"{where} needs K >= 2 teachers, got K={teacher_logits.shape[0]}; use kd_loss for one teacher")
    if teacher_logits.shape[1] != len(labels):
        raise ValueError(f"teacher logits hold {teacher_logits.shape[1]} samples but labels {len(labels)}")
