"""RunConfig validation, its stable hash, and the profiles (cakd.config; DESIGN section 7)."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys

import pytest

from cakd.config import (CHOICE_FIELDS, CHOICES, PROFILE_DEFAULTS, TEACHERS, RunConfig, profile_config)

NAN, INF = float("nan"), float("inf")
M1 = dict(method="ca_wkd", teachers=("densenet121", "resnet50"))

# (id, RunConfig keyword arguments, the field the message must name)
BAD_CONFIGS = [
    ("unknown-method", dict(method="dino"), "method"),
    ("unknown-teacher", dict(method="kd", teachers=("vgg16",)), "teachers"),
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
    ("epochs-zero", dict(epochs=0), "epochs"),
    ("epochs-negative", dict(epochs=-1), "epochs"),
    ("epochs-float", dict(epochs=1.5), "epochs"),
    ("epochs-bool", dict(epochs=True), "epochs"),
    ("batch-size-zero", dict(batch_size=0), "batch_size"),
    ("teacher-epochs-zero", dict(teacher_epochs=0), "teacher_epochs"),
    ("teacher-batch-size-zero", dict(teacher_batch_size=0), "teacher_batch_size"),
    ("eval-batch-size-zero", dict(eval_batch_size=0), "eval_batch_size"),
    ("lr-zero", dict(lr=0.0), "lr"),
    ("lr-negative", dict(lr=-1e-3), "lr"),
    ("teacher-lr-zero", dict(teacher_lr=0.0), "teacher_lr"),
    ("weight-decay-negative", dict(weight_decay=-0.01), "weight_decay"),
    ("weight-decay-nan", dict(weight_decay=NAN), "weight_decay"),
    ("ca-wkd-one-teacher", dict(method="ca_wkd", teachers=("resnet50",)), "teachers"),
    ("alpha-guided-one-teacher", dict(method="alpha_guided", teachers=("resnet50",)), "teachers"),
    ("adaptive-alpha-no-teacher", dict(method="adaptive_alpha"), "teachers"),
    ("kd-no-teacher", dict(method="kd"), "teachers"),
    ("kd-two-teachers", dict(method="kd", teachers=("resnet50", "resnet18")), "teachers"),
    ("baseline-with-teacher", dict(method="baseline", teachers=("resnet50",)), "teachers"),
    ("duplicate-teachers", dict(method="ca_wkd", teachers=("resnet50", "resnet50")), "teachers"),
    ("imagefolder-without-data-dir", dict(dataset="imagefolder"), "data_dir"),
    ("data-dir-not-str", dict(data_dir=3), "data_dir"),
    ("weighting-token", dict(weighting="token"), "weighting"),
    ("aggregation-mean", dict(aggregation="mean"), "aggregation"),
    ("confidence-temperature-two", dict(confidence_temperature="two"), "confidence_temperature"),
    ("m2-confidence-entropy", dict(m2_confidence="entropy"), "m2_confidence"),
    ("m3-alpha-teacher", dict(m3_alpha="teacher"), "m3_alpha"),
    ("schedule-step", dict(schedule="step"), "schedule"),
    ("augment-mixup", dict(augment="mixup"), "augment"),
    ("teacher-mode-fixed", dict(teacher_mode="fixed"), "teacher_mode"),
    ("model-scale-small", dict(model_scale="small"), "model_scale"),
    ("device-tpu", dict(device="tpu"), "device"),
    ("use-ce-yes", dict(use_ce="yes"), "use_ce"),
    ("divide-by-k-int", dict(divide_by_k=1), "divide_by_k"),
    ("teacher-pretrained-none", dict(teacher_pretrained=None), "teacher_pretrained"),
    ("seed-negative", dict(seed=-1), "seed"),
    ("teacher-seed-float", dict(teacher_seed=0.5), "teacher_seed"),
    ("synthetic-size-10", dict(synthetic_size=10), "synthetic_size"),
]


@pytest.mark.parametrize("kwargs, field", [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_raises_value_error_naming_the_field(kwargs, field):
    with pytest.raises(ValueError) as error:
        RunConfig(**kwargs)
    assert re.search(rf"\b{field}\b", str(error.value)), str(error.value)


def test_from_dict_refuses_an_unknown_field_and_names_it():
    with pytest.raises(ValueError, match="tempreature"):
        RunConfig.from_dict({"tempreature": 4.0})


def test_profile_config_refuses_an_unknown_field_and_names_it():
    with pytest.raises(ValueError, match="tempreature"):
        profile_config("smoke", tempreature=4.0)


def test_profile_config_refuses_an_unknown_profile_and_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"profile.*'paper'.*'smoke'"):
        profile_config("fast")


def test_valid_multi_teacher_config_is_accepted_and_teachers_become_a_tuple():
    config = RunConfig(method="ca_wkd", teachers=["densenet121", "resnet50"])
    assert config.teachers == ("densenet121", "resnet50")


def test_boundary_values_are_accepted():
    # alpha in [0, 1] inclusive, weight decay 0, seed 0, the smallest synthetic size 60 (= 45 + 5 + 10 parts)
    for kwargs in (dict(alpha=0.0), dict(alpha=1.0), dict(weight_decay=0.0), dict(seed=0),
                   dict(synthetic_size=60), dict(epochs=1), dict(temperature=1e-3)):
        RunConfig(**kwargs)


# ----------------------------------------------------------------------------- hash

def test_digest_is_stable_across_processes():
    config = RunConfig(**M1, temperature=8.0)
    code = ("from cakd.config import RunConfig; "
            "print(RunConfig(method='ca_wkd', teachers=('densenet121', 'resnet50'), temperature=8.0).digest())")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}   # a different str hash seed: the digest must not use hash()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == config.digest()


def test_digest_is_a_sha256_hex_string_and_run_id_uses_it():
    config = RunConfig()
    assert re.fullmatch(r"[0-9a-f]{64}", config.digest())
    assert config.run_id == f"baseline-{config.digest()[:10]}"


def test_equal_configs_have_equal_digests():
    assert RunConfig(**M1).digest() == RunConfig(**M1).digest()


@pytest.mark.parametrize("field, value", [("device", "cpu"), ("compile", True), ("eval_batch_size", 7)])
def test_digest_ignores_speed_only_fields(field, value):
    config = RunConfig(**M1)
    assert dataclasses.replace(config, **{field: value}).digest() == config.digest()


# A valid different value for every field that can change a result (base config: M1 below).
CHANGED = {
    "profile": "paper", "method": "alpha_guided", "teachers": ("densenet121", "resnet18"),
    "dataset": "cifar100", "data_dir": "/somewhere", "synthetic_size": 600, "augment": "none",
    "student": "mobilenet_v2", "model_scale": "tiny", "epochs": 3, "batch_size": 64, "lr": 3e-3,
    "weight_decay": 0.0, "schedule": "constant", "temperature": 8.0, "alpha": 0.75, "gamma": 3.0,
    "theta": 0.5, "use_ce": False, "weighting": "batch", "aggregation": "mean_logits", "divide_by_k": True,
    "confidence_temperature": "tau", "m2_confidence": "true_class", "m3_alpha": "sample",
    "teacher_mode": "online", "teacher_epochs": 2, "teacher_lr": 1e-3, "teacher_batch_size": 64,
    "teacher_pretrained": False, "teacher_seed": 1, "seed": 1,
}
SPEED_ONLY = {"device", "compile", "eval_batch_size"}


def test_every_field_is_either_speed_only_or_has_a_changed_value_here():
    # a new RunConfig field must be added to CHANGED (it changes results) or marked speed-only (_nohash)
    assert set(RunConfig.field_names()) == set(CHANGED) | SPEED_ONLY
    hashed = {f.name for f in dataclasses.fields(RunConfig) if f.metadata.get("hash", True)}
    assert hashed == set(CHANGED)


@pytest.mark.parametrize("field", sorted(CHANGED))
def test_digest_changes_with_every_result_field(field):
    config = RunConfig(**M1)
    changed = dataclasses.replace(config, **{field: CHANGED[field]})
    assert getattr(changed, field) != getattr(config, field)
    assert changed.digest() != config.digest()


def test_json_round_trip_keeps_config_and_digest():
    config = RunConfig(**M1, temperature=16.0, data_dir="x")
    again = RunConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and again.digest() == config.digest()


# ----------------------------------------------------------------------------- profiles and choices

def test_paper_profile_is_the_report_setting():
    # report: CIFAR-100, AdamW lr 1e-2, 100 epochs; batch 128 is our documented choice; real pretrained teachers
    paper = profile_config("paper")
    assert (paper.dataset, paper.epochs, paper.lr, paper.batch_size) == ("cifar100", 100, 1e-2, 128)
    assert paper.model_scale == "full" and paper.teacher_pretrained is True and paper.student == "mobilenetv2"
    assert "AdamW" in CHOICES["weight_decay"]


def test_smoke_profile_runs_offline_on_the_cpu():
    smoke = profile_config("smoke")
    assert (smoke.dataset, smoke.model_scale, smoke.teacher_pretrained, smoke.device) == \
        ("synthetic", "tiny", False, "cpu")


def test_profile_defaults_only_name_real_fields():
    for values in PROFILE_DEFAULTS.values():
        assert set(values) <= set(RunConfig.field_names())


def test_profile_config_applies_overrides():
    config = profile_config("smoke", method="kd", teachers=("resnet50",), alpha=0.75)
    assert (config.method, config.teachers, config.alpha, config.epochs) == ("kd", ("resnet50",), 0.75, 5)


def test_profile_config_drops_none_overrides():
    # None = "the profile's default", as papermill passes unset notebook parameters
    config = profile_config("smoke", temperature=None, epochs=None, data_dir=None)
    assert config == profile_config("smoke")
    assert config.epochs == 5 and config.temperature == 4.0


@pytest.mark.parametrize("key", ["split", "batch_size", "schedule", "weight_decay", "augmentation", "temperature",
                                 "teacher_input", "teacher_finetune", "protocol", "student"])
def test_every_open_choice_is_explained(key):
    assert isinstance(CHOICES.get(key), str) and CHOICES[key].strip()


def test_every_choices_entry_is_non_empty():
    assert CHOICES and all(isinstance(v, str) and v.strip() for v in CHOICES.values())


def test_choice_field_defaults_are_the_first_listed_value():
    # the first value of each ambiguity option is the literal reading of the report, and the default
    defaults = RunConfig()
    for name, allowed in CHOICE_FIELDS.items():
        assert getattr(defaults, name) == allowed[0], name


def test_student_choice_states_the_exact_parameter_count():
    assert "2,351,972" in CHOICES["student"]


def test_teacher_config_carries_the_run_teacher_settings():
    config = profile_config("smoke", **M1)
    teacher = config.teacher_config("resnet50")
    assert (teacher.name, teacher.epochs, teacher.lr, teacher.pretrained, teacher.model_scale) == \
        ("resnet50", config.teacher_epochs, config.teacher_lr, False, "tiny")
    assert teacher.input_size == TEACHERS["resnet50"].tiny_input_size == 32
    assert teacher.run_id.startswith("resnet50-")


def test_integer_and_float_parameters_are_one_run():
    # papermill's `-p temperature 16` passes an int; the manifest says 16.0: both must find the same run
    assert profile_config("smoke", temperature=16).run_id == profile_config("smoke", temperature=16.0).run_id
    assert isinstance(profile_config("smoke", alpha=1).alpha, float)
