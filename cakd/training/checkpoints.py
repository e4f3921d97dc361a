"""Checkpoints and weights on disk: written atomically, read without unpickling code, hashed by content."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..definitions import files


def save(obj: Any, path: Path) -> None:
    with files.atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load(path: Path, map_location: str | torch.device = "cpu") -> Any:
    """Load a checkpoint without unpickling arbitrary objects; a damaged file is reported, not used."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 -- truncated zip, bad pickle opcode, ...: "do not trust this file"
        raise ValueError(f"checkpoint {path} is unreadable ({type(e).__name__}: {e}); "
                         "delete it to start that run afresh") from e


def weights_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """Content hash of a model's weights (names, dtypes, values), independent of how the file was written."""
    return files.digest(*(part for name in sorted(state_dict) for part in (
        name, str(state_dict[name].dtype),
        state_dict[name].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())))
