"""The training loop (report section 4.1, the authors' recipe): one `fit` for students and the smoke teachers. Data and
augmentation stay on the device, and a step never syncs with the host; mixed precision and channels_last on CUDA, fp32
or fp64 on a CPU. CosineAnnealingLR steps once per epoch (the authors' Lightning default); training stops when
validation accuracy has not improved for `patience` epochs. The reported number is the test accuracy of the
best-validation epoch, so the test split is read only at a new best and at the last epoch. Each epoch ends with an
atomic checkpoint to resume from bitwise and hands its record to `on_epoch`: its caller decides how to show progress."""
from __future__ import annotations

import dataclasses
import os
import time
import warnings
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import torch
from torch import Tensor, nn

from ..definitions.config import OPTIONS, RunConfig, Views
from . import checkpoints
from .data import Split, Splits
from .graphed import GraphedStep, graph_blocker
from .precision import autocast_for, compute_dtype
from .views import apply_views, eval_images, random_views

THREADS_ENV = "CAKD_THREADS"   # fix torch's CPU thread count
# (model logits [B,C], teacher logits [K,B,C] or None, labels [B]) -> (loss, diagnostics)
StepLoss = Callable[[Tensor, Tensor | None, Tensor], tuple[Tensor, dict[str, Tensor]]]
EpochRecord = dict[str, float]


class TeacherLogits(Protocol):
    """What the loop needs of KD's teachers (cakd.training.teaching provides them, from a cache or online): logits
    [K,B,C] for train-split `indices`, their `view_ids` and the student's `views` (the float images it sees)."""
    names: list[str]
    forward_passes: int

    def graph_blocker(self) -> str | None:
        """Why a training step reading these logits cannot be one CUDA graph, or None when it can."""

    def __call__(self, indices: Tensor, view_ids: Tensor, views: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class FitConfig:
    """The optimisation `fit` runs. Fields named as RunConfig's options take their values (`FitConfig.of`)."""
    views: Views
    device: torch.device
    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-2
    weight_decay: float = 1e-4
    schedule: str = "cosine"       # cosine | constant
    cosine_epochs: int = 100       # CosineAnnealingLR's T_max
    eta_min: float = 1e-6
    patience: int = 0              # 0: no early stopping
    precision: str = "fp32"
    seed: int = 0
    compile: bool = False
    eval_batch_size: int = 1024
    cuda_graph: bool = True        # CUDA: the training step as one CUDA graph (cakd.training.graphed); speed only
    cudnn_benchmark: bool = True   # CUDA: cuDNN picks the fastest convolution per shape; speed only

    @classmethod
    def of(cls, config: RunConfig, device: torch.device) -> "FitConfig":
        shared = {f.name: getattr(config, f.name) for f in dataclasses.fields(cls) if f.name in OPTIONS}
        return cls(**{**shared, "views": config.views, "device": device, "cosine_epochs": config.cosine_epochs})


@dataclass
class FitResult:
    history: list[EpochRecord]
    model: nn.Module
    seconds: float


def resolve_device(device: str) -> torch.device:
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but no CUDA device is available; use device='auto' or 'cpu'")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def fit(model: nn.Module, splits: Splits, step_loss: StepLoss, cfg: FitConfig, *,
        teachers: TeacherLogits | None = None, checkpoint: Path | None = None,
        on_epoch: Callable[[EpochRecord], None] | None = None) -> FitResult:
    """Train `model` on splits.train, resuming from `checkpoint` if present; `teachers` supply each batch's logits
    (cached or online: the loop does not care which, and records their cumulative forward passes)."""
    configure_threads()
    device = cfg.device
    torch.manual_seed(cfg.seed)
    if cfg.batch_size > len(splits.train):
        raise ValueError(f"batch_size={cfg.batch_size} exceeds the {len(splits.train)} training images; "
                         "use a smaller batch_size or a larger dataset")
    model, optimizer, scaler = prepare_training(model, cfg)
    scheduler = make_scheduler(optimizer, cfg.schedule, cfg.cosine_epochs, cfg.eta_min)
    generator = torch.Generator().manual_seed(cfg.seed)   # data order and views: CPU, reproducible anywhere
    history: list[EpochRecord] = []
    seconds = 0.0
    stateful = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
    if checkpoint is not None and checkpoint.exists():
        state = checkpoints.load(checkpoint, map_location=device)
        for name, part in stateful.items():
            part.load_state_dict(state[name])
        generator.set_state(state["generator"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())
        if device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"].cpu())
        history, seconds = state["history"], state["seconds"]
    passes_before = int(history[-1].get("teacher_passes", 0)) if history else 0

    train, val, test = splits.train.to(device), splits.val.to(device), splits.test.to(device)
    step = TrainStep(model, optimizer, scaler, step_loss, train, cfg, teachers)
    evaluate_on = lambda split: evaluate(step.forward, split, cfg.views, cfg.eval_batch_size,   # noqa: E731
                                         autocast_for(device, cfg.precision), compute_dtype(cfg.precision))
    # The last incomplete batch is dropped (the order is reshuffled each epoch): a batch of 1 breaks BatchNorm.
    seen = len(train) // cfg.batch_size * cfg.batch_size
    while len(history) < cfg.epochs and not patience_spent(history, cfg.patience):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(train), generator=generator)[:seen]
        view_ids = random_views(len(train), cfg.views, generator)[:seen]
        lr = float(optimizer.param_groups[0]["lr"])   # a device tensor once the step is graphed
        sums = step.epoch(order.to(device), view_ids.to(device))
        scheduler.step()                                                   # per epoch, as Lightning does
        record = {"epoch": len(history) + 1, "lr": lr,
                  **flatten({k: v / seen for k, v in sums.items()}),   # one host sync per epoch
                  "val_acc": evaluate_on(val)}
        if reports_test(history, record, cfg):
            record["test_acc"] = evaluate_on(test)
        seconds += time.perf_counter() - start
        record["seconds"] = seconds
        if teachers is not None:
            record["teacher_passes"] = passes_before + teachers.forward_passes
        history.append(record)
        if checkpoint is not None:
            checkpoints.save({**{name: part.state_dict() for name, part in stateful.items()},
                              "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
                              **({"cuda_rng": torch.cuda.get_rng_state()} if device.type == "cuda" else {}),
                              "history": history, "seconds": seconds}, checkpoint)
        if on_epoch is not None:
            on_epoch(record)
    return FitResult(history, model, seconds)


def prepare_training(model: nn.Module, cfg: FitConfig) -> tuple[nn.Module, torch.optim.Optimizer, torch.amp.GradScaler]:
    """The model on the device in its dtype, its AdamW and grad scaler (CUDA: channels_last, fused, cudnn_benchmark)."""
    device = cfg.device
    model = model.to(device, dtype=compute_dtype(cfg.precision))
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        model.channels_last = True
        torch.backends.cudnn.benchmark = cfg.cudnn_benchmark
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                  **({"fused": True} if device.type == "cuda" else {}))
    # fp16 autocast needs loss scaling (the authors' precision=16); a disabled scaler is a no-op elsewhere
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda" and cfg.precision == "fp16")
    return model, optimizer, scaler


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: str, cosine_epochs: int, eta_min: float
                   ) -> torch.optim.lr_scheduler.LRScheduler:
    """CosineAnnealingLR(T_max, eta_min) stepped once per epoch (the authors' recipe), or a constant lr."""
    if schedule == "constant":
        return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cosine_epochs, eta_min=eta_min)


class TrainStep:
    """`train_step` over the batches of an epoch: on CUDA one captured graph replayed per batch (cakd.training.graphed),
    else eagerly, with a warning saying why when cfg.cuda_graph asked for the graph. The benchmark times it too."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                 step_loss: StepLoss, train: Split, cfg: FitConfig, teachers: TeacherLogits | None = None):
        self.forward = torch.compile(model) if cfg.compile else model
        self.batch_size = cfg.batch_size
        blocker = graph_blocker(cfg.device, cfg.compile, teachers) if cfg.cuda_graph else "off"
        autocast, dtype = autocast_for(cfg.device, cfg.precision, graph=blocker is None), compute_dtype(cfg.precision)

        def body(indices: Tensor, view_ids: Tensor) -> dict[str, Tensor]:
            return train_step(self.forward, optimizer, step_loss, train, indices, view_ids, cfg.views,
                              teachers=teachers, autocast=autocast, scaler=scaler, dtype=dtype)
        self.body = body
        self.graph = GraphedStep(optimizer, body) if blocker is None else None
        if blocker not in (None, "off") and cfg.device.type == "cuda":
            warnings.warn(f"cuda_graph=True, but the training step runs eagerly: {blocker}", stacklevel=2)

    @property
    def graphed(self) -> bool:
        return self.graph is not None

    def epoch(self, order: Tensor, view_ids: Tensor) -> dict[str, Tensor]:
        """A step per full batch of `order` (training-split indices) and `view_ids`; the steps' sums, on the device."""
        b = self.batch_size
        batches = [(order[first:first + b], view_ids[first:first + b]) for first in range(0, len(order) // b * b, b)]
        if self.graph is not None:
            self.graph.begin_epoch()
            for indices, views in batches:
                self.graph(indices, views)
            return self.graph.sums()
        sums: dict[str, Tensor] = {}
        for indices, views in batches:
            for key, value in self.body(indices, views).items():
                sums[key] = sums[key] + value if key in sums else value
        return sums


def train_step(forward: Callable[[Tensor], Tensor], optimizer: torch.optim.Optimizer, step_loss: StepLoss,
               train: Split, indices: Tensor, view_ids: Tensor, views: Views, *,
               teachers: TeacherLogits | None = None, autocast: AbstractContextManager | None = None,
               scaler: torch.amp.GradScaler | None = None, dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
    """One optimisation step on train[indices] seen through `view_ids`. Returns the step's sums over its batch
    (loss x B, correct x 100, each diagnostic x B) on the device; no host sync, so it can be graph-captured."""
    images, labels = apply_views(train.images[indices], view_ids, views, dtype), train.labels[indices]
    with autocast or nullcontext():
        logits = forward(images)
    teacher_logits = teachers(indices, view_ids, images).to(dtype) if teachers is not None else None
    loss, diagnostics = step_loss(logits.to(dtype), teacher_logits, labels)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None and scaler.is_enabled():
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    n = len(labels)
    return {"loss": loss.detach() * n, "train_acc": (logits.argmax(1) == labels).sum() * 100.0,
            **{key: value * n for key, value in diagnostics.items()}}


@torch.no_grad()
def evaluate(model: Callable[[Tensor], Tensor], split: Split, views: Views, batch_size: int = 1024,
             autocast: AbstractContextManager | None = None, dtype: torch.dtype = torch.float32) -> float:
    """Top-1 accuracy in percent on the evaluation view (resize, centre crop)."""
    was_training = getattr(model, "training", False)
    if isinstance(model, nn.Module):
        model.eval()
    correct = torch.zeros((), dtype=torch.long, device=split.labels.device)
    for first in range(0, len(split), batch_size):
        with autocast or nullcontext():
            logits = model(eval_images(split.images[first:first + batch_size], views, dtype))
        correct += (logits.argmax(1) == split.labels[first:first + batch_size]).sum()
    if was_training and isinstance(model, nn.Module):
        model.train()
    return 100.0 * correct.item() / len(split)


def reports_test(history: list[dict[str, float]], record: dict[str, float], cfg: FitConfig) -> bool:
    """Whether epoch `record` may be reported, so its test accuracy is read: a new best validation accuracy (the
    summary reports the test accuracy there) or the last epoch (its own, for comparison)."""
    so_far = [*history, record]
    return best_epoch(so_far) == len(history) or record["epoch"] >= cfg.epochs or patience_spent(so_far, cfg.patience)


def best_epoch(history: list[dict[str, float]]) -> int:
    """The index of the epoch of best validation accuracy (the first one on ties)."""
    return max(range(len(history)), key=lambda i: (history[i]["val_acc"], -i))


def summarize(history: list[dict[str, float]]) -> dict[str, float]:
    """The report's protocol: test accuracy at the epoch of best validation accuracy (first one on ties)."""
    best = best_epoch(history)
    return {"test_acc": history[best]["test_acc"], "best_val_acc": history[best]["val_acc"],
            "best_epoch": history[best]["epoch"], "last_test_acc": history[-1]["test_acc"],
            "last_val_acc": history[-1]["val_acc"], "last_train_loss": history[-1]["loss"],
            "epochs": history[-1]["epoch"], "train_seconds": history[-1]["seconds"]}


def configure_threads() -> None:
    if threads := os.environ.get(THREADS_ENV):
        torch.set_num_threads(int(threads))


def patience_spent(history: list[dict[str, float]], patience: int) -> bool:
    """EarlyStopping(monitor=val_acc, patience): stop once `patience` epochs have not beaten the best."""
    return patience > 0 and bool(history) and len(history) - 1 - best_epoch(history) >= patience


def flatten(values: dict[str, Tensor]) -> dict[str, float]:
    """{'teacher_weights': tensor([a, b])} -> {'teacher_weights.0': a, 'teacher_weights.1': b}, in float64."""
    flat: dict[str, float] = {}
    for key, value in values.items():
        value = value.double().cpu().tolist()
        flat.update({f"{key}.{i}": v for i, v in enumerate(value)} if isinstance(value, list) else {key: value})
    return flat
