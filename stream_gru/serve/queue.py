"""The Batcher's queue: blocks of samples that may share a tick, and the sinks where
one call's results gather until its future answers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.checks import as_samples

__all__ = ["Block", "RowsResult", "Sink", "TickReport", "not_finite"]


@dataclass(frozen=True)
class TickReport:
    """What one tick did, for monitoring: its size, the seconds each of its samples
    waited in the queue, the seconds the tick itself took, and the samples it
    rejected (a stream closed while its sample waited, say)."""

    size: int
    waits: np.ndarray
    seconds: float
    rejected: int


@dataclass(frozen=True)
class RowsResult:
    """The answer to ``step_rows``: row i's output and its stream's step count after it
    (zeros where it failed), and the exception of each row that failed."""

    outputs: np.ndarray
    steps: np.ndarray
    errors: dict[int, Exception]


class Sink:
    """Where the results of one call's samples gather; its future resolves once all
    have run. ``chunk``: the samples are one stream's, in order, so the first failure
    ends the call and withdraws the rest."""

    __slots__ = ("chunk", "errors", "future", "outputs", "remaining", "steps")

    def __init__(
        self, future: asyncio.Future[RowsResult], n: int, tail: tuple[int, ...], chunk: bool
    ) -> None:
        self.future = future
        self.outputs = np.zeros((n, *tail), np.float32)
        self.steps = np.zeros(n, np.int64)
        self.errors: dict[int, Exception] = {}
        self.remaining = 0
        self.chunk = chunk

    def done(
        self, rows: np.ndarray, ys: np.ndarray, steps: np.ndarray, failures: dict[int, Exception]
    ) -> None:
        """``rows`` of this call have run: their outputs and step counts, and the
        failures among them (by position in ``rows``)."""
        if self.future.done():  # cancelled, or a chunk that failed: dropped
            return
        if failures and self.chunk:
            self.future.set_exception(next(iter(failures.values())))
            return
        self.outputs[rows] = ys
        self.steps[rows] = steps
        for i, error in failures.items():
            self.errors[int(rows[i])] = error
        self.remaining -= len(rows)
        if self.remaining == 0:
            self.future.set_result(RowsResult(self.outputs, self.steps, self.errors))

    def fail(self, rows: np.ndarray, error: Exception) -> None:
        """``rows`` of this call failed together (their whole tick did)."""
        if self.future.done():
            return
        if self.chunk:
            self.future.set_exception(error)
            return
        self.errors.update(dict.fromkeys(rows.tolist(), error))
        self.remaining -= len(rows)
        if self.remaining == 0:
            self.future.set_result(RowsResult(self.outputs, self.steps, self.errors))


class Block:
    """Samples of one call that may share a tick: distinct keys, rows ``rows`` of the
    call, all queued at ``arrived``."""

    __slots__ = ("arrived", "key_set", "keys", "rows", "sink", "xs")

    def __init__(
        self, keys: list[Any], xs: np.ndarray, rows: np.ndarray, arrived: float, sink: Sink
    ) -> None:
        self.keys = keys
        self.key_set = set(keys) if len(keys) > 1 else None
        self.xs = xs
        self.rows = rows
        self.arrived = arrived
        self.sink = sink

    def overlaps(self, keys: set[Any]) -> bool:
        if self.key_set is None:
            return self.keys[0] in keys
        return not self.key_set.isdisjoint(keys)

    def add_keys_to(self, keys: set[Any]) -> None:
        if self.key_set is None:
            keys.add(self.keys[0])
        else:
            keys |= self.key_set


def not_finite(
    row: np.ndarray, shape: tuple[int, ...], key: Any, names: Sequence[str]
) -> ValueError:
    """The error ``as_samples`` gives for a row that is not finite (it names where)."""
    try:
        as_samples(row, shape, what=f"sample of {key!r}", feature_names=names)
    except ValueError as e:
        return e
    return ValueError(f"sample of {key!r} is not finite")
