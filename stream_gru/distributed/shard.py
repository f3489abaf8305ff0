"""One shard of a ShardedPool: the object each Ray actor holds (``ray.remote(Shard)``).

A shard owns one ``StreamPool`` and applies the driver's operations to it, one at a
time, in the order sent. Every operation is all or nothing: it checks its keys before it
changes a stream, so an operation that raises changed nothing, and replaying the
driver's log from a checkpoint repeats exactly what happened. This module imports no
Ray: the driver (``actors.py``) makes the actor class.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.session import SessionOptions
from ..core.spec import ModelIO
from ..fleet.graphs import GraphChoice
from ..fleet.model import load_bytes
from ..fleet.pool import StreamPool
from ..fleet.ticks import PoolStats
from ..formats.files import atomic_write_bytes
from .messages import (
    Checkpoint,
    Close,
    Expire,
    Message,
    Open,
    ReadStates,
    ReadStats,
    ReadSteps,
    Restore,
    Snapshot,
    Step,
    Take,
)

__all__ = ["Recovery", "Shard", "ShardSettings", "ShardStats", "ShardedPoolStats"]


@dataclass(frozen=True)
class Recovery:
    """One restart of a dead shard: from which checkpoint, with how much replayed."""

    shard: int
    checkpoint_streams: int  # streams in the checkpoint it restarted from
    replayed_ops: int
    replayed_stream_steps: int
    seconds: float


@dataclass(frozen=True)
class ShardStats:
    """One shard's counters, as the driver saw them."""

    shard: int
    streams: int
    stream_steps: int
    busy_seconds: float  # time the shard spent in its pool's ticks
    checkpoints: int
    recoveries: int


@dataclass(frozen=True)
class ShardedPoolStats(PoolStats):
    """``PoolStats`` of the whole sharded pool (ticks and latencies as the driver saw
    them; capacity summed over the shards), and ``shards``: each shard's counters.
    Iterating it, ``len`` and indexing give the shards, as ``stats()`` did when it
    returned their list."""

    shards: tuple[ShardStats, ...] = ()

    def __iter__(self) -> Iterator[ShardStats]:
        return iter(self.shards)

    def __len__(self) -> int:
        return len(self.shards)

    def __getitem__(self, index: int) -> ShardStats:
        return self.shards[index]


@dataclass(frozen=True)
class ShardSettings:
    """How every shard loads the model and runs its pool."""

    session: SessionOptions
    graph: GraphChoice
    io: ModelIO | None


class Shard:
    """A ``StreamPool`` that applies the driver's operations (see ``apply``)."""

    def __init__(self, model_bytes: bytes, settings: ShardSettings, checkpoint: Any) -> None:
        """``checkpoint``: None (no streams), the bytes of a pool file, or its path."""
        self.model = load_bytes(model_bytes, options=settings.session, io=settings.io)
        if checkpoint is None:
            self.pool = self.model.pool(graph=settings.graph)
        else:
            blob = checkpoint if isinstance(checkpoint, bytes) else Path(checkpoint).read_bytes()
            self.pool = StreamPool.from_bytes(
                self.model, blob, graph=settings.graph, what="shard checkpoint"
            )

    def apply(self, op: Message) -> Any:
        """Apply one operation (``messages.py``) and return its result:

        - ``Step`` -> (outputs, seconds spent in the pool's tick)
        - ``Open``, ``Close``, ``Restore`` -> None
        - ``Snapshot``, ``Take`` -> the keys' snapshots (``Take`` then closes them)
        - ``Expire`` -> {key: snapshot} of the streams it closed
        - ``Checkpoint`` -> the path written (or the ``OSError`` that stopped it: nothing
          changed), or the pool file's bytes
        - ``ReadStates`` -> [(state, steps)] of the keys; ``ReadSteps`` -> their step
          counts; ``ReadStats`` -> ``PoolStats``
        """
        pool = self.pool
        if isinstance(op, Step):
            start = time.perf_counter()
            ys = pool.step_batch(op.keys, op.xs)
            return ys, time.perf_counter() - start
        if isinstance(op, Open):
            self._require(op.keys, is_open=False)
            for key in op.keys:
                pool.open(key)
            return None
        if isinstance(op, Restore):
            self._require(op.keys, is_open=False)
            for blob in op.blobs:
                self.model.codec.decode(blob)  # a bad one raises before any opens
            for key, blob in zip(op.keys, op.blobs, strict=True):
                pool.restore(key, blob)
            return None
        if isinstance(op, (Close, Snapshot, Take, ReadStates)):
            self._require(op.keys, is_open=True)
            if isinstance(op, ReadStates):
                return [(pool.state(key), pool.steps(key)) for key in op.keys]
            blobs = None if isinstance(op, Close) else [pool.snapshot(key) for key in op.keys]
            if not isinstance(op, Snapshot):
                for key in op.keys:
                    pool.close(key)
            return blobs
        if isinstance(op, Expire):
            return pool.expire(op.idle_seconds)
        if isinstance(op, Checkpoint):
            return self._checkpoint(op.path)
        if isinstance(op, ReadSteps):
            return pool.step_counts(op.keys)
        if isinstance(op, ReadStats):
            return pool.stats()
        raise TypeError(f"unknown shard operation {op!r:.80}")

    def _checkpoint(self, path: str | None) -> bytes | str | OSError:
        blob = self.pool.to_bytes()
        if path is None:
            return blob
        try:  # the pool's checkpoint_dir: an output folder, made again if it went
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, blob)
        except OSError as e:
            return e
        return path

    def replay(self, ops: Sequence[Message]) -> Any:
        """Apply ``ops`` in order; the last one's result."""
        result = None
        for op in ops:
            result = self.apply(op)
        return result

    def _require(self, keys: Sequence[Any], *, is_open: bool) -> None:
        wrong = [k for k in keys if (k in self.pool) != is_open]
        if wrong or len(set(keys)) != len(keys):
            state = "not open" if is_open else "already open"
            raise ValueError(f"streams {state} in this shard, or named twice: {wrong[:20]!r}")
