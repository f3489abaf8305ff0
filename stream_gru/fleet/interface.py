"""``FleetPool``: what a pool of streams offers its caller, whether its streams live
in this process (``StreamPool``) or are spread over Ray actors (``ShardedPool``).

Code written against ``FleetPool`` (the pipe, a server, an application's tick loop)
runs on either; mypy checks that both satisfy it (``make lint``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from ..core.model import Model
from .ticks import PoolStats, TickResult

__all__ = ["FleetPool"]


class FleetPool(Protocol):
    """Many streams of one model, stepped together; a call that raises changes no
    stream. Keys are str, int (numpy integers mean the equal int), bytes or tuples of
    those; a key of another type raises ``TypeError``, an unknown key ``KeyError``."""

    @property
    def model(self) -> Model:
        """The model every stream runs."""
        ...

    def __contains__(self, key: object) -> bool: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[Any]: ...

    def keys(self) -> list[Any]:
        """The open streams' keys."""
        ...

    def missing(self, keys: Sequence[Any]) -> list[Any]:
        """The keys of ``keys`` that are not open."""
        ...

    def open(self, key: Any) -> None:
        """Open a stream at the initial state (``ValueError`` if it is open)."""
        ...

    def open_many(self, keys: Sequence[Any]) -> None:
        """Open several streams: all of them, or (``ValueError``) none."""
        ...

    def close(self, key: Any) -> None:
        """Close a stream; its state is gone."""
        ...

    def step(self, samples: Mapping[Any, Any]) -> dict[Any, np.ndarray]:
        """Step every named stream by one sample: ``{key: y}``; one bad sample raises
        and steps none."""
        ...

    def step_valid(self, samples: Mapping[Any, Any]) -> TickResult:
        """Step the streams whose samples are good; return the rest with reasons."""
        ...

    def step_batch(self, keys: Sequence[Any], xs: Any) -> np.ndarray:
        """``keys`` (n,) and ``X`` (n, input_size) -> (n, output_size), row by row."""
        ...

    def snapshot(self, key: Any) -> bytes:
        """One stream's state as ``Stream.snapshot()`` bytes."""
        ...

    def restore(self, key: Any, blob: bytes) -> None:
        """Open ``key`` from a snapshot."""
        ...

    def state(self, key: Any) -> dict[str, np.ndarray]:
        """A copy of one stream's state, as ``Stream.state``."""
        ...

    def steps(self, key: Any) -> int:
        """Samples the stream has run (kept by snapshots)."""
        ...

    def step_counts(self, keys: Sequence[Any]) -> np.ndarray:
        """The step counts of open, distinct ``keys``, in their order (int64)."""
        ...

    def expire(self, idle_seconds: float) -> dict[Any, bytes]:
        """Close the streams idle for at least ``idle_seconds``; their snapshots."""
        ...

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write every stream to ``path`` (a file, or a sharded pool's folder)."""
        ...

    def stats(self) -> PoolStats:
        """Counters for monitoring."""
        ...
