"""The training loop (DESIGN section 6): one `fit` for students and teachers alike.

Data and augmentation stay on the device; the step has no host sync (per-epoch sums stay on the device);
bf16 autocast and channels_last on CUDA, fp32 on CPU. Every epoch ends with val and test accuracy and an
atomic checkpoint holding everything needed to resume bitwise (weights, optimizer, scheduler, RNG states,
history).
"""
from __future__ import annotations

import inspect
import math
import os
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import torch
from torch import Tensor, nn
from tqdm import tqdm

from . import files
from .losses import LOSSES
from .data import Split, Splits, apply_views, identity_views, random_views

THREADS_ENV = "CAKD_THREADS"   # fix torch's CPU thread count (bitwise-reproducible CPU runs across machines)
# (model logits [B,C] fp32, teacher logits [K,B,C] or None, labels [B]) -> (loss, diagnostics)
StepLoss = Callable[[Tensor, Tensor | None, Tensor], tuple[Tensor, dict[str, Tensor]]]


class TeacherLogits(Protocol):
    """Where KD gets teacher logits [K,B,C] for a batch: the cache or the live teachers."""
    names: list[str]
    forward_passes: int

    def __call__(self, indices: Tensor, view_ids: Tensor, images: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class FitConfig:
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    schedule: str            # cosine | constant
    augment: str             # crop_flip | none
    seed: int
    device: torch.device
    compile: bool = False
    eval_batch_size: int = 1024


@dataclass
class FitResult:
    history: list[dict[str, float]]
    model: nn.Module
    seconds: float


def resolve_device(device: str) -> torch.device:
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but no CUDA device is available; use device='auto' or 'cpu'")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def fit(model: nn.Module, splits: Splits, step_loss: StepLoss, cfg: FitConfig, *,
        teachers: TeacherLogits | None = None, checkpoint: Path | None = None, desc: str = "train") -> FitResult:
    """Train `model` on splits.train; returns the per-epoch history. Resumes from `checkpoint` if present.

    `teachers` supplies teacher logits for each augmented batch (cache or online); the loop does not care
    which, and records their cumulative forward passes in the history.
    """
    configure_threads()
    device, cuda = cfg.device, cfg.device.type == "cuda"
    torch.manual_seed(cfg.seed)
    model, optimizer, autocast = prepare_training(model, device, cfg.lr, cfg.weight_decay)
    if cfg.batch_size > len(splits.train):
        raise ValueError(f"batch_size={cfg.batch_size} exceeds the {len(splits.train)} training images; "
                         "use a smaller batch_size or a larger dataset")
    # The last incomplete batch is dropped (the order is reshuffled each epoch): a batch of 1 breaks BatchNorm.
    steps_per_epoch = len(splits.train) // cfg.batch_size
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg.schedule, cfg.epochs * steps_per_epoch))
    generator = torch.Generator().manual_seed(cfg.seed)   # data order and views: CPU, reproducible anywhere
    history: list[dict[str, float]] = []
    seconds = 0.0
    if checkpoint is not None and checkpoint.exists():
        state = files.torch_load(checkpoint, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())
        if cuda and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"].cpu())
        history, seconds = state["history"], state["seconds"]
    passes_before = int(history[-1].get("teacher_passes", 0)) if history else 0

    forward = torch.compile(model) if cfg.compile else model
    train = splits.train.to(device)
    val, test = splits.val.to(device), splits.test.to(device)
    bar = tqdm(range(len(history), cfg.epochs), desc=desc, initial=len(history), total=cfg.epochs,
               disable=None, leave=False)
    for epoch in bar:
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(train), generator=generator)
        views = random_views(len(train), generator) if cfg.augment == "crop_flip" else identity_views(len(train))
        seen = steps_per_epoch * cfg.batch_size
        sums = train_epoch(forward, optimizer, scheduler, step_loss, train, order[:seen].to(device),
                           views[:seen].to(device), cfg.batch_size, teachers=teachers, autocast=autocast)
        record = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"]}
        record.update(_flatten({k: v / seen for k, v in sums.items()}))   # one host sync per epoch
        record["val_acc"] = evaluate(forward, val, cfg.eval_batch_size, autocast)
        record["test_acc"] = evaluate(forward, test, cfg.eval_batch_size, autocast)
        seconds += time.perf_counter() - start
        record["seconds"] = seconds
        if teachers is not None:
            record["teacher_passes"] = passes_before + teachers.forward_passes
        history.append(record)
        bar.set_postfix(loss=f"{record['loss']:.3f}", val=f"{record['val_acc']:.1f}")
        if checkpoint is not None:
            files.torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "scheduler": scheduler.state_dict(), "generator": generator.get_state(),
                              "torch_rng": torch.get_rng_state(),
                              **({"cuda_rng": torch.cuda.get_rng_state()} if cuda else {}),
                              "history": history, "seconds": seconds}, checkpoint)
    bar.close()
    return FitResult(history, model, seconds)


def prepare_training(model: nn.Module, device: torch.device, lr: float,
                     weight_decay: float) -> tuple[nn.Module, torch.optim.Optimizer, AbstractContextManager]:
    """The model on `device`, its AdamW and the forward's autocast: channels_last, fused AdamW and bf16 on CUDA."""
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(device, memory_format=torch.channels_last)
        model.channels_last = True
    else:
        model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay,
                                  **({"fused": True} if cuda else {}))
    return model, optimizer, torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()


def train_epoch(forward: Callable[[Tensor], Tensor], optimizer: torch.optim.Optimizer,
                scheduler: torch.optim.lr_scheduler.LRScheduler, step_loss: StepLoss, train: Split,
                order: Tensor, views: Tensor, batch_size: int, *, teachers: TeacherLogits | None = None,
                autocast: AbstractContextManager | None = None) -> dict[str, Tensor]:
    """One optimisation step per full batch of `order` (device indices into `train`, with their view ids).

    Returns the running sums of loss, train accuracy and diagnostics, still on the device: no host sync.
    `fit` calls it once per epoch; `cakd.bench` times it.
    """
    autocast = autocast if autocast is not None else nullcontext()
    sums: dict[str, Tensor] = {}
    for first in range(0, len(order) // batch_size * batch_size, batch_size):
        indices, view_ids = order[first:first + batch_size], views[first:first + batch_size]
        images, labels = apply_views(train.images[indices], view_ids), train.labels[indices]
        with autocast:
            logits = forward(images)
        teacher_logits = teachers(indices, view_ids, images) if teachers is not None else None
        loss, diagnostics = step_loss(logits.float(), teacher_logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        n = len(labels)
        _accumulate(sums, "loss", loss.detach() * n)
        _accumulate(sums, "train_acc", (logits.argmax(1) == labels).sum() * 100.0)
        for key, value in diagnostics.items():
            _accumulate(sums, key, value * n)
    return sums


@torch.no_grad()
def evaluate(model: Callable[[Tensor], Tensor], split: Split, batch_size: int = 1024,
             autocast=None) -> float:
    """Top-1 accuracy in percent, un-augmented images."""
    was_training = getattr(model, "training", False)
    if isinstance(model, nn.Module):
        model.eval()
    correct = torch.zeros((), dtype=torch.long, device=split.labels.device)
    for first in range(0, len(split), batch_size):
        with autocast or nullcontext():
            logits = model(split.images[first:first + batch_size])
        correct += (logits.argmax(1) == split.labels[first:first + batch_size]).sum()
    if was_training and isinstance(model, nn.Module):
        model.train()
    return 100.0 * correct.item() / len(split)


def summarize(history: list[dict[str, float]]) -> dict[str, float]:
    """The report's protocol: test accuracy at the epoch of best validation accuracy (first one on ties)."""
    best = max(range(len(history)), key=lambda i: (history[i]["val_acc"], -i))
    return {"test_acc": history[best]["test_acc"], "best_val_acc": history[best]["val_acc"],
            "best_epoch": history[best]["epoch"], "last_test_acc": history[-1]["test_acc"],
            "last_val_acc": history[-1]["val_acc"], "epochs": history[-1]["epoch"],
            "train_seconds": history[-1]["seconds"]}


def student_loss(method: str, options: dict) -> StepLoss:
    """The registered loss of `method`, with its keyword options taken from `options` (RunConfig fields)."""
    fn = LOSSES[method]
    keywords = [p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY]
    kwargs = {name: options[name] for name in keywords}
    return lambda logits, teacher_logits, labels: fn(logits, teacher_logits, labels, **kwargs)


def configure_threads() -> None:
    if threads := os.environ.get(THREADS_ENV):
        torch.set_num_threads(int(threads))


def _lr_lambda(schedule: str, total_steps: int) -> Callable[[int], float]:
    if schedule == "constant":
        return lambda step: 1.0
    return lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))


def _accumulate(sums: dict[str, Tensor], key: str, value: Tensor) -> None:
    sums[key] = sums[key] + value if key in sums else value


def _flatten(values: dict[str, Tensor]) -> dict[str, float]:
    """{'teacher_weights': tensor([a, b])} -> {'teacher_weights.0': a, 'teacher_weights.1': b}."""
    flat: dict[str, float] = {}
    for key, value in values.items():
        value = value.float().cpu()
        if value.dim() == 0:
            flat[key] = value.item()
        else:
            flat.update({f"{key}.{i}": v for i, v in enumerate(value.tolist())})
    return flat
