"""Where a run stands, from the training loop's per-epoch records (`fit(on_epoch=...)`): a bar on a terminal, and one
line per epoch anywhere else (a log file, a batch job, a notebook's cell), so a run of hours never goes silent."""
from __future__ import annotations

import sys
from typing import Any, Callable, TextIO

OnEpoch = Callable[[dict[str, float]], None]


def epoch_line(desc: str, epochs: int, record: dict[str, float]) -> str:
    """'baseline seed 0: epoch 3/100, loss 2.3401, val 41.20%, 0:12:05 elapsed, at most 6:30:40 left' (early stopping
    can end it sooner; the time is the record's training time, resumed runs included)."""
    done, seconds = int(record["epoch"]), record["seconds"]
    left = seconds / done * (epochs - done)
    return (f"{desc}: epoch {done}/{epochs}, loss {record['loss']:.4f}, val {record['val_acc']:.2f}%, "
            f"{_clock(seconds)} elapsed, at most {_clock(left)} left")


def epoch_progress(desc: str, epochs: int, bar: Callable[..., Any] | None = None,
                   stream: TextIO | None = None) -> OnEpoch:
    """An `on_epoch` for fit: a `bar` (a tqdm class: tqdm's, or Ray's in a Ray task) when given, else a line per epoch
    written to `stream` (default stdout) and flushed at once."""
    if bar is not None:
        progress = bar(desc=desc, total=epochs)

        def update(record: dict[str, float]) -> None:
            progress.n = int(record["epoch"])
            progress.set_description(f"{desc}: val {record['val_acc']:.1f}%")
            if progress.n >= epochs:
                progress.close()
        return update

    def write(record: dict[str, float]) -> None:
        print(epoch_line(desc, epochs, record), file=stream or sys.stdout, flush=True)
    return write


def _clock(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{s:02d}"
