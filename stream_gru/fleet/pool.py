"""StreamPool: many streams, one batched onnxruntime call per tick.

Every stream's state lives in a slot of contiguous arrays (one array per state tensor,
slot-major), so a tick gathers the slots it names, runs one session call, and
scatters the new states back: its cost grows with the streams in the tick, not with
the pool. Closed slots are reused. A key is a str, an int (not a bool), bytes, or a
tuple of those: what a pool file can store exactly.

A stream's outputs never depend on what else is in its tick (docs/design.md, trap 10);
the tests prove it against one ``Stream`` per key.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ..core.checks import MAX_STEPS
from ..core.model import Model
from ..errors import PartialTickError, SnapshotError
from ..formats.files import NotARegularFile, atomic_write_bytes, read_regular
from . import poolfile
from .graphs import GraphChoice
from .interface import FleetPool
from .keys import canonical_key, canonical_samples, key_list, keys_at, split_refused, tick_keys
from .slots import KeysNotOpen, KeysRepeated, SlotTable
from .stores import BlocksDone, DeviceStates, make_store
from .ticks import (
    PoolStats,
    TickResult,
    check_batch,
    check_idle_seconds,
    check_samples,
    drop_not_open,
    refused_rows,
)

__all__ = ["PoolStats", "StreamPool", "TickResult"]

Clock = Callable[[], float]
_LATENCY_WINDOW = 1024


class StreamPool:
    """Many streams of one model, stepped together in one batched call per tick.

    Make one with ``model.pool()`` or ``model.load_pool(path)``. Every method may be
    called from several threads; a tick is atomic. A call that raises changes no
    stream. ``clock`` (monotonic seconds) is injectable for tests. A large tick runs
    ``block_rows`` streams at a time (default: as many as keep the graph's tensors in
    the caches), with the outputs of one call, bit for bit.
    """

    def __init__(
        self,
        model: Model,
        *,
        clock: Clock = time.monotonic,
        capacity: int = 64,
        graph: GraphChoice = "auto",
        state_on_device: bool | None = None,
        block_rows: int | None = None,
    ) -> None:
        spec = model.spec
        if model.layout.batch_axis is None or any(s.batch_axis is None for s in spec.states):
            raise ValueError(
                "a StreamPool batches streams along the batch axis; this model's data input "
                "or a state has none (ModelIO batch_axis=None): use one Stream per key"
            )
        self.model = model
        self._clock = clock
        self._lock = threading.RLock()
        capacity = max(1, int(capacity))
        if block_rows is not None and (
            isinstance(block_rows, bool) or not isinstance(block_rows, int) or block_rows < 1
        ):
            raise ValueError(f"block_rows must be an int >= 1, got {block_rows!r}")
        self._store = make_store(model, capacity, graph, state_on_device, block_rows)
        self._table = SlotTable(self._store, capacity)
        self._steps_high = 0  # at least every open stream's step count
        self._ticks = 0
        self._stream_steps = 0
        self._rejected = 0
        self._expired = 0
        self._latencies = np.zeros(_LATENCY_WINDOW, np.float64)

    def __repr__(self) -> str:
        return f"StreamPool({len(self)} open streams, graph={self.graph!r}, model={self.model!r})"

    @property
    def state_on_device(self) -> bool:
        """Whether the states stay in device memory between ticks (CUDA pools)."""
        return isinstance(self._store, DeviceStates)

    @property
    def graph(self) -> str:
        """Which graph serves this pool's ticks: "step" or "sequence" (see ``model.pool``)."""
        return self._store.graph_name

    # -- membership --------------------------------------------------------------
    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._table

    def __len__(self) -> int:
        with self._lock:
            return len(self._table)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.keys())

    def keys(self) -> list[Any]:
        """The open streams' keys, in the order they were opened."""
        with self._lock:
            return list(self._table.slots)

    def missing(self, keys: Sequence[Any]) -> list[Any]:
        """The keys of ``keys`` that are not open (plain keys: one dict lookup each)."""
        keys = list(keys)
        with self._lock:
            return [k for k, ok in zip(keys, self._table.open_mask(keys), strict=True) if not ok]

    def open(self, key: Any) -> None:
        """Open a stream at the initial state. An open key raises ``ValueError``, a key
        of a refused type ``TypeError`` (a numpy integer means the equal int)."""
        self.open_many([canonical_key(key)])

    def open_many(self, keys: Sequence[Any]) -> None:
        """Open several streams at the initial state, in one pass (a million in about a
        second): all of them, or none (an open or repeated key raises ``ValueError``, a
        key of a refused type ``TypeError``)."""
        keys = key_list(keys)
        with self._lock:
            self._check_new(keys)
            self._table.open_many(keys, self._clock())

    def _check_new(self, keys: list[Any]) -> None:
        """``ValueError`` unless ``keys`` are distinct and none is open."""
        taken = [k for k, ok in zip(keys, self._table.open_mask(keys), strict=True) if ok]
        if taken:
            if len(keys) == 1:
                raise ValueError(f"stream {keys[0]!r} is already open")
            raise ValueError(f"streams already open: {taken[:20]!r}")
        if len(set(keys)) != len(keys):
            twice = [k for k, n in Counter(keys).items() if n > 1]
            raise ValueError(f"streams named twice: {twice[:20]!r}")

    def close(self, key: Any) -> None:
        """Close a stream; its slot is reused. An unknown key raises ``KeyError``."""
        self.close_many([key])

    def close_many(self, keys: Sequence[Any]) -> None:
        """Close several open streams: all of them, or (``KeyError`` naming the keys
        that are not open, ``ValueError`` for a key named twice) none."""
        keys = key_list(keys)
        with self._lock:
            missing = [k for k, ok in zip(keys, self._table.open_mask(keys), strict=True) if not ok]
            if missing:
                if len(keys) == 1:
                    raise KeyError(f"stream {keys[0]!r} is not open in this pool")
                raise KeyError(f"streams not open in this pool: {missing[:20]!r}")
            if len(set(keys)) != len(keys):
                raise ValueError(
                    f"streams named twice: {[k for k, n in Counter(keys).items() if n > 1][:20]!r}"
                )
            self._table.close_many(keys)

    def _slot_of(self, key: Any) -> int:
        """The slot of an open stream; ``TypeError`` for a key of a refused type,
        ``KeyError`` for one that is not open."""
        key = canonical_key(key)
        try:
            return self._table.slots[key]
        except KeyError:
            raise KeyError(f"stream {key!r} is not open in this pool") from None

    # -- ticks -------------------------------------------------------------------
    def step(self, samples: Mapping[Any, Any]) -> dict[Any, np.ndarray]:
        """Step every named stream by one sample in one batched call: ``{key: y}``.

        A key of a refused type (a float, a bool) raises ``TypeError``, a key that is
        not open ``KeyError``; bad samples raise ``ValueError`` naming every bad key and
        why. Either way no stream changes. Streams not named keep their state.
        """
        try:
            samples = canonical_samples(samples)
        except TypeError:
            with self._lock:
                self._rejected += len(samples) if isinstance(samples, Mapping) else 0
            raise
        keys, xs, rejected = check_samples(self.model.spec, samples)
        with self._lock:
            if rejected:  # an unknown key is reported before bad samples
                named = list(samples)
                mask = self._table.open_mask(named)
                unknown = [k for k, ok in zip(named, mask, strict=True) if not ok]
                if unknown:
                    self._rejected += len(unknown)
                    raise KeyError(f"streams not open in this pool: {unknown[:20]!r}")
                self._rejected += len(rejected)
                reasons = "; ".join(f"{k!r}: {why}" for k, why in rejected.items())
                raise ValueError(f"{len(rejected)} bad sample(s), no stream stepped: {reasons}")
            if not keys:
                return {}
            ys = self._tick(keys, xs)  # KeyError, naming them, for keys that are not open
        return dict(zip(keys, ys, strict=True))

    def step_valid(self, samples: Mapping[Any, Any]) -> TickResult:
        """Step the streams whose samples are good; return the rest with their reasons.

        Keys that are not open are rejected too (not raised), also when another thread
        closes them during the call. The operator's alternative to ``step``: one bad
        sensor never holds the fleet back, and nothing is silent. A key of a refused
        type is rejected with the reason (never as "not open").
        """
        samples, refused = split_refused(samples)
        keys, xs, rejected = check_samples(self.model.spec, samples)
        rejected.update(refused)
        with self._lock:
            keys, xs = drop_not_open(keys, xs, self._table.open_mask(keys), rejected)
            self._rejected += len(rejected)
            if not keys:
                return TickResult({}, rejected)
            ys = self._tick(keys, xs)
        return TickResult(dict(zip(keys, ys, strict=True)), rejected)

    def step_batch(self, keys: Sequence[Any], xs: Any) -> np.ndarray:
        """The fast path: ``keys`` (n,) and ``X`` (n, input_size) -> (n, output_size).

        Row i of the result is stream ``keys[i]``'s output. Keys must be open and
        distinct; a numpy integer array of keys means the equal ints, and is looked up
        without a Python-level loop. ``X`` is checked whole (shape, dtype, NaN/Inf)
        before anything runs.
        """
        named: list[Any] | np.ndarray | None = None
        try:
            named = tick_keys(keys)
            samples = check_batch(self.model.spec, named, xs)
        except (TypeError, ValueError):
            with self._lock:
                self._rejected += refused_rows(self.model.spec, named, xs)
            raise
        if not len(named):
            return np.zeros((0, *self._output_tail()), np.float32)
        return self._tick(named, samples)

    def _output_tail(self) -> tuple[int, ...]:
        size = self.model.spec.output_size
        return () if size is None else (size,)

    def _slots_of(self, keys: list[Any] | np.ndarray, check_distinct: bool) -> np.ndarray:
        """The keys' slots (under the lock); ``KeyError``/``ValueError`` naming the keys
        that are not open or named twice, each counted as rejected."""
        try:
            return self._table.resolve(keys, check_distinct)
        except (KeysNotOpen, KeysRepeated) as e:
            self._rejected += e.count
            raise

    def _tick(self, keys: list[Any] | np.ndarray, samples: np.ndarray) -> np.ndarray:
        """One tick. Keys are checked to be distinct even where they come from a
        mapping: a custom ``Mapping`` can list a key twice."""
        with self._lock:
            start = time.perf_counter()
            slots = self._slots_of(keys, check_distinct=True)
            if self._steps_high >= MAX_STEPS:  # only then is the exact check needed
                self._check_step_room(keys, slots)
            try:
                y = self._store.tick(slots, samples)
            except BlocksDone as e:
                self._count_steps(slots[: e.rows], start)
                stepped = keys_at(keys, np.arange(e.rows))
                raise PartialTickError(
                    f"onnxruntime failed in a tick of {len(keys):,} streams after the first "
                    f"{e.rows:,} had stepped (their step counts too; the others did not "
                    f"change): {e.__cause__!r:.300}",
                    stepped,
                ) from e.__cause__
            self._count_steps(slots, start)
        return y

    def _count_steps(self, slots: np.ndarray, start: float) -> None:
        """A tick's bookkeeping for the streams it stepped (under the lock)."""
        self._table.last_seen[slots] = self._clock()
        self._table.steps[slots] += 1
        self._steps_high += 1
        self._latencies[self._ticks % _LATENCY_WINDOW] = time.perf_counter() - start
        self._ticks += 1
        self._stream_steps += len(slots)

    def _check_step_room(self, keys: list[Any] | np.ndarray, slots: np.ndarray) -> None:
        """``ValueError`` naming the streams whose step count is at its maximum."""
        steps = self._table.steps
        full = np.flatnonzero(steps[slots] >= MAX_STEPS)
        if full.size:
            self._rejected += len(keys)
            named = keys_at(keys, full[:20])
            raise ValueError(
                f"streams {named!r} have run {MAX_STEPS:,} steps, the most a step count "
                f"holds: no stream stepped (restore them from a snapshot of fewer steps)"
            )
        open_slots = np.fromiter(self._table.slots.values(), np.int64, len(self._table))
        self._steps_high = int(steps[open_slots].max(initial=0))

    # -- one stream in or out ----------------------------------------------------
    def snapshot(self, key: Any) -> bytes:
        """One stream's state as ``Stream.snapshot()`` bytes (restorable by
        ``model.restore`` or another pool's ``restore``)."""
        with self._lock:
            slot = self._slot_of(key)
            rows = self._store.read(np.array([slot]))
            steps = int(self._table.steps[slot])
        return self.model.codec.encode({name: r[0] for name, r in rows.items()}, steps)

    def restore(self, key: Any, blob: bytes) -> None:
        """Open ``key`` from a snapshot. An open key raises ``ValueError``; a bad or
        foreign snapshot ``SnapshotError``."""
        key = canonical_key(key)
        state, steps = self.model.codec.decode(blob)
        with self._lock:
            if key in self._table.slots:
                raise ValueError(f"stream {key!r} is already open; close it before restoring")
            self._open_rows([key], self._clock(), np.array([steps]),
                            {name: value[None] for name, value in state.items()})  # fmt: skip

    def restore_many(self, blobs: Mapping[Any, bytes]) -> None:
        """Open several streams from their snapshots ``{key: bytes}``: all of them, or
        none (an open or repeated key ``ValueError``, a bad snapshot ``SnapshotError``,
        both before any opens)."""
        keys = key_list(list(blobs))
        decoded = [self.model.codec.decode(blob) for blob in blobs.values()]
        with self._lock:
            self._check_new(keys)
            if not keys:
                return
            states = {name: np.stack([s[name] for s, _ in decoded]) for name in decoded[0][0]}
            steps = np.array([n for _, n in decoded], np.int64)
            self._open_rows(keys, self._clock(), steps, states)

    def _open_rows(
        self,
        keys: list[Any],
        last_seen: float | np.ndarray,
        steps: np.ndarray,
        states: Mapping[str, np.ndarray],
    ) -> None:
        if len(steps) and not (steps.min() >= 0 and steps.max() <= MAX_STEPS):
            raise ValueError(f"a step count must be in [0, {MAX_STEPS}]")  # checked by callers
        self._table.open_many(keys, last_seen, steps, states)
        self._steps_high = max(self._steps_high, int(steps.max(initial=0)))

    def steps(self, key: Any) -> int:
        """Samples the stream has run since it was opened (kept by snapshots)."""
        with self._lock:
            return int(self._table.steps[self._slot_of(key)])

    def step_counts(self, keys: Sequence[Any]) -> np.ndarray:
        """The step counts of open, distinct ``keys`` (int64, in their order): after a
        tick of the same keys, one lookup for all of them."""
        named = tick_keys(keys)
        with self._lock:  # a query: a refused one counts no rejected samples
            return np.array(self._table.steps[self._table.resolve(named, check_distinct=True)])

    def state(self, key: Any) -> dict[str, np.ndarray]:
        """A copy of one stream's state, as ``Stream.state``."""
        with self._lock:
            slot = self._slot_of(key)
            return {
                name: rows[0].copy() for name, rows in self._store.read(np.array([slot])).items()
            }

    # -- expiry ------------------------------------------------------------------
    def idle_seconds(self, key: Any) -> float:
        """Seconds since the stream's last step (or its open, if never stepped)."""
        with self._lock:
            return float(self._clock() - self._table.last_seen[self._slot_of(key)])

    def expire(self, idle_seconds: float) -> dict[Any, bytes]:
        """Close the streams idle for at least ``idle_seconds``; return their final
        snapshots ``{key: bytes}``, so the application can persist or drop them."""
        check_idle_seconds(idle_seconds)
        with self._lock:
            table = self._table
            keys = list(table.slots)
            slots = np.fromiter(table.slots.values(), np.int64, len(keys))
            stale = np.flatnonzero(self._clock() - table.last_seen[slots] >= idle_seconds)
            gone = [keys[i] for i in stale.tolist()]
            out = {k: self.snapshot(k) for k in gone}
            table.close_many(gone)
            self._expired += len(gone)
        return out

    # -- files -------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write every stream (key, state, steps, idle time) to ``path`` atomically:
        the old file stays whole until the new one is complete."""
        atomic_write_bytes(path, self.to_bytes())

    def to_bytes(self) -> bytes:
        """What ``save`` writes: every stream, checksummed, tied to this model."""
        with self._lock:
            table = self._table
            keys = list(table.slots)
            slots = np.fromiter(table.slots.values(), np.int64, len(keys))
            states = self._store.read(slots)
            idle = self._clock() - table.last_seen[slots]
            steps = table.steps[slots]
        return poolfile.encode(self.model.spec.fingerprint, keys, states, steps, idle)

    @classmethod
    def load(
        cls,
        model: Model,
        path: str | os.PathLike[str],
        *,
        clock: Clock = time.monotonic,
        graph: GraphChoice = "auto",
        state_on_device: bool | None = None,
    ) -> StreamPool:
        """A pool from ``save``'s file; streams continue bit-exact. A corrupt,
        truncated or foreign file (another model's, even of the same shapes) raises
        ``SnapshotError``."""
        try:
            blob = read_regular(path)
        except NotARegularFile as e:
            raise SnapshotError(
                f"{path} is {e.kind}, expected a file written by StreamPool.save"
            ) from None
        return cls.from_bytes(
            model, blob, clock=clock, graph=graph, state_on_device=state_on_device,
            what=f"pool file {os.fspath(path)!r}",
        )  # fmt: skip

    @classmethod
    def from_bytes(
        cls,
        model: Model,
        blob: bytes,
        *,
        clock: Clock = time.monotonic,
        graph: GraphChoice = "auto",
        state_on_device: bool | None = None,
        what: str = "pool file",
        quote: bool = True,
    ) -> StreamPool:
        """A pool from ``to_bytes``' bytes (see ``load``). ``what`` names the bytes in
        messages; ``quote=False`` keeps the bytes' contents out of them."""
        file = poolfile.decode(model.spec, blob, what=what, quote=quote)
        n = len(file.keys)
        pool = cls(
            model, clock=clock, capacity=max(n, 64), graph=graph, state_on_device=state_on_device
        )
        if n:
            pool._open_rows(file.keys, clock() - file.idle, file.steps, file.states)
        return pool

    # -- monitoring --------------------------------------------------------------
    def stats(self) -> PoolStats:
        """Counters for the application's monitoring (cheap: no copy of the states)."""
        with self._lock:
            recent = self._latencies[: min(self._ticks, _LATENCY_WINDOW)] * 1e6
            p50, p99 = np.percentile(recent, [50, 99]) if len(recent) else (0.0, 0.0)
            return PoolStats(
                open_streams=len(self._table),
                capacity=self._table.capacity,
                ticks=self._ticks,
                stream_steps=self._stream_steps,
                rejected_samples=self._rejected,
                expired_streams=self._expired,
                tick_p50_us=float(p50),
                tick_p99_us=float(p99),
            )


def _is_a_fleet_pool(pool: StreamPool) -> FleetPool:
    return pool  # mypy checks here that StreamPool satisfies FleetPool (make lint)
