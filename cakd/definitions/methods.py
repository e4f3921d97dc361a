"""The distillation methods, each registered once: its title, its teachers, the options its loss reads, its notebook,
and its loss in words as a run's options resolve it (report section 3). cakd.training.losses implements exactly these
names and refuses a loss whose keywords differ from `reads`; a method without a formula cannot be registered, so
no method prints another's.

To add a method: its entry here, its loss in cakd.training.losses (`register_loss`), its manifest rows, and a
section of the book's method page."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

Formula = Callable[[Any], str]   # RunConfig -> the loss in words (KL_k = tau^2 KL(p_t_k^tau || p_s^tau) per sample)


@dataclass(frozen=True)
class Method:
    title: str
    teachers: Literal["none", "one", "several"]
    notebook: str                  # notebooks/<notebook>.ipynb trains it
    example: str                   # a parameter its notebook's help shows, e.g. "-p temperature 16"
    formula: Formula
    reads: tuple[str, ...] = ()    # exactly its loss's keyword arguments; the run hash covers them


def _ce(c: Any) -> str:
    return "L = CE"


def _kd(c: Any) -> str:
    return f"L = {c.alpha:g} mean_i KL_i + {1 - c.alpha:g} CE, tau {c.temperature:g}"


def _at(c: Any) -> str:
    return "1" if c.confidence_temperature == "one" else "tau"


def _weighted_kd(c: Any) -> str:
    """Methods 1-2's teacher weights and KD term."""
    weights = {"sample": "w_k,i = (1 - softmax_k(CE_k,i)) / (K - 1) per sample",
               "batch": "w_k = (1 - softmax_k(mean_i CE_k,i)) / (K - 1)",
               "batch_mean": "w_k = mean_i (1 - softmax_k(CE_k,i)) / (K - 1)"}[c.weighting]
    kd = ("L_KL = mean_i KL(softmax(sum_k w_k t_k,i / tau) || p_s^tau)" if c.aggregation != "sum_kl" else
          "L_KL = mean_i sum_k w_k,i KL_k,i" if c.weighting == "sample" else "L_KL = sum_k w_k mean_i KL_k,i")
    return f"{weights} (CE_k at temperature {_at(c)}); {kd}" + (" / K" if c.divide_by_k else "")


def _ca_wkd(c: Any) -> str:
    return f"{_weighted_kd(c)}; L = L_KL + CE, tau {c.temperature:g}"


def _alpha_guided(c: Any) -> str:
    per_sample = c.m2_gate == "sample_mean"
    conf = {"max_prob": "max_c softmax(mean_k t_k,i)", "true_class": "softmax(mean_k t_k,i)[y_i]",
            "teacher_true_class": "mean_k softmax(t_k,i)[y_i]"}[c.m2_confidence]
    conf = f"conf_i = {conf}" if per_sample else f"conf = mean_i {conf}"
    gate = (f"g = mean_i sigmoid({c.gamma:g} (conf_i - {c.theta:g}))" if per_sample
            else f"g = sigmoid({c.gamma:g} (conf - {c.theta:g}))")
    return (f"{_weighted_kd(c)}; {conf} (temperature {_at(c)}); {gate}; "
            f"L = g L_KL + (1 - g) {c.m2_ce_weight:g} CE, tau {c.temperature:g}")


def _adaptive_alpha(c: Any) -> str:
    alpha = "mean_i p_k*(y_i)" if c.m3_alpha == "batch" else "p_k*(y_i) per sample"
    loss = "alpha KL_k* + (1 - alpha) CE" if c.use_ce else "KL_k*"
    return (f"k*_i = argmax_k p_k(y_i) at temperature {_at(c)} (the first teacher listed wins a tie); "
            f"alpha = {alpha}; L = {loss}, tau {c.temperature:g}")


_M12 = ("temperature", "weighting", "aggregation", "divide_by_k", "confidence_temperature")
METHODS: dict[str, Method] = {
    "baseline": Method("Baseline (no teacher)", "none", "baseline", "-p seed 1", _ce),
    "kd": Method("Single-teacher KD", "one", "single_teacher", "-p alpha 0.75", _kd, ("alpha", "temperature")),
    "ca_wkd": Method("Method 1 (CA-WKD)", "several", "method1", "-p weighting sample", _ca_wkd, _M12),
    "alpha_guided": Method("Method 2 (alpha-guided)", "several", "method2", "-p gamma 2", _alpha_guided,
                           (*_M12, "gamma", "theta", "m2_confidence", "m2_gate", "m2_ce_weight")),
    "adaptive_alpha": Method("Method 3 (adaptive alpha)", "several", "method3", "-p temperature 16", _adaptive_alpha,
                             ("temperature", "use_ce", "m3_alpha", "confidence_temperature")),
}
