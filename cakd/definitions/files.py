"""Atomic file writes, JSON, and the one content digest every hash in cakd is made with.

A write goes to a temporary file in the same folder, is fsynced, then renamed over the target: readers see the old file
or the complete new one, never a partial write, even when the process is killed in the middle."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

_UMASK = os.umask(0o022)   # os.umask is the only way to read it: set, then restore
os.umask(_UMASK)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)   # mkstemp makes it owner-only; results are as shareable as any file
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is corrupt ({e}); delete it and rerun to rebuild it") from e


def digest(*parts: Any) -> str:
    """blake2b (128 bits, hex) of `parts` in order: bytes as they are, a Path's file contents (streamed, so
    GB-sized caches are fine), anything else as canonical JSON (sorted keys). Run ids, cache keys, page stamps,
    data fingerprints and weight hashes are all made with it."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        if isinstance(part, Path):
            with open(part, "rb") as f:
                while block := f.read(1 << 24):
                    h.update(block)
        else:
            h.update(part if isinstance(part, (bytes, bytearray, memoryview))
                     else json.dumps(part, sort_keys=True).encode())
    return h.hexdigest()
