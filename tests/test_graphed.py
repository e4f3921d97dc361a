"""The graphed training step (cakd.training.graphed) against the eager one, in bf16 and in fp16 with its gradient
scaler, and TrainStep's epoch of steps.

The graph tests need CUDA (`pytest -m gpu`); the rest run on the CPU. No timings.
"""
import dataclasses
import warnings

import pytest
import torch

from cakd.definitions.manifest import D, R50, V
from cakd.definitions.profiles import profile_config
from cakd.training import graphed
from cakd.training.data import Split
from cakd.training.models import create_student
from cakd.training.runs import step_loss
from cakd.training.teaching import CACHE_DTYPE, CachedTeachers, OnlineTeachers, TeacherLogitCache
from cakd.training.train import FitConfig, TrainStep, make_scheduler, prepare_training, train_step
from cakd.training.views import random_views


def _setup(device, *, cuda_graph=True, precision=None, teachers=True, batch_size=16, images=128):
    """A tiny consistent-profile student, its optimizer, scaler and step (with `teachers`, a 162-view logit cache)."""
    overrides = dict(model_scale="tiny", teacher_weights="train", **({"precision": precision} if precision else {}))
    config = profile_config("consistent", method="adaptive_alpha" if teachers else "baseline",
                            teachers=[D, R50, V] if teachers else [], **overrides)
    cfg = dataclasses.replace(FitConfig.of(config, device), batch_size=batch_size, cuda_graph=cuda_graph)
    g = torch.Generator().manual_seed(0)
    train = Split(torch.randint(0, 256, (images, 3, 32, 32), generator=g, dtype=torch.uint8),
                  torch.randint(0, 100, (images,), generator=g)).to(device)
    source = None
    if teachers:
        caches = [TeacherLogitCache(None, {"train": torch.randn(images, 162, 100, generator=g).to(CACHE_DTYPE)
                                           .to(device), "val": None, "test": None}, {}) for _ in range(3)]
        source = CachedTeachers(caches, [D, R50, V], device)
    torch.manual_seed(0)
    model, optimizer, scaler = prepare_training(create_student(config.student, 100, "tiny"), cfg)
    step = TrainStep(model, optimizer, scaler, step_loss(config), train, cfg, source)
    return config, cfg, train, source, model, optimizer, scaler, step


def _epoch_batches(cfg, train, steps, seed=1):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        order = torch.randperm(len(train), generator=g)[:cfg.batch_size]
        yield order.to(train.labels.device), random_views(cfg.batch_size, cfg.views, g).to(train.labels.device)


def _losses(device, cuda_graph, steps=50, **kw):
    """Per-step losses of `steps` one-batch epochs; the lr drops (scheduler step) halfway, as after an epoch."""
    config, cfg, train, teachers, model, optimizer, scaler, step = _setup(device, cuda_graph=cuda_graph, **kw)
    scheduler = make_scheduler(optimizer, "cosine", 2, 1e-6)
    losses = []
    for i, (order, views) in enumerate(_epoch_batches(cfg, train, steps)):
        if i == steps // 2:
            scheduler.step()
        losses.append(step.epoch(order, views)["loss"] / cfg.batch_size)
    return torch.stack(losses).float().cpu(), step, scaler


# ----------------------------------------------------------------------------- CUDA only

def _cuda():
    assert torch.cuda.is_available(), "pytest -m gpu runs on a CUDA machine"
    return torch.device("cuda", torch.cuda.current_device())


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_graphed_steps_give_the_eager_losses_within_mixed_precision_tolerance(precision):
    # 300 one-batch epochs of the tiny student with three cached teachers (cakd.orchestration.bench, as make
    # gpu-check runs them); the first WARMUP_STEPS steps are eager in both, then rounding (and cuDNN) may drift
    from cakd.orchestration.bench import graphed_against_eager

    compared = graphed_against_eager(_cuda(), precision, steps=300)
    assert compared["images_per_s"]["graphed_is_graphed"] and not compared["images_per_s"]["eager_is_graphed"]
    assert compared["finite"] and compared["max_abs_loss_difference"] < 5e-2 * max(1.0, compared["first_loss"])
    assert compared["last_loss"]["graphed"] < compared["first_loss"]          # it learned


@pytest.mark.gpu
@pytest.mark.parametrize("graph", [False, True], ids=["eager", "graphed"])
def test_an_fp16_overflow_skips_the_step_and_halves_the_scale(graph):
    from cakd.orchestration.bench import fp16_overflow

    result = fp16_overflow(_cuda(), graph)
    assert result["graphed"] == graph and result["weights_unchanged"]
    assert result["scale_after"] == pytest.approx(result["scale_before"] / 2) and result["growth_tracker"] == 0


@pytest.mark.gpu
def test_the_graph_reads_the_learning_rate_the_scheduler_sets():
    config, cfg, train, teachers, model, optimizer, scaler, step = _setup(_cuda(), teachers=False)
    batches = list(_epoch_batches(cfg, train, graphed.WARMUP_STEPS + 2))
    for order, views in batches[:-1]:        # eager warm-up, capture, one replay
        step.epoch(order, views)
    assert isinstance(optimizer.param_groups[0]["lr"], torch.Tensor)
    torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 0.0)   # fills the lr tensor with 0 in place
    before = [p.detach().clone() for p in model.parameters()]
    step.epoch(*batches[-1])
    # lr 0: AdamW moves nothing (its decoupled decay is lr x wd x p = 0 too)
    for old, new in zip(before, model.parameters()):
        torch.testing.assert_close(new.detach(), old)
    assert float(optimizer.param_groups[0]["lr"]) == 0.0


@pytest.mark.gpu
def test_online_teachers_run_eagerly_with_a_warning_that_says_why():
    device = _cuda()
    online = OnlineTeachers([], [], "student_view", None, "bf16")
    config, cfg, train, _, model, optimizer, scaler, _ = _setup(device, teachers=False)
    with pytest.warns(UserWarning, match="online teachers"):
        TrainStep(model, optimizer, scaler, step_loss(config), train, cfg, online)


# ----------------------------------------------------------------------------- CPU

def test_an_epoch_sums_the_steps_of_train_step_over_full_batches_only():
    # 4 steps of 16 from 70 indices: the last 6 are dropped
    config, cfg, train, teachers, model, optimizer, _, step = _setup(torch.device("cpu"))
    g = torch.Generator().manual_seed(3)
    order, views = torch.randint(0, len(train), (70,), generator=g), random_views(70, cfg.views, g)
    state = ({k: v.clone() for k, v in model.state_dict().items()}, optimizer.state_dict())
    torch.manual_seed(5)   # the student's dropout
    sums = step.epoch(order, views)
    model.load_state_dict(state[0])
    optimizer.load_state_dict(state[1])
    torch.manual_seed(5)
    expected = {}
    for first in range(0, 64, 16):
        one = train_step(model, optimizer, step_loss(config), train, order[first:first + 16],
                         views[first:first + 16], cfg.views, teachers=teachers)
        expected = {k: expected.get(k, 0) + v for k, v in one.items()}
    assert set(sums) == {"loss", "train_acc", "ce", "kd", "alpha", "teacher_choice"}
    for key in sums:
        torch.testing.assert_close(sums[key], expected[key])
    assert 0 <= float(sums["train_acc"]) <= 64 * 100


def test_train_step_returns_batch_sums_and_updates_the_weights():
    config, cfg, train, _, model, optimizer, _, _ = _setup(torch.device("cpu"), teachers=False)
    order, views = next(_epoch_batches(cfg, train, 1))
    before = [p.detach().clone() for p in model.parameters()]
    sums = train_step(model, optimizer, step_loss(config), train, order, views, cfg.views)
    assert set(sums) == {"loss", "train_acc", "ce"}
    torch.testing.assert_close(sums["loss"], sums["ce"])     # baseline: loss = CE; both x B
    assert float(sums["loss"]) / cfg.batch_size == pytest.approx(4.6, abs=0.5)   # ~ln 100 at initialization
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_cuda_graph_changes_nothing_on_a_cpu_and_warns_of_nothing():
    device = torch.device("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        on, step, _ = _losses(device, True, steps=3)
    off, _, _ = _losses(device, False, steps=3)
    assert torch.equal(on, off) and not step.graphed


def test_graph_blocker_names_why_a_step_stays_eager():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert graphed.graph_blocker(cuda, False) is None
    assert "CUDA" in graphed.graph_blocker(cpu, False)
    assert "compile" in graphed.graph_blocker(cuda, True)
    online = OnlineTeachers([], [], "student_view", None, "bf16")
    assert "online teachers" in graphed.graph_blocker(cuda, False, online)
    host = CachedTeachers([TeacherLogitCache(None, {"train": torch.zeros(2, 3), "val": None, "test": None}, {})],
                          ["t"], cuda)
    assert "host memory" in graphed.graph_blocker(cuda, False, host)


def test_fit_config_carries_the_speed_options_from_the_run_config():
    config = profile_config("smoke", cuda_graph=False, cudnn_benchmark=False)
    assert FitConfig.of(config, torch.device("cpu")).cuda_graph is False
    assert FitConfig.of(config, torch.device("cpu")).cudnn_benchmark is False
    assert FitConfig.of(profile_config("smoke"), torch.device("cpu")).cuda_graph is True
