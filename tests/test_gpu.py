"""On a CUDA GPU only (`pytest -m gpu`): every Table 1 row of the paper profile trains, with its full-size models,
through the real code paths (the PIL teacher inputs, the logit caches, fp16 with a gradient scaler), on generated
CIFAR-shaped data and randomly initialised teachers (a GPU machine may have no internet for the checkpoints)."""
import math

import pytest
import torch

from cakd.training import teachers
from cakd.definitions.manifest import ROWS
from cakd.training.runs import load_or_train

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_every_paper_row_trains_an_epoch_on_a_gpu(row, monkeypatch):
    assert torch.cuda.is_available(), "pytest -m gpu runs on a CUDA machine"
    monkeypatch.setattr(teachers, "load_public_weights", lambda model, name: model)   # random, full-size
    config = row.config("paper", dataset="synthetic", synthetic_size=1200, epochs=1, patience=0)
    result = load_or_train(config)
    assert result.metrics["device"].startswith("cuda") and result.metrics["epochs"] == 1
    assert math.isfinite(result.history[0]["loss"]) and result.metrics["teacher_forward_passes"] == 0
