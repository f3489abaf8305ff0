"""The options of training, as frozen dataclasses: ``GRUConfig`` (the network's shape)
and ``TrainOptions`` (how to train).

Kept free of torch (numpy only), so the command line can read their defaults and
``--help`` works without the train extra. ``stream_gru.training`` re-exports both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = ["Cell", "GRUConfig", "Task", "TrainOptions"]

Task = Literal["regression", "classification"]
Cell = Literal["gru", "lstm"]


class DataShape(Protocol):
    """What a config takes from a dataset (``SensorDataset`` has it)."""

    @property
    def input_size(self) -> int: ...
    @property
    def output_size(self) -> int: ...
    @property
    def task(self) -> Task: ...


@dataclass(frozen=True)
class GRUConfig:
    """Shape and kind of the network.

    ``output_size`` is the number of classes for classification (the model emits one
    score per class at every step) and the number of targets for regression.
    ``dropout`` applies between stacked recurrent layers during training only.
    """

    input_size: int
    hidden_size: int = 64
    num_layers: int = 1
    output_size: int = 1
    task: Task = "classification"
    cell: Cell = "gru"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("input_size", "hidden_size", "num_layers", "output_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"GRUConfig.{name} must be a positive int, got {value!r}")
        if self.task not in ("regression", "classification"):
            raise ValueError(
                f"GRUConfig.task must be 'regression' or 'classification', got {self.task!r}"
            )
        if self.cell not in ("gru", "lstm"):
            raise ValueError(f"GRUConfig.cell must be 'gru' or 'lstm', got {self.cell!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GRUConfig.dropout must be in [0, 1), got {self.dropout!r}")

    @classmethod
    def for_data(cls, data: DataShape, **fields: Any) -> GRUConfig:
        """A config shaped for ``data``: its input size, output size and task (``fields``
        sets the rest, and may override the task)."""
        shape = {"input_size": data.input_size, "output_size": data.output_size, "task": data.task}
        return cls(**{**shape, **fields})


@dataclass(frozen=True)
class TrainOptions:
    """How to train.

    epochs: the most passes over the training recordings.
    batch_size: recordings per batch.
    window: steps per truncated-BPTT window (one optimizer step each).
    lr, weight_decay: Adam's.
    clip_norm: the largest gradient norm (clipped above it).
    patience: stop after this many epochs without a lower validation loss.
    validation_fraction, seed: for ``split_dataset``; the seed also fixes the
        initial weights, the batch order and dropout.
    progress: show a progress bar (on stderr).
    epoch_lines: print one line of metrics per epoch (on stdout), with or without
        the bar. ``progress=False, epoch_lines=False`` trains silently.
    """

    epochs: int = 60
    batch_size: int = 16
    window: int = 25
    lr: float = 3e-3
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    patience: int = 10
    validation_fraction: float = 0.2
    seed: int = 0
    progress: bool = True
    epoch_lines: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "window", "patience"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainOptions.{name} must be an int >= 1, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"TrainOptions.seed must be an int >= 0, got {self.seed!r}")
        for name, low_open in (("lr", True), ("clip_norm", True), ("weight_decay", False)):
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = ok and math.isfinite(value) and (value > 0 if low_open else value >= 0)
            if not ok:
                bound = "> 0" if low_open else ">= 0"
                raise ValueError(
                    f"TrainOptions.{name} must be a finite number {bound}, got {value!r}"
                )
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(
                "TrainOptions.validation_fraction must be in (0, 1), "
                f"got {self.validation_fraction!r}"
            )
        for name in ("progress", "epoch_lines"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"TrainOptions.{name} must be a bool, got {getattr(self, name)!r}")
