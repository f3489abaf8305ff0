"""One shard of a ShardedPool: the object each Ray actor holds (``ray.remote(Shard)``).

A shard owns one ``StreamPool`` and applies the driver's operations to it, one at a
time, in the order sent. Every operation is all or nothing: it checks its keys before it
changes a stream, so an operation that raises changed nothing, and replaying the
driver's log from a checkpoint repeats exactly what happened. This module imports no
Ray: the driver (``distributed.py``) makes the actor class.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.session import SessionOptions
from ..core.spec import ModelIO
from ..fleet.graphs import GraphChoice
from ..fleet.model import load_bytes
from ..fleet.pool import StreamPool
from ..formats.files import atomic_write_bytes

__all__ = ["Op", "Recovery", "Shard", "ShardSettings", "ShardStats"]

# An operation as the driver logs it and a shard applies it: (name, *arguments).
Op = tuple[Any, ...]


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

    def apply(self, op: Op) -> Any:
        """Apply one operation and return its result:

        - ``("step", keys, X)`` -> (outputs, seconds spent in the pool's tick)
        - ``("open", keys)``, ``("close", keys)``, ``("restore", keys, blobs)`` -> None
        - ``("snapshot", keys)`` -> their snapshots; ``("take", keys)`` -> the same, and
          the keys close (the first half of a move)
        - ``("expire", idle_seconds)`` -> {key: snapshot} of the streams it closed
        - ``("checkpoint", path or None)`` -> the path written (or the ``OSError`` that
          stopped it), or the pool file's bytes
        """
        name, *args = op
        pool = self.pool
        if name == "step":
            keys, xs = args
            start = time.perf_counter()
            ys = pool.step_batch(keys, xs)
            return ys, time.perf_counter() - start
        if name == "open":
            self._require(args[0], is_open=False)
            for key in args[0]:
                pool.open(key)
            return None
        if name == "restore":
            self._require(args[0], is_open=False)
            for blob in args[1]:
                self.model.codec.decode(blob)  # a bad one raises before any opens
            for key, blob in zip(args[0], args[1], strict=True):
                pool.restore(key, blob)
            return None
        if name in ("close", "snapshot", "take"):
            self._require(args[0], is_open=True)
            blobs = [pool.snapshot(key) for key in args[0]] if name != "close" else None
            if name != "snapshot":
                for key in args[0]:
                    pool.close(key)
            return blobs
        if name == "expire":
            return pool.expire(args[0])
        if name == "checkpoint":  # an OSError is returned, not raised: nothing changed
            blob = pool.to_bytes()
            if args[0] is None:
                return blob
            try:  # the pool's checkpoint_dir: an output folder, made again if it went
                Path(args[0]).parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(args[0], blob)
            except OSError as e:
                return e
            return args[0]
        raise ValueError(f"unknown shard operation {name!r}")

    def replay(self, ops: Sequence[Op]) -> Any:
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
