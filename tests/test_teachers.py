"""Teachers as a run needs them (cakd.teachers): published weights frozen, or tiny ones trained here once with
a content hash, reused, tamper-checked."""
import urllib.error

import pytest
import torch

from cakd.training import checkpoints, teachers

from cakd.definitions import files
from cakd.definitions.config import TeacherTraining
from cakd.definitions.profiles import profile_config
from cakd.training.data import Split, Splits
from cakd.training.models import PRETRAINED_DIR_ENV, PretrainedUnavailableError, create_teacher
from cakd.training.runs import load_or_train
from cakd.training.teachers import load_or_train_teacher, load_teacher, teacher_folder
from support import D, R18, smoke_config


def _training(name=R18, **overrides):
    return TeacherTraining.of(smoke_config(method="kd", teachers=[name], **overrides), name)


@pytest.mark.slow
def test_trained_teacher_is_saved_with_its_hash_and_accuracies(smoke_teachers):
    training = _training()
    teacher = load_or_train_teacher(training)
    folder = teacher_folder(training)
    state = checkpoints.load(folder / "model.pt")
    info = files.read_json(folder / "teacher.json")
    assert info["weights"] == checkpoints.weights_digest(state) == teacher.weights_digest
    assert 0 <= info["test_acc"] <= 100 and 0 <= info["best_val_acc"] <= 100
    assert len(info["history"]) == training.epochs == 1
    assert not (folder / "resume.pt").exists()                   # finished: the resume state is spent


def test_trained_teacher_is_loaded_not_retrained(smoke_teachers, monkeypatch):
    training = _training()
    first = load_or_train_teacher(training)
    monkeypatch.setattr(teachers, "fit", lambda *a, **k: pytest.fail("a finished teacher was retrained"))
    again = load_or_train_teacher(training)
    assert checkpoints.weights_digest(again.model.state_dict()) == checkpoints.weights_digest(first.model.state_dict())


def test_a_float64_teacher_loads_as_it_was_trained_not_rounded_to_float32():
    # a loaded teacher once went through float32 (load_state_dict into a float32 network, then .to(float64)):
    # its logits, and every golden run reading them, moved by ~1e-8
    training = _training(D, precision="fp64", synthetic_size=120, synthetic_classes=10)
    trained = load_or_train_teacher(training)
    loaded = load_or_train_teacher(training)
    assert {t.dtype for t in loaded.model.state_dict().values() if t.is_floating_point()} == {torch.float64}
    images = torch.rand(4, 3, 32, 32, dtype=torch.float64)
    assert torch.equal(loaded.model.eval()(images), trained.model.eval()(images))


@pytest.mark.slow
def test_tampered_teacher_checkpoint_is_detected_and_retrained(smoke_teachers):
    training = _training()
    first = load_or_train_teacher(training)
    path = teacher_folder(training) / "model.pt"
    state = checkpoints.load(path)
    name = next(iter(state))
    state[name] = state[name] + 1
    checkpoints.save(state, path)
    with pytest.warns(UserWarning, match="does not match its recorded hash"):
        again = load_or_train_teacher(training)
    assert again.weights_digest == first.weights_digest         # same seed: the same teacher again


def test_a_teacher_trained_here_is_shared_by_every_student_run(smoke_teachers, monkeypatch):
    # the student's own options (method, lr, temperature) are not the teacher's: one teacher for all
    monkeypatch.setattr(teachers, "fit", lambda *a, **k: pytest.fail("the session teacher was not reused"))
    config = smoke_config(method="ca_wkd", teachers=[D, R18], lr=1e-3, temperature=8.0, seed=3)
    assert TeacherTraining.of(config, D) == _training(D)
    load_teacher(config, D)


def test_public_teacher_offline_fails_before_any_training_with_the_fixes(monkeypatch):
    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("offline (test)")
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    monkeypatch.setattr(teachers, "fit", lambda *a, **k: pytest.fail("a public teacher must never be trained"))
    config = smoke_config(method="kd", teachers=[R18], model_scale="full", teacher_weights="public")
    with pytest.raises(PretrainedUnavailableError, match=f"connect to the internet.*{PRETRAINED_DIR_ENV}"):
        load_teacher(config, R18)


def test_public_teacher_is_the_saved_checkpoint_frozen(tmp_path, monkeypatch):
    torch.manual_seed(3)
    saved = create_teacher(R18, 100).net.state_dict()
    torch.save(saved, tmp_path / f"{R18}.pth")
    monkeypatch.setenv(PRETRAINED_DIR_ENV, str(tmp_path))
    config = smoke_config(method="kd", teachers=[R18], model_scale="full", teacher_weights="public")
    teacher = load_teacher(config, R18)
    assert teacher.weights_digest == checkpoints.weights_digest(saved) and teacher.info == {"weights": "public"}


def test_public_teachers_refuse_a_dataset_with_other_classes():
    # the checkpoints predict CIFAR-100's 100 classes; a 2-class image folder cannot use them
    one = Split(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.tensor([0, 1]))
    config = smoke_config(method="kd", teachers=[R18], model_scale="full", teacher_weights="public")
    with pytest.raises(ValueError, match="teacher_weights='train'"):
        load_teacher(config, R18, Splits(one, one, one, 2, "two-classes"))


@pytest.mark.slow
def test_smoke_students_clearly_beat_chance():
    """The smoke profile as shipped (2,400 generated images, 5 epochs, tiny student) learns: chance is 1%."""
    baseline = load_or_train(profile_config("smoke", method="baseline"))
    # Measured on an AVX2 EPYC (float32, so the run differs with the CPU code path and thread count): 71.75% on
    # torch's scalar kernels at 1 thread, 39.0% on AVX2 at 1 thread, 11.75% on AVX2 at 2 threads, each climbing
    # every epoch. 5% is 8 standard deviations above chance on the 400 test images.
    assert baseline.accuracy > 5
    validation = [row["val_acc"] for row in baseline.history]   # the test split is read at new bests and the last
    assert validation[-1] > validation[0], validation
    assert baseline.history[-1]["test_acc"] > baseline.history[0]["test_acc"], baseline.history
    assert baseline.metrics["student_params"] == 323_460
