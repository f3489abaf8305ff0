"""What the driver sends a shard: one frozen dataclass per operation.

The driver logs the operations that change a shard's streams (``Open``, ``Close``,
``Restore``, ``Step``) since the shard's last checkpoint, and replays them into a
restarted shard; the others read (``Snapshot``, ``ReadStates``, ``ReadSteps``,
``ReadStats``) or are
logged as what they turned out to do (``Take`` and ``Expire`` as the ``Close`` of the
streams they closed, ``Checkpoint`` not at all). ``Shard.apply`` says what each returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "Checkpoint",
    "Close",
    "Expire",
    "Message",
    "Open",
    "ReadStates",
    "ReadStats",
    "ReadSteps",
    "Restore",
    "Snapshot",
    "Step",
    "Take",
    "stepped_rows",
]


@dataclass(frozen=True)
class Open:
    """Open ``keys`` at the initial state (none of them open)."""

    keys: list[Any]


@dataclass(frozen=True)
class Close:
    """Close ``keys`` (all of them open)."""

    keys: list[Any]


@dataclass(frozen=True)
class Restore:
    """Open ``keys[i]`` from the snapshot ``blobs[i]``."""

    keys: list[Any]
    blobs: list[bytes]


@dataclass(frozen=True)
class Step:
    """One tick: row i of ``xs`` (checked by the driver) steps ``keys[i]``."""

    keys: list[Any]
    xs: np.ndarray


@dataclass(frozen=True)
class Snapshot:
    """The snapshots of ``keys``; nothing changes."""

    keys: list[Any]


@dataclass(frozen=True)
class Take:
    """The snapshots of ``keys``, which then close: the first half of a move."""

    keys: list[Any]


@dataclass(frozen=True)
class Expire:
    """Close the streams idle for at least ``idle_seconds`` by the shard's clock."""

    idle_seconds: float


@dataclass(frozen=True)
class Checkpoint:
    """Write the shard's pool file to ``path`` (a string), or return its bytes (None)."""

    path: str | None


@dataclass(frozen=True)
class ReadStates:
    """Copies of the states and the step counts of ``keys``; nothing changes."""

    keys: list[Any]


@dataclass(frozen=True)
class ReadSteps:
    """The step counts of ``keys`` (int64); nothing changes."""

    keys: list[Any]


@dataclass(frozen=True)
class ReadStats:
    """The shard's ``PoolStats``; nothing changes."""


Message = (
    Open
    | Close
    | Restore
    | Step
    | Snapshot
    | Take
    | Expire
    | Checkpoint
    | ReadStates
    | ReadSteps
    | ReadStats
)


def stepped_rows(log: list[Message]) -> int:
    """The stream-steps in a replay log."""
    return sum(len(op.keys) for op in log if isinstance(op, Step))
