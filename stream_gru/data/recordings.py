"""Recording types: one stream (``Recording``) and a set of them with their names and
task (``SensorDataset``), both checked on construction.

This module needs only numpy (no torch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

__all__ = ["TASKS", "DataReading", "Recording", "SensorDataset", "Task"]

Task = Literal["regression", "classification"]
TASKS: tuple[str, ...] = ("regression", "classification")


@dataclass(frozen=True, eq=False)
class Recording:
    """One stream: ``x`` float32 (T, I); ``y`` int64 (T,) class indices or float32
    (T, O) targets; ``mask`` bool (T,), True where the step has a valid target."""

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    name: str

    def __post_init__(self) -> None:
        if self.x.ndim != 2 or self.x.shape[0] < 1:
            raise ValueError(
                f"recording {self.name!r}: x must be (T, I) with T >= 1, got {self.x.shape}"
            )
        steps = self.x.shape[0]
        if self.y.ndim not in (1, 2) or self.y.shape[0] != steps:
            raise ValueError(
                f"recording {self.name!r}: y must be (T,) or (T, O) with T={steps}, "
                f"got {self.y.shape}"
            )
        if self.mask.shape != (steps,) or self.mask.dtype != np.bool_:
            raise ValueError(
                f"recording {self.name!r}: mask must be bool ({steps},), "
                f"got {self.mask.dtype} {self.mask.shape}"
            )

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True)
class DataReading:
    """How a file was read, for the user to see (``stream-gru train`` prints it).

    ``rows``: data rows in the file; ``delimiter``: the CSV delimiter used;
    ``ignored``: (column, why) for each column not used; ``missing``: the policy for
    missing values; ``dropped_rows``/``filled_cells``: what it did; ``warnings``:
    what looks wrong (a column that looks like a device id, say).
    """

    rows: int
    delimiter: str = ","
    ignored: tuple[tuple[str, str], ...] = ()
    missing: str = "error"
    dropped_rows: int = 0
    filled_cells: int = 0
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class SensorDataset:
    """Recordings with their names and task.

    ``output_names`` are the class names in class-index order (classification) or
    the target names (regression). For forecasting, ``y[t]`` is the target
    ``horizon`` steps after ``t``. ``sequence_column``: the CSV column that cut the
    rows into recordings (None: one recording, or not a CSV); ``reading``: how the
    file was read.
    """

    recordings: tuple[Recording, ...]
    feature_names: tuple[str, ...]
    output_names: tuple[str, ...]
    task: Task
    target: str
    horizon: int = 0
    source: str = ""
    sequence_column: str | None = None
    reading: DataReading | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if not self.recordings:
            raise ValueError(f"{self.source or 'dataset'}: no recordings")
        if not self.feature_names or not self.output_names:
            raise ValueError("a dataset needs at least one feature and one output name")
        n_in, n_out = len(self.feature_names), len(self.output_names)
        for rec in self.recordings:
            if rec.x.shape[1] != n_in:
                raise ValueError(
                    f"recording {rec.name!r} has {rec.x.shape[1]} features, expected {n_in}"
                )
            if self.task == "classification":
                if rec.y.ndim != 1:
                    raise ValueError(f"recording {rec.name!r}: classification y must be (T,)")
                labels = rec.y[rec.mask]
                if labels.size and (labels.min() < 0 or labels.max() >= n_out):
                    raise ValueError(
                        f"recording {rec.name!r}: class index outside [0, {n_out}) at a valid step"
                    )
            elif rec.y.ndim != 2 or rec.y.shape[1] != n_out:
                raise ValueError(
                    f"recording {rec.name!r}: regression y must be (T, {n_out}), got {rec.y.shape}"
                )

    @property
    def input_size(self) -> int:
        return len(self.feature_names)

    @property
    def output_size(self) -> int:
        return len(self.output_names)

    @property
    def num_valid_steps(self) -> int:
        """Steps with a valid target, over all recordings."""
        return sum(int(r.mask.sum()) for r in self.recordings)
