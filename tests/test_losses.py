"""The report's losses (cakd.losses) against values worked out by hand, and their invariants (report section 3).

Logits are built from logs so that softmaxes are simple fractions: softmax([ln 3, 0, 0, 0]) = [3, 1, 1, 1] / 6.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cakd.definitions.config import RunConfig
from cakd.definitions.methods import METHODS
from cakd.training.losses import (LOSSES, adaptive_alpha_loss, alpha_guided_loss, ca_wkd_loss, ce_loss, kd_loss,
                         kl_per_sample, most_confident, order_dependent, register_loss,
                         teacher_weights)
from support import D, R50

LN2, LN3, LN4 = math.log(2), math.log(3), math.log(4)


def close(actual, expected, **kw):
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=torch.float32), **kw)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# Two teachers, one sample, four classes, label 0, student uniform (used by Methods 1 and 2):
# teacher 0 = [ln 3, 0, 0, 0] -> p = [1/2, 1/6, 1/6, 1/6]: CE_0 = ln 2
# teacher 1 = [0, 0, 0, 0]    -> p = [1/4] * 4:             CE_1 = ln 4
# softmax_k(CE) = [2, 4] / 6 = [1/3, 2/3] -> w = (1 - [1/3, 2/3]) / (K - 1) = [2/3, 1/3]
# KL_0 = 1/2 ln(1/2 / 1/4) + 3 * 1/6 ln(1/6 / 1/4) = 1/2 ln 2 + 1/2 ln(2/3) = 1/2 ln(4/3);  KL_1 = 0
# student CE = ln 4
TWO_TEACHERS = torch.tensor([[[LN3, 0., 0., 0.]], [[0., 0., 0., 0.]]])
UNIFORM_STUDENT = torch.zeros(1, 4)
LABEL_0 = torch.tensor([0])
KL_0 = 0.5 * math.log(4 / 3)


def random_inputs(k: int = 3, b: int = 8, c: int = 10, seed: int = 0, scale: float = 3.0):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(b, c, generator=g), scale * torch.randn(k, b, c, generator=g),
            torch.randint(0, c, (b,), generator=g))


# ----------------------------------------------------------------------------- registry

def test_registry_maps_names_to_the_loss_functions_without_their_option_checks():
    # a run checks its options once, in its RunConfig; the module's names check them at every call
    for name, fn in (("baseline", ce_loss), ("kd", kd_loss), ("ca_wkd", ca_wkd_loss),
                     ("alpha_guided", alpha_guided_loss), ("adaptive_alpha", adaptive_alpha_loss)):
        assert LOSSES[name] is fn.__wrapped__


def test_every_method_the_definitions_name_has_its_loss():
    assert set(LOSSES) == set(METHODS)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_is_a_valid_run_with_its_teachers(name):
    # K = 0, 1 or 2 teachers as the method declares
    teachers = {"none": (), "one": (R50,), "several": (D, R50)}[METHODS[name].teachers]
    assert RunConfig(method=name, teachers=teachers).loss is METHODS[name]


def test_register_loss_refuses_keywords_that_are_not_what_its_method_reads(monkeypatch):
    from cakd.definitions import methods

    monkeypatch.setattr("cakd.training.losses.LOSSES", dict(LOSSES))
    monkeypatch.setitem(methods.METHODS, "bad_kd", methods.Method("Bad KD", "one", "single_teacher", "-p alpha 1",
                                                                  lambda c: "L = KL", ("alpha",)))
    with pytest.raises(TypeError, match=r"reads=\('alpha',\) but takes keywords \('temperature',\)"):
        @register_loss("bad_kd")
        def bad_kd(student_logits, teacher_logits, labels, *, temperature):
            return student_logits.sum(), {}


def test_register_loss_refuses_a_method_the_definitions_do_not_name():
    with pytest.raises(TypeError, match="no entry in cakd.definitions.methods.METHODS"):
        register_loss("unnamed")(lambda s, t, y: (s.sum(), {}))


# ----------------------------------------------------------------------------- KL building block

def test_kl_hand_value_two_classes():
    # p_t = softmax([ln 3, 0]) = [3/4, 1/4], p_s = [1/2, 1/2]
    # KL = 3/4 ln(3/2) + 1/4 ln(1/2) = 3/4 ln 3 - ln 2 = 0.130812
    kl = kl_per_sample(torch.zeros(1, 2), torch.tensor([[[LN3, 0.]]]), 1.0)
    close(kl, [[0.75 * LN3 - LN2]])


def test_kl_is_tau_squared_times_kl_at_one_on_scaled_logits():
    # softmax(tau*z / tau) = softmax(z), so the KL at tau on (tau*s, tau*t) is tau^2 times the KL at 1 on (s, t):
    # tau = 2: 4 * (3/4 ln 3 - ln 2) = 3 ln 3 - 4 ln 2
    kl = kl_per_sample(2 * torch.zeros(1, 2), 2 * torch.tensor([[[LN3, 0.]]]), 2.0)
    close(kl, [[3 * LN3 - 4 * LN2]])


def test_kl_tau_squared_invariant_on_random_logits():
    s, t, _ = random_inputs(seed=1)
    for tau in (0.5, 2.0, 8.0):
        close(kl_per_sample(tau * s, tau * t, tau), tau ** 2 * kl_per_sample(s, t, 1.0), rtol=1e-4, atol=1e-5)


def test_kl_of_identical_distributions_is_zero():
    s, _, _ = random_inputs(seed=2)
    close(kl_per_sample(s, s[None], 4.0), torch.zeros(1, len(s)), atol=1e-5, rtol=0)


def test_kd_term_is_batchmean_not_divided_by_classes():
    # sample 0: KL = 3/4 ln 3 - ln 2 (as above); sample 1: teacher == student -> KL = 0
    # batchmean = (3/4 ln 3 - ln 2) / 2 = 0.065406; PyTorch's "mean" would also divide by C = 2 (0.032703)
    student = torch.zeros(2, 2)
    teacher = torch.tensor([[LN3, 0.], [0., 0.]])
    kd = kd_loss(student, teacher, torch.tensor([0, 0]), alpha=1.0, temperature=1.0)[0]
    close(kd, (0.75 * LN3 - LN2) / 2)
    reference = F.kl_div(F.log_softmax(student, -1), F.log_softmax(teacher, -1), reduction="batchmean",
                         log_target=True)
    close(kd, reference)
    assert not torch.isclose(kd, torch.tensor((0.75 * LN3 - LN2) / 4))


def test_kd_term_matches_kl_div_batchmean_times_tau_squared_on_random_logits():
    s, t, y = random_inputs(k=1, seed=3)
    tau = 4.0
    kd = kd_loss(s, t[0], y, alpha=1.0, temperature=tau)[0]
    reference = tau ** 2 * F.kl_div(F.log_softmax(s / tau, -1), F.log_softmax(t[0] / tau, -1),
                                    reduction="batchmean", log_target=True)
    close(kd, reference)


# ----------------------------------------------------------------------------- baseline and single teacher

def test_ce_loss_hand_value_and_ignores_teachers():
    # softmax([ln 3, 0]) = [3/4, 1/4]; label 1 -> -ln(1/4) = ln 4
    loss, diag = ce_loss(torch.tensor([[LN3, 0.]]), None, torch.tensor([1]))
    close(loss, LN4)
    close(diag["ce"], LN4)


def test_kd_loss_hand_value():
    # KL = 3/4 ln 3 - ln 2 = 0.130812 (above); CE(label 0) = -ln(1/2) = ln 2
    # alpha = 0.25: 0.25 * 0.130812 + 0.75 * 0.693147 = 0.552563
    loss, diag = kd_loss(torch.zeros(1, 2), torch.tensor([[LN3, 0.]]), LABEL_0, alpha=0.25, temperature=1.0)
    close(loss, 0.25 * (0.75 * LN3 - LN2) + 0.75 * LN2)
    close(diag["kd"], 0.75 * LN3 - LN2)
    close(diag["ce"], LN2)


def test_kd_loss_alpha_one_is_pure_kl():
    loss, _ = kd_loss(torch.zeros(1, 2), torch.tensor([[LN3, 0.]]), LABEL_0, alpha=1.0, temperature=1.0)
    close(loss, 0.75 * LN3 - LN2)


def test_kd_loss_alpha_zero_is_pure_ce():
    loss, _ = kd_loss(torch.zeros(1, 2), torch.tensor([[LN3, 0.]]), LABEL_0, alpha=0.0, temperature=1.0)
    close(loss, LN2)


def test_kd_loss_accepts_one_teacher_with_a_k_axis():
    s, t, y = random_inputs(k=1, seed=4)
    close(kd_loss(s, t, y, alpha=0.5, temperature=4.0)[0], kd_loss(s, t[0], y, alpha=0.5, temperature=4.0)[0])


def test_kd_loss_refuses_several_teachers():
    s, t, y = random_inputs(k=2)
    with pytest.raises(ValueError, match="K=2"):
        kd_loss(s, t, y, alpha=0.5, temperature=4.0)


def test_kd_loss_gradient_is_tau_times_probability_difference_over_batch():
    # d/ds [tau^2 KL(p_t || softmax(s/tau))] = tau (p_s - p_t); batch of 1
    # tau = 2, s = 0, t = 2 * [ln 3, 0] -> p_t = [3/4, 1/4], p_s = [1/2, 1/2]: grad = 2 * [-1/4, 1/4]
    student = torch.zeros(1, 2, requires_grad=True)
    kd_loss(student, torch.tensor([[2 * LN3, 0.]]), LABEL_0, alpha=1.0, temperature=2.0)[0].backward()
    close(student.grad, [[-0.5, 0.5]])


# ----------------------------------------------------------------------------- Method 1 (CA-WKD)

def test_ca_wkd_hand_value():
    # L = (2/3 KL_0 + 1/3 * 0) + ln 4 = 1/3 ln(4/3) + ln 4 = 1.482188
    loss, diag = ca_wkd_loss(UNIFORM_STUDENT, TWO_TEACHERS, LABEL_0, temperature=1.0)
    close(loss, 2 / 3 * KL_0 + LN4)
    close(diag["kd"], 2 / 3 * KL_0)
    close(diag["ce"], LN4)


def test_ca_wkd_weights_favour_the_teacher_with_lower_ce():
    # w = [2/3, 1/3] (worked out above TWO_TEACHERS)
    _, diag = ca_wkd_loss(UNIFORM_STUDENT, TWO_TEACHERS, LABEL_0, temperature=1.0)
    close(diag["teacher_weights"], [2 / 3, 1 / 3])


def test_teacher_weights_of_three_equally_confident_teachers_are_a_third():
    # equal CEs -> softmax_k = 1/3 each -> w = (1 - 1/3) / 2 = 1/3
    weights = teacher_weights(torch.zeros(3, 1, 5), LABEL_0)
    close(weights, torch.full((3, 1), 1 / 3))


def test_teacher_weights_sum_to_one_per_sample():
    _, t, y = random_inputs(k=4, b=16, seed=5)
    weights = teacher_weights(t, y)
    assert weights.shape == (4, 16)
    close(weights.sum(0), torch.ones(16))
    assert (weights >= 0).all()


def test_teacher_weights_per_batch_are_shared_by_the_batch_and_sum_to_one():
    _, t, y = random_inputs(k=3, b=16, seed=6)
    weights = teacher_weights(t, y, weighting="batch")
    close(weights, weights[:, :1].expand(3, 16))
    close(weights.sum(0), torch.ones(16))


def test_ca_wkd_weighting_batch_changes_the_loss():
    # sample 0: teachers (0, 1) as above -> per-sample w = [2/3, 1/3], KL = [KL_0, 0]
    # sample 1: teachers swapped          -> per-sample w = [1/3, 2/3], KL = [0, KL_0]
    # per sample: mean(2/3 KL_0, 2/3 KL_0) = 2/3 KL_0
    # per batch: mean CE per teacher = (ln 2 + ln 4) / 2 for both -> w = [1/2, 1/2]: mean(KL_0/2, KL_0/2) = KL_0/2
    teachers = torch.tensor([[[LN3, 0., 0., 0.], [0., 0., 0., 0.]], [[0., 0., 0., 0.], [LN3, 0., 0., 0.]]])
    student, labels = torch.zeros(2, 4), torch.tensor([0, 0])
    per_sample = ca_wkd_loss(student, teachers, labels, temperature=1.0)
    per_batch = ca_wkd_loss(student, teachers, labels, temperature=1.0, weighting="batch")
    close(per_sample[1]["kd"], 2 / 3 * KL_0)
    close(per_batch[1]["kd"], KL_0 / 2)
    close(per_batch[0], KL_0 / 2 + LN4)


# Two samples, label 0, student uniform: sample 0 has the teachers above (w = [2/3, 1/3], KL = [KL_0, 0]);
# sample 1 has two uniform teachers (equal CE ln 4 -> w = [1/2, 1/2], KL = [0, 0]).
UNEVEN_TEACHERS = torch.tensor([[[LN3, 0., 0., 0.], [0., 0., 0., 0.]], [[0., 0., 0., 0.], [0., 0., 0., 0.]]])
TWO_STUDENTS, TWO_LABELS = torch.zeros(2, 4), torch.tensor([0, 0])


def test_ca_wkd_batch_mean_weighting_is_the_authors_mean_weight_times_mean_kl():
    # authors' code: sum_k mean_i(w_k,i) * mean_i(KL_k,i)
    # mean_i w = [(2/3 + 1/2) / 2, (1/3 + 1/2) / 2] = [7/12, 5/12]; mean_i KL = [KL_0 / 2, 0]
    # -> KD = 7/12 * KL_0 / 2 = 7/24 KL_0 (Eq. 3 per sample: mean(2/3 KL_0, 0) = 8/24 KL_0)
    loss, diag = ca_wkd_loss(TWO_STUDENTS, UNEVEN_TEACHERS, TWO_LABELS, temperature=1.0, weighting="batch_mean")
    close(diag["kd"], 7 / 24 * KL_0)
    close(diag["teacher_weights"], [7 / 12, 5 / 12])
    close(loss, 7 / 24 * KL_0 + LN4)
    _, per_sample = ca_wkd_loss(TWO_STUDENTS, UNEVEN_TEACHERS, TWO_LABELS, temperature=1.0)
    close(per_sample["kd"], KL_0 / 3)


def test_alpha_guided_as_the_authors_coded_it():
    # m2_confidence='teacher_true_class': conf_i = mean_k p_k(y_i) at temperature 1
    #   sample 0: (1/2 + 1/4) / 2 = 3/8; sample 1: (1/4 + 1/4) / 2 = 1/4
    # m2_gate='sample_mean', gamma 5, theta 0.3: gate = (sigmoid(5 (3/8 - 0.3)) + sigmoid(5 (1/4 - 0.3))) / 2
    #   = (sigmoid(0.375) + sigmoid(-0.25)) / 2 = (0.592667 + 0.437823) / 2 = 0.515245
    # KD (batch_mean) = 7/24 KL_0 (above); CE = ln 4; m2_ce_weight 0.5: L = gate KD + (1 - gate) * 0.5 ln 4
    gate = (sigmoid(0.375) + sigmoid(-0.25)) / 2
    loss, diag = alpha_guided_loss(TWO_STUDENTS, UNEVEN_TEACHERS, TWO_LABELS, temperature=1.0, gamma=5.0,
                                   theta=0.3, weighting="batch_mean", m2_confidence="teacher_true_class",
                                   m2_gate="sample_mean", m2_ce_weight=0.5)
    close(diag["alpha"], gate)
    close(diag["kd"], 7 / 24 * KL_0)
    close(loss, gate * 7 / 24 * KL_0 + (1 - gate) * 0.5 * LN4)


def test_alpha_guided_batch_gate_is_the_sigmoid_of_the_mean_confidence():
    # m2_gate='batch' with the same confidences: sigmoid(5 ((3/8 + 1/4) / 2 - 0.3)) = sigmoid(0.0625) = 0.515620
    _, diag = alpha_guided_loss(TWO_STUDENTS, UNEVEN_TEACHERS, TWO_LABELS, temperature=1.0, gamma=5.0,
                                m2_confidence="teacher_true_class")
    close(diag["alpha"], sigmoid(0.0625))


def test_ca_wkd_aggregation_mean_logits_is_kl_to_the_weighted_mean_of_logits():
    # mixed logits = 2/3 [ln 3, 0, 0, 0] + 1/3 * 0 = [2/3 ln 3, 0, 0, 0]; a = 3^(2/3) = 2.080084
    # p = [a, 1, 1, 1] / (a + 3) = [0.409459, 0.196847 x 3]; KL to uniform = sum p ln(4 p) = 0.060857
    # (sum_kl gives 2/3 KL_0 = 0.095894)
    a = 3 ** (2 / 3)
    p = [a / (a + 3)] + [1 / (a + 3)] * 3
    expected = sum(q * math.log(4 * q) for q in p)
    _, diag = ca_wkd_loss(UNIFORM_STUDENT, TWO_TEACHERS, LABEL_0, temperature=1.0, aggregation="mean_logits")
    close(diag["kd"], expected)
    assert abs(expected - 2 / 3 * KL_0) > 0.03


def test_ca_wkd_divide_by_k_divides_the_kd_term_by_k():
    # K = 2: L = (2/3 KL_0) / 2 + ln 4
    loss, diag = ca_wkd_loss(UNIFORM_STUDENT, TWO_TEACHERS, LABEL_0, temperature=1.0, divide_by_k=True)
    close(diag["kd"], KL_0 / 3)
    close(loss, KL_0 / 3 + LN4)


def test_ca_wkd_confidence_temperature_tau_softens_the_weights():
    # tau = 2: teacher 0 / 2 = [ln 3 / 2, 0, 0, 0] -> p(y) = sqrt3 / (sqrt3 + 3) -> exp(CE_0) = (sqrt3 + 3)/sqrt3 = 1 + sqrt3
    # teacher 1: exp(CE_1) = 4; softmax_k(CE) = [1 + sqrt3, 4] / (5 + sqrt3) -> w_0 = 4 / (5 + sqrt3) = 0.594173
    r3 = math.sqrt(3)
    _, diag = ca_wkd_loss(UNIFORM_STUDENT, TWO_TEACHERS, LABEL_0, temperature=2.0, confidence_temperature="tau")
    close(diag["teacher_weights"], [4 / (5 + r3), (1 + r3) / (5 + r3)])
    _, default = ca_wkd_loss(UNIFORM_STUDENT, TWO_TEACHERS, LABEL_0, temperature=2.0)
    close(default["teacher_weights"], [2 / 3, 1 / 3])


# ----------------------------------------------------------------------------- Method 2 (alpha-guided)

def test_alpha_guided_hand_value():
    # ensemble = mean_k logits = [ln 3 / 2, 0, 0, 0] -> max prob = sqrt3 / (sqrt3 + 3) = 0.366025
    # alpha = sigmoid(2 (0.366025 - 0.3)) = sigmoid(0.132051) = 0.532965
    # L_KL = 2/3 KL_0 (Method 1's), CE = ln 4: L = alpha 2/3 KL_0 + (1 - alpha) ln 4
    r3 = math.sqrt(3)
    alpha = sigmoid(2 * (r3 / (r3 + 3) - 0.3))
    loss, diag = alpha_guided_loss(UNIFORM_STUDENT, TWO_TEACHERS, LABEL_0, temperature=1.0)
    close(diag["alpha"], alpha)
    close(loss, alpha * 2 / 3 * KL_0 + (1 - alpha) * LN4)
    close(diag["teacher_weights"], [2 / 3, 1 / 3])


def test_alpha_guided_true_class_confidence_uses_the_label_probability():
    # label 1: ensemble p(1) = 1 / (sqrt3 + 3) = 0.211325 -> alpha = sigmoid(2 (0.211325 - 0.3)) = 0.455778
    # max_prob keeps p(0) = sqrt3 / (sqrt3 + 3) -> alpha = 0.532965
    r3 = math.sqrt(3)
    label_1 = torch.tensor([1])
    _, true_class = alpha_guided_loss(UNIFORM_STUDENT, TWO_TEACHERS, label_1, temperature=1.0,
                                      m2_confidence="true_class")
    _, max_prob = alpha_guided_loss(UNIFORM_STUDENT, TWO_TEACHERS, label_1, temperature=1.0)
    close(true_class["alpha"], sigmoid(2 * (1 / (r3 + 3) - 0.3)))
    close(max_prob["alpha"], sigmoid(2 * (r3 / (r3 + 3) - 0.3)))


def test_alpha_guided_confidence_temperature_tau_softens_the_ensemble():
    # tau = 2: ensemble / 2 = [ln 3 / 4, 0, 0, 0] -> max prob = 3^(1/4) / (3^(1/4) + 3) = 0.305035
    q = 3 ** 0.25
    _, diag = alpha_guided_loss(UNIFORM_STUDENT, TWO_TEACHERS, LABEL_0, temperature=2.0, confidence_temperature="tau")
    close(diag["alpha"], sigmoid(2 * (q / (q + 3) - 0.3)))


def test_alpha_guided_alpha_lies_in_the_reported_range_for_random_inputs():
    # conf in [0, 1] -> alpha in [sigmoid(2 (0 - 0.3)), sigmoid(2 (1 - 0.3))] = [0.3543, 0.8022]
    for seed in range(20):
        s, t, y = random_inputs(k=3, b=4, c=10, seed=seed, scale=10.0 * seed / 19)
        _, diag = alpha_guided_loss(s, t, y, temperature=4.0)
        assert 0.3543 <= diag["alpha"].item() <= 0.8022


def test_alpha_guided_alpha_reaches_the_ends_of_the_range():
    # confident ensemble: conf -> 1, alpha -> sigmoid(1.4) = 0.802184
    # 1000 uniform classes: conf = 0.001, alpha = sigmoid(2 (0.001 - 0.3)) = sigmoid(-0.598) = 0.354806
    confident = torch.zeros(2, 1, 10)
    confident[:, 0, 0] = 100.0
    _, high = alpha_guided_loss(torch.zeros(1, 10), confident, LABEL_0, temperature=1.0)
    _, low = alpha_guided_loss(torch.zeros(1, 1000), torch.zeros(2, 1, 1000), LABEL_0, temperature=1.0)
    close(high["alpha"], sigmoid(1.4))
    close(low["alpha"], sigmoid(-0.598))


@pytest.mark.parametrize("options", [{}, dict(weighting="batch"), dict(aggregation="mean_logits"),
                                     dict(divide_by_k=True), dict(confidence_temperature="tau")],
                         ids=["default", "batch", "mean_logits", "divide_by_k", "tau"])
def test_alpha_guided_kd_term_is_method_1_kd_term_under_every_option(options):
    # Method 2 reuses Method 1's L_KL, so each option must reach it the same way
    s, t, y = random_inputs(seed=7)
    _, m2 = alpha_guided_loss(s, t, y, temperature=4.0, **options)
    _, m1 = ca_wkd_loss(s, t, y, temperature=4.0, **options)
    close(m2["kd"], m1["kd"])
    close(m2["teacher_weights"], m1["teacher_weights"])


# ----------------------------------------------------------------------------- Method 3 (adaptive alpha)

# Two teachers, two samples, label 0, student uniform:
# sample 0: teacher 0 [ln 3, 0, 0, 0] p(y) = 1/2; teacher 1 [0, 0, 0, 0] p(y) = 1/4 -> k* = 0, p = 1/2
#           KL_0 = 1/2 ln(4/3)
# sample 1: teacher 0 [0, 0, 0, 0] p(y) = 1/4; teacher 1 [ln 9, 0, 0, 0] p = [3/4, 1/12, 1/12, 1/12] -> k* = 1, p = 3/4
#           KL = 3/4 ln 3 + 3/12 ln(1/3) = 1/2 ln 3
# alpha = (1/2 + 3/4) / 2 = 5/8; CE = ln 4 per sample; KL_0 + 1/2 ln 3 = 1/2 ln 4
M3_TEACHERS = torch.tensor([[[LN3, 0., 0., 0.], [0., 0., 0., 0.]], [[0., 0., 0., 0.], [math.log(9), 0., 0., 0.]]])
M3_STUDENT = torch.zeros(2, 4)
M3_LABELS = torch.tensor([0, 0])


def test_adaptive_alpha_hand_value():
    # L = mean_i (5/8 KL_i + 3/8 ln 4) = 5/8 (1/2 ln 4) / 2 + 3/8 ln 4 = 17/32 ln 4 = 0.736469
    loss, diag = adaptive_alpha_loss(M3_STUDENT, M3_TEACHERS, M3_LABELS, temperature=1.0)
    close(loss, 17 / 32 * LN4)
    close(diag["alpha"], 5 / 8)
    close(diag["teacher_choice"], [0.5, 0.5])
    close(diag["kd"], LN4 / 4)


def test_adaptive_alpha_per_sample_alpha():
    # L = mean(1/2 KL_0 + 1/2 ln 4, 3/4 (1/2 ln 3) + 1/4 ln 4) = (1/4 ln(4/3) + 3/8 ln 3 + 3/4 ln 4) / 2 = 0.761811
    loss, _ = adaptive_alpha_loss(M3_STUDENT, M3_TEACHERS, M3_LABELS, temperature=1.0, m3_alpha="sample")
    close(loss, (0.25 * math.log(4 / 3) + 3 / 8 * LN3 + 0.75 * LN4) / 2)


def test_adaptive_alpha_without_ce_is_the_chosen_teacher_kl():
    # mean(KL_0, 1/2 ln 3) = (1/2 ln 4) / 2 = ln 4 / 4 = 0.346574
    loss, _ = adaptive_alpha_loss(M3_STUDENT, M3_TEACHERS, M3_LABELS, temperature=1.0, use_ce=False)
    close(loss, LN4 / 4)


def test_adaptive_alpha_without_ce_ignores_the_alpha_option():
    s, t, y = random_inputs(seed=8)
    batch, _ = adaptive_alpha_loss(s, t, y, temperature=4.0, use_ce=False)
    sample, _ = adaptive_alpha_loss(s, t, y, temperature=4.0, use_ce=False, m3_alpha="sample")
    close(batch, sample)


def test_adaptive_alpha_ties_choose_the_lowest_teacher_index():
    # both teachers give the label p = 1/2 exactly (exp(-30) vanishes next to 1 + 1 in float32);
    # student [0, 1, 0, 0]: q = [1, e, 1, 1] / (3 + e)
    # KL(A = [0, 0, -30, -30]) = 1/2 ln((3+e)/2) + 1/2 ln((3+e)/(2e)) = ln((3+e)/2) - 1/2 = 0.550513
    # KL(B = [0, -30, 0, -30]) = ln((3+e)/2)                                             = 1.050513
    a = torch.tensor([[0., 0., -30., -30.]])
    b = torch.tensor([[0., -30., 0., -30.]])
    student = torch.tensor([[0., 1., 0., 0.]])
    base = math.log((3 + math.e) / 2)
    loss_ab, diag_ab = adaptive_alpha_loss(student, torch.stack([a, b]), LABEL_0, temperature=1.0, use_ce=False)
    loss_ba, diag_ba = adaptive_alpha_loss(student, torch.stack([b, a]), LABEL_0, temperature=1.0, use_ce=False)
    close(diag_ab["teacher_choice"], [1., 0.])
    close(diag_ba["teacher_choice"], [1., 0.])
    close(loss_ab, base - 0.5)
    close(loss_ba, base)


def test_adaptive_alpha_confidence_temperature_tau():
    # tau = 2, sample 0: teacher 0 / 2 -> p(y) = sqrt3 / (sqrt3 + 3); sample 1: teacher 1 / 2 = [ln 3, 0, 0, 0] -> 1/2
    # alpha = (sqrt3 / (sqrt3 + 3) + 1/2) / 2 = 0.433013
    r3 = math.sqrt(3)
    _, diag = adaptive_alpha_loss(M3_STUDENT, M3_TEACHERS, M3_LABELS, temperature=2.0, confidence_temperature="tau")
    close(diag["alpha"], (r3 / (r3 + 3) + 0.5) / 2)


def test_adaptive_alpha_lies_in_zero_one_and_is_at_least_the_mean_label_probability():
    s, t, y = random_inputs(k=3, b=32, seed=9)
    _, diag = adaptive_alpha_loss(s, t, y, temperature=4.0)
    mean_p = t.softmax(-1).gather(2, y[None, :, None].expand(3, -1, 1)).mean()
    assert mean_p.item() <= diag["alpha"].item() <= 1.0


# ----------------------------------------------------------------------------- errors

MULTI_TEACHER_LOSSES = [ca_wkd_loss, alpha_guided_loss, adaptive_alpha_loss]


@pytest.mark.parametrize("loss_fn", MULTI_TEACHER_LOSSES, ids=lambda f: f.__name__)
def test_multi_teacher_losses_refuse_one_teacher(loss_fn):
    s, t, y = random_inputs(k=1)
    with pytest.raises(ValueError, match=r"K >= 2.*K=1"):
        loss_fn(s, t, y, temperature=4.0)


@pytest.mark.parametrize("loss_fn", MULTI_TEACHER_LOSSES, ids=lambda f: f.__name__)
def test_multi_teacher_losses_refuse_teacher_logits_without_k_axis(loss_fn):
    s, t, y = random_inputs(k=1)
    with pytest.raises(ValueError, match=r"\[K,B,C\]"):
        loss_fn(s, t[0], y, temperature=4.0)


@pytest.mark.parametrize("loss_fn", MULTI_TEACHER_LOSSES, ids=lambda f: f.__name__)
def test_multi_teacher_losses_refuse_labels_of_another_batch_size(loss_fn):
    s, t, y = random_inputs(k=2, b=4)
    with pytest.raises(ValueError, match="labels"):
        loss_fn(s, t, y[:3], temperature=4.0)


BAD_OPTIONS = [
    (ca_wkd_loss, "weighting", "token"),
    (ca_wkd_loss, "aggregation", "mean"),
    (ca_wkd_loss, "confidence_temperature", "two"),
    (ca_wkd_loss, "temperature", 0.0),
    (alpha_guided_loss, "weighting", "class"),
    (alpha_guided_loss, "aggregation", "max"),
    (alpha_guided_loss, "confidence_temperature", 1.0),
    (alpha_guided_loss, "m2_confidence", "entropy"),
    (alpha_guided_loss, "m2_gate", "max"),
    (alpha_guided_loss, "m2_ce_weight", float("nan")),
    (alpha_guided_loss, "gamma", float("nan")),
    (alpha_guided_loss, "theta", float("inf")),
    (adaptive_alpha_loss, "m3_alpha", "teacher"),
    (adaptive_alpha_loss, "confidence_temperature", "t"),
    (adaptive_alpha_loss, "temperature", -1.0),
    (kd_loss, "alpha", 1.5),
    (kd_loss, "alpha", -0.1),
    (kd_loss, "alpha", float("nan")),
    (kd_loss, "temperature", 0.0),
    (kd_loss, "temperature", float("nan")),
    (kd_loss, "temperature", float("inf")),
]


@pytest.mark.parametrize("loss_fn, option, value", BAD_OPTIONS,
                         ids=[f"{f.__name__}-{o}-{v}" for f, o, v in BAD_OPTIONS])
def test_bad_option_values_raise_value_error_naming_the_option(loss_fn, option, value):
    s, t, y = random_inputs(k=1 if loss_fn is kd_loss else 2)
    kwargs = {"temperature": 4.0, **({"alpha": 0.5} if loss_fn is kd_loss else {}), option: value}
    with pytest.raises(ValueError, match=option):
        loss_fn(s, t[0] if loss_fn is kd_loss else t, y, **kwargs)


# ----------------------------------------------------------------------------- gradients and diagnostics

ALL_LOSS_CALLS = [
    ("baseline", lambda s, t, y: ce_loss(s, None, y)),
    ("kd", lambda s, t, y: kd_loss(s, t[0], y, alpha=0.5, temperature=4.0)),
    ("ca_wkd", lambda s, t, y: ca_wkd_loss(s, t, y, temperature=4.0)),
    ("alpha_guided", lambda s, t, y: alpha_guided_loss(s, t, y, temperature=4.0)),
    ("adaptive_alpha", lambda s, t, y: adaptive_alpha_loss(s, t, y, temperature=4.0)),
]


@pytest.mark.parametrize("name, call", ALL_LOSS_CALLS, ids=[n for n, _ in ALL_LOSS_CALLS])
def test_gradient_flows_to_student_logits_from_frozen_teachers(name, call):
    s, t, y = random_inputs(k=3, seed=10)
    student = s.clone().requires_grad_(True)
    loss, _ = call(student, t, y)
    assert loss.dim() == 0 and loss.requires_grad
    loss.backward()
    assert student.grad is not None and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0
    assert not t.requires_grad and t.grad is None


@pytest.mark.parametrize("name, call", ALL_LOSS_CALLS, ids=[n for n, _ in ALL_LOSS_CALLS])
def test_diagnostics_are_detached(name, call):
    s, t, y = random_inputs(k=3, seed=11)
    loss, diag = call(s.clone().requires_grad_(True), t.clone().requires_grad_(True), y)
    assert diag and all(isinstance(v, torch.Tensor) and not v.requires_grad for v in diag.values())


def test_method_3_alpha_carries_no_gradient_into_the_loss():
    # alpha is a detached batch scalar: d L / d s = alpha dKL/ds + (1 - alpha) dCE/ds, with alpha a constant.
    # With use_ce and a teacher that equals the student, KL's gradient is zero, so the gradient is (1 - alpha) dCE/ds.
    s, t, y = random_inputs(k=2, b=4, seed=12)
    t = torch.stack([s, s])
    student = s.clone().requires_grad_(True)
    loss, diag = adaptive_alpha_loss(student, t, y, temperature=1.0)
    loss.backward()
    plain = s.clone().requires_grad_(True)
    F.cross_entropy(plain, y).backward()
    close(student.grad, (1 - diag["alpha"]) * plain.grad, atol=1e-6, rtol=1e-4)


def test_order_dependent_marks_a_shared_maximum_and_nothing_else():
    # sample 0: teachers 0 and 2 tie at 1.0; sample 1: teacher 1 alone highest; sample 2: all three tie
    p_true = torch.tensor([[1.0, 0.2, 0.5], [0.3, 0.9, 0.5], [1.0, 0.1, 0.5]])
    assert order_dependent(p_true).tolist() == [True, False, True]
    assert most_confident(p_true).tolist() == [0, 1, 0]       # the first teacher listed wins a tie
