"""Student and teacher registries, the checkpoints' architectures, their input pipelines, public weights offline
(cakd.models; the authors' teachers). Every name built with pretrained=False; nothing touches the network."""
from __future__ import annotations

import urllib.error

import pytest
import torch
from torch import nn

from cakd.definitions import paths
from cakd.definitions.networks import InputPipeline, teacher_pipeline
from cakd.training import checkpoints
from cakd.training.models import (PRETRAINED_DIR_ENV, STUDENTS, TEACHERS, WEIGHTS_URL, Classifier,
                                  PretrainedUnavailableError, count_parameters, create_student, create_teacher,
                                  load_public_weights, public_weights_path)
from support import D, R18, R34, R50, V


def images(b: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Float images in [0, 1], as every model takes them."""
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(seed))


class Recorder(nn.Module):
    """Stands in for a network: remembers its input, returns 100 zero logits."""

    def forward(self, x):
        self.seen = x
        return torch.zeros(len(x), 100)


def recorded(pipeline: InputPipeline, x: torch.Tensor) -> torch.Tensor:
    """What a network behind `pipeline` receives for images x."""
    recorder = Recorder()
    Classifier(recorder, pipeline)(x)
    return recorder.seen


# ----------------------------------------------------------------------------- registries and shapes

@pytest.mark.parametrize("name", sorted(STUDENTS))
def test_tiny_student_maps_images_to_100_logits(name):
    model = create_student(name, 100, "tiny").eval()
    with torch.no_grad():
        logits = model(images())
    assert logits.shape == (2, 100) and logits.dtype == torch.float32 and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", sorted(TEACHERS))
def test_tiny_teacher_maps_images_to_100_logits(name):
    model = create_teacher(name, 100, "tiny").eval()
    with torch.no_grad():
        logits = model(images())
    assert logits.shape == (2, 100) and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", sorted(STUDENTS))
def test_full_student_has_the_reports_2_4_million_parameters(name):
    # timm mobilenetv2_100 with 100 classes: 2,351,972 (the report's "2.4 million"); the 32x32 variant only
    # changes strides, so it has the same weights
    assert count_parameters(create_student(name, 100, "full")) == 2_351_972


def test_tiny_student_is_much_smaller_than_the_full_one():
    assert count_parameters(create_student("mobilenetv2_100", 100, "tiny")) < 500_000


def test_cifar_mobilenetv2_keeps_4x4_final_features_for_32x32_inputs():
    # stride-1 stem and stride-1 second stage: 32 / 2 (stage 3) / 2 (stage 4) / 2 (stage 6) = 4
    model = create_student("cifar_mobilenetv2", 100, "full").eval()
    with torch.no_grad():
        features = model.net.features(torch.zeros(1, 3, 32, 32))
    assert features.shape == (1, 1280, 4, 4)


def test_timm_student_at_224_ends_in_7x7_features():
    # the authors' student at 224: the ImageNet strides, 224 / 32 = 7
    model = create_student("mobilenetv2_100", 100, "full").eval()
    with torch.no_grad():
        features = model.net.forward_features(torch.zeros(1, 3, 224, 224))
    assert features.shape == (1, 1280, 7, 7)


def test_num_classes_sets_the_logit_width():
    model = create_student("mobilenetv2_100", 10, "tiny").eval()
    with torch.no_grad():
        assert model(images(1)).shape == (1, 10)


# ----------------------------------------------------------------------------- the checkpoints' architectures

def _shapes(net: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def _recipe_resnet(arch: str, features: int) -> nn.Module:
    """The published checkpoints: timm resnet, conv1 = Conv2d(3, 64, 3, 1, 1, bias=False), maxpool Identity, fc Linear(., 100)."""
    import timm

    net = timm.create_model(arch, pretrained=False)
    net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    net.maxpool = nn.Identity()
    net.fc = nn.Linear(features, 100)
    return net


def _recipe_densenet() -> nn.Module:
    from timm.models.densenet import DenseNet

    net = DenseNet(growth_rate=12, block_config=(6, 12, 24, 16), num_classes=100)
    net.features.conv0 = nn.Conv2d(3, 24, 3, padding=1, bias=False)
    net.features.norm0 = nn.Identity()
    net.features.pool0 = nn.Identity()
    net.classifier = nn.Linear(net.classifier.in_features, 100)
    return net


def _recipe_vit() -> nn.Module:
    import timm

    net = timm.create_model("vit_base_patch16_224.orig_in21k_ft_in1k", pretrained=False)
    net.head = nn.Linear(768, 100)
    return net


RECIPE = [(R18, lambda: _recipe_resnet("resnet18", 512)), (R34, lambda: _recipe_resnet("resnet34", 512)),
          (R50, lambda: _recipe_resnet("resnet50", 2048)), (D, _recipe_densenet),
          (V, _recipe_vit)]   # ViT-B/16 twice: ~700 MB, ~5 s


@pytest.mark.parametrize("name, build", RECIPE)
def test_teacher_state_dict_matches_the_published_checkpoints_architecture(name, build):
    # the checkpoints load with strict=True only if every key and shape agrees
    assert _shapes(create_teacher(name, 100).net) == _shapes(build())


@pytest.mark.parametrize("name", sorted(TEACHERS))
def test_public_weights_round_trip_through_the_pretrained_dir(name, tmp_path, monkeypatch):
    # a tiny stand-in of the family: the load path is the same as for the full checkpoint
    torch.manual_seed(1)
    saved = create_teacher(name, 100, "tiny").net.state_dict()
    torch.save(saved, tmp_path / f"{name}.pth")
    monkeypatch.setenv(PRETRAINED_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("downloaded"))
    torch.manual_seed(2)
    loaded = load_public_weights(create_teacher(name, 100, "tiny"), name).net.state_dict()
    assert checkpoints.weights_digest(loaded) == checkpoints.weights_digest(saved)


def test_pretrained_dir_accepts_the_hubs_bin_name(tmp_path, monkeypatch):
    (tmp_path / f"{R18}.bin").write_bytes(b"")
    monkeypatch.setenv(PRETRAINED_DIR_ENV, str(tmp_path))
    assert public_weights_path(R18) == tmp_path / f"{R18}.bin"


def test_pretrained_dir_without_the_teacher_file_names_the_files_it_wants(tmp_path, monkeypatch):
    monkeypatch.setenv(PRETRAINED_DIR_ENV, str(tmp_path))
    with pytest.raises(PretrainedUnavailableError, match=rf"{R50}\.pth or {R50}\.bin"):
        public_weights_path(R50)


@pytest.fixture
def offline_hub(monkeypatch):
    """torch.hub's download raises URLError, as offline; records the URLs asked for."""
    tried = []

    def offline(url, dst, *args, **kwargs):
        tried.append(url)
        raise urllib.error.URLError("offline (test)")
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tried


def test_public_weights_offline_are_one_error_naming_both_fixes(offline_hub):
    with pytest.raises(PretrainedUnavailableError) as error:
        public_weights_path(R50)
    message = str(error.value)
    url = WEIGHTS_URL.format(name=R50)
    assert offline_hub == [url]
    assert "connect to the internet" in message and str(paths.pretrained_dir() / f"{R50}.pth") in message  # fix 1
    assert url in message and PRETRAINED_DIR_ENV in message                                               # fix 2
    assert error.value.__cause__ is not None and "URLError" in message


def test_failed_download_leaves_no_partial_file(offline_hub):
    with pytest.raises(PretrainedUnavailableError):
        public_weights_path(R18)
    folder = paths.pretrained_dir()
    assert not folder.exists() or list(folder.iterdir()) == []


def test_downloaded_weights_are_reused_not_fetched_again(monkeypatch):
    fetched = []

    def download(url, dst, *args, **kwargs):
        fetched.append(url)
        torch.save({"w": torch.ones(1)}, dst)
    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    first, second = public_weights_path(R18), public_weights_path(R18)
    assert first == second == paths.pretrained_dir() / f"{R18}.pth" and len(fetched) == 1


# ----------------------------------------------------------------------------- input pipelines

def _torchvision(pipeline: InputPipeline):
    from torchvision.transforms import v2 as T

    mode = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC}[pipeline.interpolation]
    steps = [T.Resize((pipeline.resize, pipeline.resize), interpolation=mode, antialias=False)] if pipeline.resize \
        else []
    steps += [T.CenterCrop(pipeline.crop)] if pipeline.crop else []
    return T.Compose(steps + [T.Normalize(pipeline.mean, pipeline.std)])


@pytest.mark.parametrize("name", [R18, R34, R50, D])
def test_teacher_input_pipeline_equals_torchvision_transforms(name):
    # ResNets: Normalize only; DenseNet: Resize((36, 36), bilinear) -> CenterCrop(32) -> Normalize
    pipeline = teacher_pipeline(name, "full")
    x = images(1, seed=3)
    torch.testing.assert_close(recorded(pipeline, x), _torchvision(pipeline)(x))


def test_vit_input_pipeline_is_bicubic_248_centre_224_at_half_normalization():
    # PIL's bicubic (a = -0.5) is not torch's (a = -0.75), so no pixel comparison; a constant image stays
    # constant through resize and crop: 0.3 -> (0.3 - 0.5) / 0.5 = -0.4 everywhere
    seen = recorded(teacher_pipeline(V, "full"), torch.full((2, 3, 32, 32), 0.3))
    assert seen.shape == (2, 3, 224, 224)
    torch.testing.assert_close(seen, torch.full((2, 3, 224, 224), -0.4))


def test_bicubic_resize_is_clamped_to_the_image_range_as_pil_stores_uint8():
    # a black/white step overshoots with bicubic; after the clamp every value lies in [0, 1]
    step = torch.zeros(1, 3, 32, 32)
    step[..., 16:] = 1.0
    seen = recorded(InputPipeline(248, 224, "bicubic", (0., 0., 0.), (1., 1., 1.)), step)
    assert seen.min() == 0.0 and seen.max() == 1.0


def test_classifier_at_32_does_not_resize_and_normalizes_per_channel():
    # channel c of a zero image -> (0 - mean_c) / std_c
    seen = recorded(InputPipeline(None, None, "bilinear", (0.1, 0.2, 0.4), (0.5, 0.5, 0.5)), torch.zeros(1, 3, 32, 32))
    assert seen.shape == (1, 3, 32, 32)
    torch.testing.assert_close(seen[0, :, 0, 0], torch.tensor([-0.2, -0.4, -0.8]))


def test_centre_crop_equals_torchvision_for_an_odd_margin():
    # 37 -> 32: margin 5, torchvision's corner is round(5 / 2) = 2 (Python rounds half to even)
    from torchvision.transforms import v2 as T

    x = images(1, size=37, seed=4)
    torch.testing.assert_close(recorded(InputPipeline(None, 32, "bilinear", (0., 0., 0.), (1., 1., 1.)), x),
                               T.CenterCrop(32)(x))


def _authors_eval_transform(name: str):
    """The authors' notebook, cell 8 (`_get_transform`, is_train=False), written out for each teacher family."""
    from PIL import Image
    from torchvision import transforms

    cifar = transforms.Normalize(mean=[0.5071, 0.4865, 0.4409], std=[0.2673, 0.2564, 0.2762])
    return {"resnet": transforms.Compose([transforms.ToTensor(), cifar]),
            "densenet": transforms.Compose([transforms.Resize((36, 36), interpolation=Image.BILINEAR),
                                            transforms.CenterCrop(32), transforms.ToTensor(),
                                            transforms.Normalize(mean=[0.5071, 0.4867, 0.4408],
                                                                 std=[0.2675, 0.2565, 0.2761])]),
            "vit": transforms.Compose([transforms.Resize((248, 248), interpolation=Image.BICUBIC),
                                       transforms.CenterCrop(224), transforms.ToTensor(),
                                       transforms.Normalize(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])])}[name]


@pytest.mark.parametrize("name,family", [(R50, "resnet"), (D, "densenet"), (V, "vit")])
def test_a_clean_teacher_input_is_the_authors_pil_transform_of_the_8_bit_image(name, family):
    from PIL import Image

    recorder = Recorder()
    pixels = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    Classifier(recorder, teacher_pipeline(name, "full")).forward_clean(pixels)
    expected = torch.stack([_authors_eval_transform(family)(Image.fromarray(p.permute(1, 2, 0).numpy()))
                            for p in pixels])
    assert torch.equal(recorder.seen, expected)


# ----------------------------------------------------------------------------- unknown names

def test_unknown_student_lists_the_known_students():
    with pytest.raises(ValueError) as error:
        create_student("resnet18", 100)
    assert all(name in str(error.value) for name in STUDENTS)


def test_unknown_teacher_lists_the_known_teachers():
    with pytest.raises(ValueError) as error:
        create_teacher("resnet50", 100)      # the old short name: the checkpoints are named *_cifar100
    assert all(name in str(error.value) for name in TEACHERS)


def test_unknown_teacher_has_no_weights_path():
    with pytest.raises(ValueError, match="vgg16"):
        public_weights_path("vgg16")


def test_unknown_scale_is_refused_for_students():
    # 'small' is no scale: building the full 2.35M-parameter model instead would be a silent fallback
    with pytest.raises(ValueError, match="scale"):
        create_student("mobilenetv2_100", 100, "small")


def test_unknown_scale_is_refused_for_teachers():
    with pytest.raises(ValueError, match="scale"):
        create_teacher(R18, 100, "small")
