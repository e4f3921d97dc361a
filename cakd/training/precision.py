"""The precision policy of a run: the weights' dtype and the CUDA autocast around the forward passes."""
from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Iterator

import torch


def compute_dtype(precision: str) -> torch.dtype:
    """The weights' dtype: float64 for precision fp64, else float32 (mixed precision is autocast's job)."""
    return torch.float64 if precision == "fp64" else torch.float32


def autocast_for(device: torch.device, precision: str, graph: bool = False) -> AbstractContextManager:
    """bf16 or fp16 autocast on CUDA (fp16 as the authors' precision=16); nothing elsewhere (a CPU runs in fp32).
    `graph`: inside a CUDA graph capture, where autocast's cache of cast weights must stay off."""
    if device.type == "cuda" and precision in ("bf16", "fp16"):
        return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16,
                              cache_enabled=not graph)
    return nullcontext()


@contextmanager
def created_in(precision: str) -> Iterator[None]:
    """Networks built inside draw their initial weights in the weights' dtype. For fp64 that makes them equal on every
    CPU: float32 draws differ in their last bits between vectorized (AVX2, AVX-512) and scalar random-number kernels."""
    saved = torch.get_default_dtype()
    torch.set_default_dtype(compute_dtype(precision))
    try:
        yield
    finally:
        torch.set_default_dtype(saved)


def autocast_name(device: torch.device, precision: str) -> str:
    """What `autocast_for` does, in words: part of a teacher-logit cache's fingerprint (fp16 and bf16 logits differ)."""
    return precision if device.type == "cuda" and precision in ("bf16", "fp16") else "none"
