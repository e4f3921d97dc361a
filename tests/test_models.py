"""Student and teacher registries (cakd.models; DESIGN section 4). Built with pretrained=False, tiny scale, offline."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from cakd.config import CHOICES, STUDENTS, TEACHERS
from cakd.models import (PRETRAINED_DIR_ENV, STUDENT_BUILDERS, ImageClassifier, PretrainedUnavailableError,
                         count_parameters, create_student, create_teacher)


def uint8_batch(b: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, 32, 32), generator=g, dtype=torch.uint8)


class Recorder(nn.Module):
    """Stands in for a network: remembers its input, returns 100 zero logits."""

    def forward(self, x):
        self.seen = x
        return torch.zeros(len(x), 100)


# ----------------------------------------------------------------------------- registries and shapes

def test_student_registry_matches_config_students():
    assert set(STUDENT_BUILDERS) == set(STUDENTS)


@pytest.mark.parametrize("name", STUDENTS)
def test_tiny_student_maps_uint8_images_to_100_logits(name):
    model = create_student(name, 100, "tiny").eval()
    with torch.no_grad():
        logits = model(uint8_batch())
    assert logits.shape == (2, 100) and logits.dtype == torch.float32 and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", sorted(TEACHERS))
def test_tiny_teacher_maps_uint8_images_to_100_logits(name):
    model = create_teacher(name, 100, "tiny", pretrained=False).eval()
    with torch.no_grad():
        logits = model(uint8_batch())
    assert logits.shape == (2, 100) and torch.isfinite(logits).all()
    assert model.input_size == TEACHERS[name].tiny_input_size == 32


def test_tiny_student_is_much_smaller_than_the_full_one():
    assert count_parameters(create_student("mobilenetv2", 100, "tiny")) < 500_000


def test_full_cifar_mobilenetv2_has_the_documented_parameter_count():
    # the exact count the code gives (and CHOICES states); the report says ~2.37M: |2.351972 - 2.37| / 2.37 = 0.76%
    n = count_parameters(create_student("mobilenetv2", 100, "full"))
    assert n == 2_351_972
    assert abs(n - 2.37e6) / 2.37e6 < 0.01
    assert f"{n:,}" in CHOICES["student"]


def test_cifar_mobilenetv2_keeps_4x4_final_features_for_32x32_inputs():
    # stride-1 stem and stride-1 second stage: 32 / 2 (stage 3) / 2 (stage 4) / 2 (stage 6) = 4
    model = create_student("mobilenetv2", 100, "full").eval()
    with torch.no_grad():
        features = model.net.features(torch.zeros(1, 3, 32, 32))
    assert features.shape == (1, 1280, 4, 4)


def test_num_classes_sets_the_logit_width():
    model = create_student("mobilenetv2", 10, "tiny").eval()
    with torch.no_grad():
        assert model(uint8_batch(1)).shape == (1, 10)


# ----------------------------------------------------------------------------- input pipeline

def test_full_teachers_see_their_pretraining_input_size():
    assert TEACHERS["vit_base_patch16_224"].input_size == 224
    assert all(spec.input_size == 224 for spec in TEACHERS.values())


def test_classifier_scales_resizes_and_normalizes():
    # a constant image of value 51 -> 51 / 255 = 0.2; resized (bilinear) to 224 it stays 0.2;
    # normalized with mean 0.5, std 0.25 -> (0.2 - 0.5) / 0.25 = -1.2 everywhere
    recorder = Recorder()
    model = ImageClassifier(recorder, 224, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    model(torch.full((2, 3, 32, 32), 51, dtype=torch.uint8))
    assert recorder.seen.shape == (2, 3, 224, 224)
    torch.testing.assert_close(recorder.seen, torch.full((2, 3, 224, 224), -1.2))


def test_classifier_at_32_does_not_resize_and_normalizes_per_channel():
    # channel c of a zero image -> (0 - mean_c) / std_c
    recorder = Recorder()
    ImageClassifier(recorder, 32, (0.1, 0.2, 0.4), (0.5, 0.5, 0.5))(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    assert recorder.seen.shape == (1, 3, 32, 32)
    torch.testing.assert_close(recorder.seen[0, :, 0, 0], torch.tensor([-0.2, -0.4, -0.8]))


# ----------------------------------------------------------------------------- pretrained weights, offline

@pytest.fixture
def offline_timm(monkeypatch):
    """timm.create_model that fails for pretrained=True (as offline) and records its calls; nothing is built."""
    import timm

    calls = []

    def create_model(name, pretrained=False, **kwargs):
        calls.append(dict(name=name, pretrained=pretrained, **kwargs))
        if pretrained and "pretrained_cfg_overlay" not in kwargs:
            raise OSError("We couldn't connect to 'https://huggingface.co' (test: offline)")
        return nn.Linear(1, 1)
    monkeypatch.setattr(timm, "create_model", create_model)
    return calls


def test_pretrained_full_teacher_offline_says_how_to_fix_it(offline_timm):
    with pytest.raises(PretrainedUnavailableError) as error:
        create_teacher("resnet50", 100, "full", pretrained=True)
    message = str(error.value)
    assert PRETRAINED_DIR_ENV in message and "teacher_pretrained=False" in message and "resnet50" in message
    assert offline_timm[-1]["pretrained"] is True


def test_pretrained_teacher_with_an_empty_hub_cache_fails_offline(tmp_path, monkeypatch):
    # the real timm / huggingface_hub path, offline and with empty caches: no monkeypatched create_model
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torch-hub"))
    with pytest.raises(PretrainedUnavailableError, match=PRETRAINED_DIR_ENV):
        create_teacher("resnet18", 100, "full", pretrained=True)


def test_pretrained_weights_from_a_local_folder_are_passed_to_timm(offline_timm, tmp_path, monkeypatch):
    (tmp_path / "resnet50.pth").write_bytes(b"")
    monkeypatch.setenv(PRETRAINED_DIR_ENV, str(tmp_path))
    create_teacher("resnet50", 100, "full", pretrained=True)
    assert offline_timm[-1]["pretrained_cfg_overlay"] == {"file": str(tmp_path / "resnet50.pth")}


def test_pretrained_dir_without_the_teacher_file_is_an_error(offline_timm, tmp_path, monkeypatch):
    monkeypatch.setenv(PRETRAINED_DIR_ENV, str(tmp_path))
    with pytest.raises(PretrainedUnavailableError, match="resnet50.safetensors"):
        create_teacher("resnet50", 100, "full", pretrained=True)


def test_full_teacher_without_pretrained_never_asks_for_weights(offline_timm):
    model = create_teacher("vit_base_patch16_224", 100, "full", pretrained=False)
    assert offline_timm[-1]["pretrained"] is False and model.input_size == 224


def test_tiny_teacher_refuses_pretrained_weights():
    with pytest.raises(ValueError, match="teacher_pretrained=False"):
        create_teacher("resnet18", 100, "tiny", pretrained=True)


# ----------------------------------------------------------------------------- unknown names

def test_unknown_student_lists_the_known_students():
    with pytest.raises(ValueError) as error:
        create_student("resnet18", 100)
    assert all(name in str(error.value) for name in STUDENTS)


def test_unknown_teacher_lists_the_known_teachers():
    with pytest.raises(ValueError) as error:
        create_teacher("vgg16", 100)
    assert all(name in str(error.value) for name in TEACHERS)



def test_unknown_scale_is_refused_for_students():
    # 'small' is no scale: building the full 2.35M-parameter model instead would be a silent fallback
    with pytest.raises(ValueError, match="scale"):
        create_student("mobilenetv2", 100, "small")


def test_unknown_scale_is_refused_for_teachers(offline_timm):
    with pytest.raises(ValueError, match="scale"):
        create_teacher("resnet18", 100, "small")
