"""The training step as one CUDA graph (augmentation, forward, loss, backward, gradient scaler, AdamW) captured once,
replayed for every batch: a step costs one launch and no Python. The graph reads its batch from static index buffers and
adds its sums into static accumulators, so the per-epoch sums need no host sync. AdamW runs capturable, its learning
rate a device tensor that CosineAnnealingLR fills in place each epoch. fp16's GradScaler stays on the device with the
fused AdamW (the inf check, the skipped step, the scale update), so it is captured too. The first WARMUP_STEPS steps are
real steps of the epoch, run eagerly, so a graphed run trains on exactly the batches an eager run does."""
from __future__ import annotations

import warnings
from typing import Any, Callable

import torch
from torch import Tensor

WARMUP_STEPS = 3      # eager steps before the capture: cuDNN/cuBLAS choose kernels, AdamW and the scaler their state
# (indices [B], view ids [B]) -> the step's sums {name: tensor}, after its optimizer step
StepBody = Callable[[Tensor, Tensor], dict[str, Tensor]]


def graph_blocker(device: torch.device, compile: bool, teachers: Any = None) -> str | None:
    """Why the training step cannot be one CUDA graph here, or None; `teachers` say for themselves (graph_blocker)."""
    if device.type != "cuda":
        return f"the device is {device.type}, not CUDA"
    if compile:
        return "compile=True: the compiled student runs eagerly (torch.compile makes its own graphs)"
    return None if teachers is None else teachers.graph_blocker()


class GraphedStep:
    """`body`, the training step of `optimizer`, captured after WARMUP_STEPS eager steps and replayed for every later
    batch, summing the steps since `begin_epoch` on the device; a call returns its sums in tensors the next reuses."""

    def __init__(self, optimizer: torch.optim.Optimizer, body: StepBody):
        # AdamW in a graph: capturable, each lr a device tensor (a float would be frozen into the graph)
        for group in optimizer.param_groups:
            device = group["params"][0].device
            group["capturable"] = True
            if not isinstance(group["lr"], Tensor):
                group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float32, device=device)
            elif group["lr"].device != device:    # e.g. a checkpoint loaded with another map_location
                group["lr"] = group["lr"].to(device)
        self.body = body
        self.graph: torch.cuda.CUDAGraph | None = None
        self.eager_steps = 0
        self.totals: dict[str, Tensor] = {}
        self.indices = self.views = None
        self.out: dict[str, Tensor] = {}

    def begin_epoch(self) -> None:
        for total in self.totals.values():
            total.zero_()

    def sums(self) -> dict[str, Tensor]:
        return {name: total.clone() for name, total in self.totals.items()}

    def __call__(self, indices: Tensor, views: Tensor) -> dict[str, Tensor]:
        if self.graph is not None:
            self.indices.copy_(indices)
            self.views.copy_(views)
            self.graph.replay()
            return self.out
        if self.eager_steps < WARMUP_STEPS:
            return self._eager(indices, views)
        self.indices, self.views = indices.clone(), views.clone()
        torch.cuda.synchronize()
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: another thread's CUDA calls (a DataLoader's pin-memory thread) do not break the capture
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.out = self._add(self.body(self.indices, self.views))
        self.graph.replay()        # a capture records the step without running it
        return self.out

    def _eager(self, indices: Tensor, views: Tensor) -> dict[str, Tensor]:
        side = torch.cuda.Stream()   # warm-up on a side stream, as torch.cuda.graphs' whole-network example
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*capturable=True.*")   # "running without capture"
            out = self.body(indices, views)
            if not self.totals:
                self.totals = {name: torch.zeros_like(value) for name, value in out.items()}
            self._add(out)
        torch.cuda.current_stream().wait_stream(side)
        self.eager_steps += 1
        return out

    def _add(self, out: dict[str, Tensor]) -> dict[str, Tensor]:
        for name, value in out.items():
            self.totals[name].add_(value)
        return out
