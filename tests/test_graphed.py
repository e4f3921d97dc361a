"""The graphed training step (cakd.graphed) against the eager one, and the step refactoring of train_epoch.

The graph tests need CUDA and are skipped elsewhere; the rest run on the CPU. No timings.
"""
import dataclasses
import warnings

import pytest
import torch

from cakd import graphed
from cakd.config import profile_config
from cakd.data import Split, random_views
from cakd.manifest import D, R50, V
from cakd.models import create_student
from cakd.runs import step_loss
from cakd.teaching import CACHE_DTYPE, CachedTeachers, OnlineTeachers, TeacherLogitCache
from cakd.train import FitConfig, make_scheduler, prepare_training, train_epoch, train_step



def _setup(device, *, cuda_graph=True, precision=None, teachers=True, batch_size=16, images=128):
    """A tiny consistent-profile student, its optimizer and (with `teachers`) a 162-view logit cache."""
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
    model, optimizer, scaler = prepare_training(create_student(config.student, 100, "tiny"), device, cfg.lr,
                                                cfg.weight_decay, cfg.precision)
    return config, cfg, train, source, model, optimizer, scaler


def _epoch_batches(cfg, train, steps, seed=1):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        order = torch.randperm(len(train), generator=g)[:cfg.batch_size]
        yield order.to(train.labels.device), random_views(cfg.batch_size, cfg.views, g).to(train.labels.device)


def _losses(device, cuda_graph, steps=50, **kw):
    """Per-step losses of `steps` one-batch epochs; the lr drops (scheduler step) halfway, as after an epoch."""
    config, cfg, train, teachers, model, optimizer, scaler = _setup(device, cuda_graph=cuda_graph, **kw)
    scheduler = make_scheduler(optimizer, "cosine", 2, 1e-6)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if device.type == "cuda" else None
    losses = []
    for i, (order, views) in enumerate(_epoch_batches(cfg, train, steps)):
        if i == steps // 2:
            scheduler.step()
        sums = train_epoch(model, optimizer, step_loss(config), train, order, views, cfg, teachers=teachers,
                           autocast=autocast, scaler=scaler)
        losses.append(sums["loss"] / cfg.batch_size)
    return torch.stack(losses).float().cpu(), model


# ----------------------------------------------------------------------------- CUDA only

@pytest.mark.gpu
@pytest.mark.parametrize("teachers", [False, True], ids=["baseline", "cached_kd"])
def test_fifty_graphed_steps_give_the_eager_losses_within_bf16_tolerance(teachers):
    device = torch.device("cuda", torch.cuda.current_device())
    eager, _ = _losses(device, False, teachers=teachers)
    graph, _ = _losses(device, True, teachers=teachers)
    assert torch.isfinite(graph).all()
    # the first WARMUP_STEPS steps are eager in both runs; then bf16 rounding (and cuDNN's choices) may drift
    torch.testing.assert_close(graph[:graphed.WARMUP_STEPS], eager[:graphed.WARMUP_STEPS], rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(graph, eager, rtol=5e-2, atol=5e-2)


@pytest.mark.gpu
def test_the_graph_reads_the_learning_rate_the_scheduler_sets():
    device = torch.device("cuda", torch.cuda.current_device())
    config, cfg, train, teachers, model, optimizer, scaler = _setup(device, teachers=False)
    batches = list(_epoch_batches(cfg, train, graphed.WARMUP_STEPS + 2))
    for order, views in batches[:-1]:        # eager warm-up, capture, one replay
        train_epoch(model, optimizer, step_loss(config), train, order, views, cfg)
    assert isinstance(optimizer.param_groups[0]["lr"], torch.Tensor)
    torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 0.0)   # fills the lr tensor with 0 in place
    before = [p.detach().clone() for p in model.parameters()]
    train_epoch(model, optimizer, step_loss(config), train, *batches[-1], cfg)
    # lr 0: AdamW moves nothing (its decoupled decay is lr x wd x p = 0 too)
    for old, new in zip(before, model.parameters()):
        torch.testing.assert_close(new.detach(), old)
    assert float(optimizer.param_groups[0]["lr"]) == 0.0


@pytest.mark.gpu
def test_fp16_and_online_teachers_run_eagerly_with_a_warning_that_says_why():
    device = torch.device("cuda", torch.cuda.current_device())
    config, cfg, train, _, model, optimizer, scaler = _setup(device, precision="fp16", teachers=False)
    order, views = next(_epoch_batches(cfg, train, 1))
    with pytest.warns(UserWarning, match="fp16"):
        train_epoch(model, optimizer, step_loss(config), train, order, views, cfg, scaler=scaler)


# ----------------------------------------------------------------------------- CPU

def test_train_epoch_sums_the_steps_of_train_step_over_full_batches_only():
    # 4 steps of 16 from 70 indices: the last 6 are dropped
    device = torch.device("cpu")
    config, cfg, train, teachers, model, optimizer, _ = _setup(device)
    g = torch.Generator().manual_seed(3)
    order, views = torch.randint(0, len(train), (70,), generator=g), random_views(70, cfg.views, g)
    state = ({k: v.clone() for k, v in model.state_dict().items()}, optimizer.state_dict())
    torch.manual_seed(5)   # the student's dropout
    sums = train_epoch(model, optimizer, step_loss(config), train, order, views, cfg, teachers=teachers)
    model.load_state_dict(state[0])
    optimizer.load_state_dict(state[1])
    torch.manual_seed(5)
    expected = {}
    for first in range(0, 64, 16):
        step = train_step(model, optimizer, step_loss(config), train, order[first:first + 16],
                          views[first:first + 16], cfg.views, teachers=teachers)
        expected = {k: expected.get(k, 0) + v for k, v in step.items()}
    assert set(sums) == {"loss", "train_acc", "ce", "kd", "alpha", "teacher_choice"}
    for key in sums:
        torch.testing.assert_close(sums[key], expected[key])
    assert 0 <= float(sums["train_acc"]) <= 64 * 100


def test_train_step_returns_batch_sums_and_updates_the_weights():
    device = torch.device("cpu")
    config, cfg, train, _, model, optimizer, _ = _setup(device, teachers=False)
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
        on, _ = _losses(device, True, steps=3)
    off, _ = _losses(device, False, steps=3)
    assert torch.equal(on, off)


def test_graph_blocker_names_why_a_step_stays_eager():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert graphed.graph_blocker(cuda, "bf16", False) is None
    assert graphed.graph_blocker(cuda, "fp32", False) is None
    assert "CUDA" in graphed.graph_blocker(cpu, "bf16", False)
    assert "fp16" in graphed.graph_blocker(cuda, "fp16", False)
    assert "compile" in graphed.graph_blocker(cuda, "bf16", True)
    online = OnlineTeachers([], [], "student_view", None, "bf16")
    assert "online teachers" in graphed.graph_blocker(cuda, "bf16", False, online)
    host = CachedTeachers([TeacherLogitCache(None, {"train": torch.zeros(2, 3), "val": None, "test": None}, {})],
                          ["t"], cuda)
    assert "host memory" in graphed.graph_blocker(cuda, "bf16", False, host)


def test_fit_config_carries_cuda_graph_from_the_run_config():
    config = profile_config("smoke", cuda_graph=False)
    assert FitConfig.of(config, torch.device("cpu")).cuda_graph is False
    assert FitConfig.of(profile_config("smoke"), torch.device("cpu")).cuda_graph is True
