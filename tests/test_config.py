"""RunConfig: validation derived from its option metadata, the hash of what a run reads, the profiles."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import subprocess
import sys

import pytest
import torch

from cakd.definitions.config import OPTIONS, RunConfig, TeacherTraining
from cakd.definitions.manifest import get_row
from cakd.definitions.profiles import PROFILES, profile_config
from cakd.reading.recipe import describe
from cakd.training import runs
from cakd.training.probes import lr_schedule
from support import D, R18, R50

NAN, INF = float("nan"), float("inf")
M1 = dict(method="ca_wkd", teachers=(D, R50))

# (id, RunConfig keyword arguments, the field the message must name)
BAD_CONFIGS = [
    ("unknown-method", dict(method="dino"), "method"),
    ("unknown-teacher", dict(method="kd", teachers=("vgg16",)), "teachers"),
    ("old-teacher-name", dict(method="kd", teachers=("resnet50",)), "teachers"),
    ("unknown-dataset", dict(dataset="mnist"), "dataset"),
    ("unknown-profile", dict(profile="fast"), "profile"),
    ("unknown-student", dict(student="resnet18"), "student"),
    ("temperature-zero", dict(temperature=0.0), "temperature"),
    ("temperature-negative", dict(temperature=-4.0), "temperature"),
    ("temperature-nan", dict(temperature=NAN), "temperature"),
    ("temperature-inf", dict(temperature=INF), "temperature"),
    ("temperature-str", dict(temperature="4"), "temperature"),
    ("alpha-negative", dict(alpha=-0.1), "alpha"),
    ("alpha-above-one", dict(alpha=1.1), "alpha"),
    ("alpha-nan", dict(alpha=NAN), "alpha"),
    ("alpha-bool", dict(alpha=True), "alpha"),
    ("gamma-nan", dict(gamma=NAN), "gamma"),
    ("gamma-inf", dict(gamma=INF), "gamma"),
    ("theta-nan", dict(theta=NAN), "theta"),
    ("theta-minus-inf", dict(theta=-INF), "theta"),
    ("m2-ce-weight-negative", dict(m2_ce_weight=-0.5), "m2_ce_weight"),
    ("epochs-zero", dict(epochs=0), "epochs"),
    ("epochs-negative", dict(epochs=-1), "epochs"),
    ("epochs-float", dict(epochs=1.5), "epochs"),
    ("epochs-bool", dict(epochs=True), "epochs"),
    ("patience-negative", dict(patience=-1), "patience"),
    ("batch-size-zero", dict(batch_size=0), "batch_size"),
    ("teacher-epochs-zero", dict(teacher_epochs=0), "teacher_epochs"),
    ("teacher-batch-size-zero", dict(teacher_batch_size=0), "teacher_batch_size"),
    ("eval-batch-size-zero", dict(eval_batch_size=0), "eval_batch_size"),
    ("lr-zero", dict(lr=0.0), "lr"),
    ("lr-negative", dict(lr=-1e-3), "lr"),
    ("teacher-lr-zero", dict(teacher_lr=0.0), "teacher_lr"),
    ("weight-decay-negative", dict(weight_decay=-0.01), "weight_decay"),
    ("weight-decay-nan", dict(weight_decay=NAN), "weight_decay"),
    ("eta-min-at-lr", dict(lr=1e-3, eta_min=1e-3), "eta_min"),
    ("cosine-t-max-negative", dict(cosine_t_max=-1), "cosine_t_max"),
    ("ca-wkd-one-teacher", dict(method="ca_wkd", teachers=(R50,)), "teachers"),
    ("alpha-guided-one-teacher", dict(method="alpha_guided", teachers=(R50,)), "teachers"),
    ("adaptive-alpha-no-teacher", dict(method="adaptive_alpha"), "teachers"),
    ("kd-no-teacher", dict(method="kd"), "teachers"),
    ("kd-two-teachers", dict(method="kd", teachers=(R50, R18)), "teachers"),
    ("baseline-with-teacher", dict(method="baseline", teachers=(R50,)), "teachers"),
    ("duplicate-teachers", dict(method="ca_wkd", teachers=(R50, R50)), "teachers"),
    ("imagefolder-without-data-dir", dict(dataset="imagefolder"), "data_dir"),
    ("data-dir-not-str", dict(data_dir=3), "data_dir"),
    ("weighting-token", dict(weighting="token"), "weighting"),
    ("aggregation-mean", dict(aggregation="mean"), "aggregation"),
    ("confidence-temperature-two", dict(confidence_temperature="two"), "confidence_temperature"),
    ("m2-confidence-entropy", dict(m2_confidence="entropy"), "m2_confidence"),
    ("m2-gate-max", dict(m2_gate="max"), "m2_gate"),
    ("m3-alpha-teacher", dict(m3_alpha="teacher"), "m3_alpha"),
    ("schedule-step", dict(schedule="step"), "schedule"),
    ("augment-mixup", dict(augment="mixup"), "augment"),
    ("teacher-mode-fixed", dict(teacher_mode="fixed"), "teacher_mode"),
    ("teacher-input-mixed", dict(teacher_input="mixed"), "teacher_input"),
    ("teacher-weights-imagenet", dict(teacher_weights="imagenet"), "teacher_weights"),
    ("precision-fp8", dict(precision="fp8"), "precision"),
    ("model-scale-small", dict(model_scale="small"), "model_scale"),
    ("device-tpu", dict(device="tpu"), "device"),
    ("use-ce-yes", dict(use_ce="yes"), "use_ce"),
    ("divide-by-k-int", dict(divide_by_k=1), "divide_by_k"),
    ("cuda-graph-int", dict(cuda_graph=1), "cuda_graph"),
    ("seed-negative", dict(seed=-1), "seed"),
    ("teacher-seed-float", dict(teacher_seed=0.5), "teacher_seed"),
    ("synthetic-size-10", dict(synthetic_size=10), "synthetic_size"),
    ("crop-larger-than-the-image", dict(resize=0, pad=0, crop=40), "crop"),
    # 256 -> 224 has 33 * 33 * 2 = 2178 views: a cache of every student view would be 13x the 162 of pad 4 / crop 32
    ("student-view-cache-of-2178-views", dict(M1, teacher_input="student_view"), "teacher_mode"),
    ("tiny-teachers-have-no-public-weights", dict(M1, model_scale="tiny", teacher_weights="public"),
     "teacher_weights"),
]


@pytest.mark.parametrize("kwargs, field", [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_raises_value_error_naming_the_field(kwargs, field):
    with pytest.raises(ValueError) as error:
        RunConfig(**kwargs)
    assert re.search(rf"\b{field}\b", str(error.value)), str(error.value)


def test_from_dict_refuses_an_unknown_field_with_the_closest_name():
    with pytest.raises(ValueError, match="'tempreature' \\(did you mean 'temperature'\\?\\)"):
        RunConfig.from_dict({"tempreature": 4.0})


def test_profile_config_refuses_an_unknown_field_and_names_it():
    with pytest.raises(ValueError, match="tempreature"):
        profile_config("smoke", tempreature=4.0)


def test_profile_config_refuses_an_unknown_profile_and_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"profile='fast'.*'paper'.*'consistent'.*'smoke'"):
        profile_config("fast")


def test_valid_multi_teacher_config_is_accepted_and_teachers_become_a_tuple():
    config = RunConfig(method="ca_wkd", teachers=[D, R50])
    assert config.teachers == (D, R50)


def test_boundary_values_are_accepted():
    # alpha in [0, 1] inclusive, weight decay 0, seed 0, patience 0 (off), the smallest synthetic size 60
    for kwargs in (dict(alpha=0.0), dict(alpha=1.0), dict(weight_decay=0.0), dict(seed=0), dict(patience=0),
                   dict(synthetic_size=600), dict(epochs=1), dict(temperature=1e-3)):
        RunConfig(**kwargs)


def test_student_view_cache_of_162_views_is_accepted():
    # pad 4 / crop 32 of a 32x32 image: 9 * 9 * 2 = 162 views, the consistent profile's cache
    config = profile_config("consistent", **M1)
    assert config.teacher_input == "student_view" and config.views.count == 162


# ----------------------------------------------------------------------------- hash

def test_run_id_is_stable_across_processes():
    config = get_row("m1_drv").config("smoke", temperature=8.0)
    env = {**os.environ, "PYTHONHASHSEED": "12345"}   # a different str hash seed: the digest must not use hash()
    out = subprocess.run([sys.executable, "-m", "cakd", "config", "m1_drv", "--profile", "smoke", "--set",
                          "temperature=8"], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.startswith(f"run {config.run_id}: ")


def test_digest_is_a_128_bit_hex_string_and_run_id_uses_it():
    config = RunConfig()
    assert re.fullmatch(r"[0-9a-f]{32}", config.digest())
    assert config.run_id == f"baseline-{config.digest()[:10]}"


def test_equal_configs_have_equal_digests():
    assert RunConfig(**M1).digest() == RunConfig(**M1).digest()


# Base of the hash tests: Method 1 with teachers trained here (so every scope but 'speed' is read) and online
# teachers (so teacher_input='student_view' stays valid at 2178 views).
HASH_BASE = dict(method="ca_wkd", teachers=(D, R18), teacher_weights="train", teacher_mode="online")
# A valid different value for every option.
CHANGED = {
    "profile": "paper", "method": "alpha_guided", "teachers": (D, R50), "seed": 1, "dataset": "cifar100",
    "data_dir": "/somewhere", "synthetic_size": 600, "synthetic_classes": 10, "augment": "none", "resize": 240,
    "pad": 2, "crop": 200,
    "student": "cifar_mobilenetv2", "model_scale": "tiny", "epochs": 3, "patience": 3, "batch_size": 64,
    "lr": 3e-3, "weight_decay": 0.0, "schedule": "constant", "cosine_t_max": 50, "eta_min": 1e-5,
    "precision": "fp32", "teacher_input": "student_view", "teacher_mode": "cache", "teacher_weights": "public",
    "teacher_epochs": 2, "teacher_lr": 1e-3, "teacher_batch_size": 64, "teacher_seed": 1, "temperature": 8.0,
    "alpha": 0.75, "gamma": 3.0, "theta": 0.5, "use_ce": False, "weighting": "batch_mean",
    "aggregation": "mean_logits", "divide_by_k": True, "confidence_temperature": "tau",
    "m2_confidence": "teacher_true_class", "m2_gate": "sample_mean", "m2_ce_weight": 0.5, "m3_alpha": "sample",
    "device": "cpu", "compile": True, "cuda_graph": False, "cudnn_benchmark": False, "eval_batch_size": 7,
}
# What Method 1 does not read: other methods' loss options, and the speed-only options.
NOT_READ_BY_METHOD_1 = {"alpha", "gamma", "theta", "use_ce", "m2_confidence", "m2_gate", "m2_ce_weight", "m3_alpha",
                        "device", "compile", "cuda_graph", "cudnn_benchmark", "eval_batch_size"}


def test_every_option_has_a_changed_value_here():
    # a new RunConfig option must get a value in CHANGED, and so a hash test below
    assert set(CHANGED) == set(OPTIONS)


@pytest.mark.parametrize("name", sorted(CHANGED))
def test_digest_changes_exactly_with_the_options_the_run_reads(name):
    config = RunConfig(**HASH_BASE)
    changed = dataclasses.replace(config, **{name: CHANGED[name]})
    assert getattr(changed, name) != getattr(config, name)
    assert (changed.digest() != config.digest()) == (name not in NOT_READ_BY_METHOD_1)


@pytest.mark.parametrize("name, value", [("teacher_input", "student_view"), ("teacher_mode", "online"),
                                         ("teacher_weights", "train"), ("teacher_epochs", 2)])
def test_baseline_digest_ignores_teaching_options(name, value):
    config = RunConfig()
    assert dataclasses.replace(config, **{name: value}).digest() == config.digest()


@pytest.mark.parametrize("name, value", [("teacher_epochs", 2), ("teacher_lr", 1e-3), ("teacher_seed", 1)])
def test_public_teacher_digest_ignores_teacher_training_options(name, value):
    # published checkpoints are not trained here: how one would train them changes nothing
    config = RunConfig(method="kd", teachers=(R50,))
    assert dataclasses.replace(config, **{name: value}).digest() == config.digest()


def test_json_round_trip_keeps_config_and_digest():
    config = RunConfig(**M1, temperature=16.0, data_dir="x")
    again = RunConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and again.digest() == config.digest()


def test_integer_and_float_parameters_are_one_run():
    # papermill's `-p temperature 16` passes an int; the manifest says 16.0: both must find the same run
    assert profile_config("smoke", temperature=16).run_id == profile_config("smoke", temperature=16.0).run_id
    assert isinstance(profile_config("smoke", alpha=1).alpha, float)


def test_loss_options_are_the_options_the_method_declares():
    config = RunConfig(method="kd", teachers=(R50,), alpha=0.75, temperature=8.0)
    assert config.loss_options() == {"alpha": 0.75, "temperature": 8.0}


# ----------------------------------------------------------------------------- profiles and options

@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_profile_gives_a_valid_config_for_every_manifest_method(profile):
    from cakd.definitions.manifest import all_rows

    for row in all_rows():
        assert row.config(profile).profile == profile


def test_paper_profile_learning_rate_follows_the_authors_cosine_per_epoch():
    # CosineAnnealingLR(T_max=100, eta_min=1e-6) from lr 1e-2, stepped per epoch:
    # lr_e = 1e-6 + (1e-2 - 1e-6) (1 + cos(pi e / 100)) / 2 -> e=0: 0.01; e=50: 0.0050005;
    # e=99: 1e-6 + 9.999e-3 (1 - cos(pi / 100)) / 2 = 1e-6 + 9.999e-3 * 4.9344e-4 / 2 = 3.46695e-06
    rates = lr_schedule(profile_config("paper"))
    assert len(rates) == 100
    assert rates[0] == pytest.approx(1e-2) and rates[50] == pytest.approx(0.0050005)
    assert rates[99] == pytest.approx(1e-6 + 9.999e-3 * (1 - math.cos(math.pi / 100)) / 2, rel=1e-6)


def test_paper_profile_recipe_names_the_authors_transforms_and_split():
    text = describe(profile_config("paper", method="kd", teachers=[D], alpha=0.5))
    assert "Resize((256, 256), bicubic) -> RandomCrop(224) -> RandomHorizontalFlip (2178 views per image)" in text
    assert "Resize((36, 36), bilinear) -> CenterCrop(32)" in text        # the DenseNet checkpoint's own pipeline
    assert "StratifiedShuffleSplit(n_splits=1" in text and "random_state=42" in text
    assert "AdamW(lr=0.01, weight_decay=0.0001)" in text and "patience 15" in text


def test_smoke_profile_runs_on_the_cpu_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runs.preflight(profile_config("smoke")) == torch.device("cpu")


def test_profile_config_applies_overrides():
    config = profile_config("smoke", method="kd", teachers=(R50,), alpha=0.75)
    assert (config.method, config.teachers, config.alpha, config.epochs) == ("kd", (R50,), 0.75, 5)


def test_profile_config_drops_none_overrides():
    # None = "the profile's default", as papermill passes unset notebook parameters
    config = profile_config("smoke", temperature=None, epochs=None, data_dir=None)
    assert config == profile_config("smoke")


def test_every_option_documents_itself():
    # the book's options table, the notebooks' parameters cells and the CLI read these
    for option in OPTIONS.values():
        assert option.doc.strip() and option.read_by(), option.name


def test_ambiguity_options_default_to_the_reports_reading():
    # the first value of each ambiguity choice is the literal reading of the report, and the default
    defaults = RunConfig()
    for option in OPTIONS.values():
        if option.origin == "ambiguity" and option.choices:
            assert getattr(defaults, option.name) == option.choices[0], option.name


def test_teacher_training_carries_the_run_teacher_settings():
    config = profile_config("smoke", **M1, teacher_epochs=3, teacher_lr=1e-3, teacher_seed=2)
    training = TeacherTraining.of(config, D)
    assert (training.name, training.epochs, training.lr, training.seed, training.model_scale) == \
        (D, 3, 1e-3, 2, "tiny")
    assert training.run_id.startswith(f"{D}-")
    assert TeacherTraining.of(dataclasses.replace(config, teacher_seed=3), D).run_id != training.run_id
