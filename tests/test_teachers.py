"""Teacher fine-tuning: checkpoint with a content hash, reuse, tamper detection, offline errors."""
import pytest
import torch

from cakd import files, paths, teachers
from cakd.config import profile_config
from cakd.data import load_splits
from cakd.models import PretrainedUnavailableError
from cakd.runs import load_or_train

SMALL = dict(synthetic_size=120, batch_size=16, teacher_epochs=1, teacher_batch_size=16)


def _teacher_config(name="resnet18", **overrides):
    return profile_config("smoke", **{**SMALL, **overrides}).teacher_config(name)


def test_finetune_saves_weights_with_their_hash_and_accuracies():
    tc = _teacher_config()
    teacher = teachers.load_or_finetune(tc)
    folder = teachers.teacher_folder(tc)
    state = files.torch_load(folder / "model.pt")
    info = files.read_json(folder / "teacher.json")
    assert info["weights"] == files.state_digest(state)
    assert 0 <= info["test_acc"] <= 100 and 0 <= info["best_val_acc"] <= 100
    assert len(info["history"]) == tc.epochs
    assert (paths.results_home() / "smoke" / "teachers" / f"{tc.run_id}.json").is_file()
    assert teacher.info["weights"] == info["weights"]


def test_finetuned_teacher_is_loaded_not_retrained(monkeypatch):
    tc = _teacher_config()
    first = teachers.load_or_finetune(tc)
    monkeypatch.setattr(teachers, "fit", lambda *a, **k: pytest.fail("a finished teacher was retrained"))
    again = teachers.load_or_finetune(tc)
    for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()):
        assert torch.equal(a, b)


def test_tampered_teacher_checkpoint_is_detected_and_retrained():
    tc = _teacher_config()
    first = teachers.load_or_finetune(tc)
    path = teachers.teacher_folder(tc) / "model.pt"
    state = files.torch_load(path)
    name = next(iter(state))
    state[name] = state[name] + 1
    files.torch_save(state, path)
    with pytest.warns(UserWarning, match="does not match its recorded hash"):
        again = teachers.load_or_finetune(tc)
    assert again.info["weights"] == first.info["weights"]          # same seed: the same teacher again


def test_pretrained_full_teacher_offline_fails_before_training_with_the_fixes(monkeypatch):
    import timm

    def offline(*args, **kwargs):
        if kwargs.get("pretrained"):
            raise OSError("We couldn't connect to 'https://huggingface.co'")
        return real(*args, **kwargs)

    real = timm.create_model
    monkeypatch.setattr(timm, "create_model", offline)
    tc = profile_config("smoke", **SMALL, model_scale="full", teacher_pretrained=True).teacher_config("resnet18")
    with pytest.raises(PretrainedUnavailableError, match="CAKD_PRETRAINED_DIR.*teacher_pretrained=False"):
        teachers.load_or_finetune(tc, load_splits(tc))
    assert not (teachers.teacher_folder(tc) / "model.pt").exists()


def test_smoke_students_clearly_beat_chance():
    """The smoke profile as shipped (synthetic data, tiny student) learns: chance is 1%."""
    baseline = load_or_train(profile_config("smoke", method="baseline"))
    assert baseline.accuracy > 30
    assert baseline.metrics["student_params"] == 286_468
