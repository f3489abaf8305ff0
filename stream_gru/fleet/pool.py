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

import operator
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ..core.checks import MAX_STEPS
from ..core.model import Model
from ..errors import SnapshotError
from ..formats.files import NotARegularFile, atomic_write_bytes, read_regular
from . import poolfile
from .graphs import GraphChoice
from .interface import FleetPool
from .keys import (
    PLAIN_KEY_TYPES,
    canonical_key,
    canonical_samples,
    key_in,
    key_list,
    split_refused,
)
from .stores import DeviceStates, make_store
from .ticks import (
    PoolStats,
    TickResult,
    check_batch,
    check_idle_seconds,
    check_samples,
    refused_rows,
)

__all__ = ["PoolStats", "StreamPool", "TickResult"]

Clock = Callable[[], float]
_LATENCY_WINDOW = 1024


class StreamPool:
    """Many streams of one model, stepped together in one batched call per tick.

    Make one with ``model.pool()`` or ``model.load_pool(path)``. Every method may be
    called from several threads; a tick is atomic. A call that raises changes no
    stream. ``clock`` (monotonic seconds) is injectable for tests.
    """

    def __init__(
        self,
        model: Model,
        *,
        clock: Clock = time.monotonic,
        capacity: int = 64,
        graph: GraphChoice = "auto",
        state_on_device: bool | None = None,
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
        self._store = make_store(model, capacity, graph, state_on_device)
        self._last_seen = np.zeros(capacity, np.float64)
        self._steps = np.zeros(capacity, np.int64)
        self._slots: dict[Any, int] = {}
        # The slots of the last tick's keys, reused while no stream opened or closed:
        # a fleet usually ticks the same key list again and again.
        self._generation = 0
        self._recent: tuple[int, list[Any], np.ndarray] = (-1, [], np.zeros(0, np.int64))
        self._free: list[int] = list(range(capacity - 1, -1, -1))
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
            return key_in(self._slots, key)

    def __len__(self) -> int:
        with self._lock:
            return len(self._slots)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.keys())

    def keys(self) -> list[Any]:
        """The open streams' keys, in the order they were opened."""
        with self._lock:
            return list(self._slots)

    def missing(self, keys: Sequence[Any]) -> list[Any]:
        """The keys of ``keys`` that are not open (plain keys: one dict lookup each)."""
        keys = list(keys)
        with self._lock:
            return [k for k, ok in zip(keys, self._open_mask(keys), strict=True) if not ok]

    def open(self, key: Any) -> None:
        """Open a stream at the initial state. An open key raises ``ValueError``, a key
        of a refused type ``TypeError`` (a numpy integer means the equal int)."""
        key = canonical_key(key)
        with self._lock:
            if key in self._slots:
                raise ValueError(f"stream {key!r} is already open")
            self._open_slot(key, self._clock(), 0, None)

    def open_many(self, keys: Sequence[Any]) -> None:
        """Open several streams at the initial state: all of them, or none (an open or
        repeated key raises ``ValueError``, a key of a refused type ``TypeError``)."""
        keys = key_list(keys)
        with self._lock:
            taken = [k for k in keys if k in self._slots]
            if taken or len(set(keys)) != len(keys):
                raise ValueError(f"streams already open or named twice: {taken[:20]!r}")
            now, opened = self._clock(), []
            try:
                for key in keys:
                    self._open_slot(key, now, 0, None)
                    opened.append(key)
            except BaseException:
                for key in opened:
                    self.close(key)
                raise

    def close(self, key: Any) -> None:
        """Close a stream; its slot is reused. An unknown key raises ``KeyError``."""
        with self._lock:
            slot = self._slot_of(key)
            del self._slots[canonical_key(key)]
            self._free.append(slot)
            self._generation += 1

    def _slot_of(self, key: Any) -> int:
        """The slot of an open stream; ``TypeError`` for a key of a refused type,
        ``KeyError`` for one that is not open."""
        try:
            return self._slots[canonical_key(key)]
        except KeyError:
            raise KeyError(f"stream {key!r} is not open in this pool") from None

    def _open_slot(
        self, key: Any, last_seen: float, steps: int, state: Mapping[str, np.ndarray] | None
    ) -> int:
        if not 0 <= steps <= MAX_STEPS:  # checked by every caller: an invariant
            raise ValueError(f"a step count must be in [0, {MAX_STEPS}], got {steps}")
        if not self._free:
            self._grow()
        slot = self._free.pop()
        try:
            self._store.write(slot, state)
        except BaseException:
            self._free.append(slot)  # a call that raises changes nothing, slots included
            raise
        self._last_seen[slot] = last_seen
        self._steps[slot] = steps
        self._steps_high = max(self._steps_high, steps)
        self._slots[key] = slot
        self._generation += 1
        return slot

    def _grow(self) -> None:
        old = len(self._last_seen)
        new = old * 2
        self._store.grow(new)
        self._last_seen = np.concatenate([self._last_seen, np.zeros(new - old)])
        self._steps = np.concatenate([self._steps, np.zeros(new - old, np.int64)])
        self._free.extend(range(new - 1, old - 1, -1))

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
        keys, xs, rejected = self._check_samples(samples)
        with self._lock:
            if rejected:  # an unknown key is reported before bad samples
                named = list(samples)
                unknown = [k for k, ok in zip(named, self._open_mask(named), strict=True) if not ok]
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
        keys, xs, rejected = self._check_samples(samples)
        rejected.update(refused)
        with self._lock:
            still_open = self._open_mask(keys)
            if not all(still_open):
                rejected.update(
                    {k: "stream not open" for k, ok in zip(keys, still_open, strict=True) if not ok}
                )
                keys = [k for k, ok in zip(keys, still_open, strict=True) if ok]
                xs = xs[np.asarray(still_open, np.bool_)]
            self._rejected += len(rejected)
            if not keys:
                return TickResult({}, rejected)
            ys = self._tick(keys, xs)
        return TickResult(dict(zip(keys, ys, strict=True)), rejected)

    def step_batch(self, keys: Sequence[Any], xs: Any) -> np.ndarray:
        """The fast path: ``keys`` (n,) and ``X`` (n, input_size) -> (n, output_size).

        Row i of the result is stream ``keys[i]``'s output. Keys must be open and
        distinct (a numpy integer array of keys means the equal ints); ``X`` is checked
        whole (shape, dtype, NaN/Inf) before anything runs.
        """
        named: list[Any] | None = None
        try:
            named = keys = key_list(keys)
            samples = check_batch(self.model.spec, keys, xs)
        except (TypeError, ValueError):
            with self._lock:
                self._rejected += refused_rows(self.model.spec, named, xs)
            raise
        if not keys:
            return np.zeros((0, *self._output_tail()), np.float32)
        return self._tick(keys, samples, check_distinct=True)

    def _output_tail(self) -> tuple[int, ...]:
        size = self.model.spec.output_size
        return () if size is None else (size,)

    def _check_samples(
        self, samples: Mapping[Any, Any]
    ) -> tuple[list[Any], np.ndarray, dict[Any, str]]:
        return check_samples(self.model.spec, samples)

    def _open_mask(self, keys: list[Any]) -> list[bool]:
        """Which keys are open (under the lock); one C-level pass for plain key types."""
        if set(map(type, keys)) <= PLAIN_KEY_TYPES:
            return [k in self._slots for k in keys]
        return [key_in(self._slots, k) for k in keys]

    def _slots_of(self, keys: list[Any], check_distinct: bool) -> np.ndarray:
        """The keys' slots (under the lock); ``KeyError``/``ValueError`` naming the keys
        that are not open or named twice."""
        generation, recent_keys, recent_slots = self._recent
        if generation == self._generation and len(keys) == len(recent_keys):
            # The same key objects, or equal keys of plain types (for those, equal means
            # the same key): the slots checked when they were looked up still hold.
            if all(map(operator.is_, keys, recent_keys)):
                return recent_slots
            if set(map(type, keys)) <= PLAIN_KEY_TYPES and keys == recent_keys:
                return recent_slots
        # The keys are canonical here (key_list, canonical_samples): of accepted types.
        try:
            slots = np.fromiter(map(self._slots.__getitem__, keys), np.int64, len(keys))
        except (KeyError, TypeError):
            missing = [k for k in keys if not key_in(self._slots, k)]
            self._rejected += len(missing)
            raise KeyError(f"streams not open in this pool: {missing[:20]!r}") from None
        if check_distinct:
            seen = np.zeros(len(self._last_seen), np.bool_)
            seen[slots] = True
            if np.count_nonzero(seen) != len(keys):
                twice = [k for k, n in Counter(keys).items() if n > 1]
                self._rejected += len(keys) - int(np.count_nonzero(seen))
                raise ValueError(f"keys named more than once in one tick: {twice[:10]!r}")
        self._recent = (self._generation, list(keys), slots)  # distinct: checked, or dict keys
        return slots

    def _tick(
        self, keys: list[Any], samples: np.ndarray, check_distinct: bool = False
    ) -> np.ndarray:
        with self._lock:
            start = time.perf_counter()
            slots = self._slots_of(keys, check_distinct)
            if self._steps_high >= MAX_STEPS:  # only then is the exact check needed
                self._check_step_room(keys, slots)
            y = self._store.tick(slots, samples)
            self._last_seen[slots] = self._clock()
            self._steps[slots] += 1
            self._steps_high += 1
            self._latencies[self._ticks % _LATENCY_WINDOW] = time.perf_counter() - start
            self._ticks += 1
            self._stream_steps += len(keys)
        return y

    def _check_step_room(self, keys: list[Any], slots: np.ndarray) -> None:
        """``ValueError`` naming the streams whose step count is at its maximum."""
        full = np.flatnonzero(self._steps[slots] >= MAX_STEPS)
        if full.size:
            self._rejected += len(keys)
            named = [keys[i] for i in full[:20].tolist()]
            raise ValueError(
                f"streams {named!r} have run {MAX_STEPS:,} steps, the most a step count "
                f"holds: no stream stepped (restore them from a snapshot of fewer steps)"
            )
        self._steps_high = int(self._steps[list(self._slots.values())].max(initial=0))

    # -- one stream in or out ----------------------------------------------------
    def snapshot(self, key: Any) -> bytes:
        """One stream's state as ``Stream.snapshot()`` bytes (restorable by
        ``model.restore`` or another pool's ``restore``)."""
        with self._lock:
            slot = self._slot_of(key)
            rows = self._store.read(np.array([slot]))
            steps = int(self._steps[slot])
        return self.model.codec.encode({name: r[0] for name, r in rows.items()}, steps)

    def restore(self, key: Any, blob: bytes) -> None:
        """Open ``key`` from a snapshot. An open key raises ``ValueError``; a bad or
        foreign snapshot ``SnapshotError``."""
        key = canonical_key(key)
        state, steps = self.model.codec.decode(blob)
        with self._lock:
            if key in self._slots:
                raise ValueError(f"stream {key!r} is already open; close it before restoring")
            self._open_slot(key, self._clock(), steps, state)

    def steps(self, key: Any) -> int:
        """Samples the stream has run since it was opened (kept by snapshots)."""
        with self._lock:
            return int(self._steps[self._slot_of(key)])

    def step_counts(self, keys: Sequence[Any]) -> np.ndarray:
        """The step counts of open, distinct ``keys`` (int64, in their order): after a
        tick of the same keys, one lookup for all of them."""
        keys = key_list(keys)
        with self._lock:
            return np.array(self._steps[self._slots_of(keys, check_distinct=True)])

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
            return float(self._clock() - self._last_seen[self._slot_of(key)])

    def expire(self, idle_seconds: float) -> dict[Any, bytes]:
        """Close the streams idle for at least ``idle_seconds``; return their final
        snapshots ``{key: bytes}``, so the application can persist or drop them."""
        check_idle_seconds(idle_seconds)
        with self._lock:
            now = self._clock()
            stale = [
                k for k, slot in self._slots.items() if now - self._last_seen[slot] >= idle_seconds
            ]
            out = {k: self.snapshot(k) for k in stale}
            for k in stale:
                self.close(k)
            self._expired += len(stale)
        return out

    # -- files -------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write every stream (key, state, steps, idle time) to ``path`` atomically:
        the old file stays whole until the new one is complete."""
        atomic_write_bytes(path, self.to_bytes())

    def to_bytes(self) -> bytes:
        """What ``save`` writes: every stream, checksummed, tied to this model."""
        with self._lock:
            keys = list(self._slots)
            slots = np.fromiter(self._slots.values(), np.int64, len(keys))
            states = self._store.read(slots)
            idle = self._clock() - self._last_seen[slots]
            steps = self._steps[slots]
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
        now = clock()
        for i, key in enumerate(file.keys):
            state = {name: rows[i] for name, rows in file.states.items()}
            pool._open_slot(key, now - float(file.idle[i]), int(file.steps[i]), state)
        return pool

    # -- monitoring --------------------------------------------------------------
    def stats(self) -> PoolStats:
        """Counters for the application's monitoring (cheap: no copy of the states)."""
        with self._lock:
            recent = self._latencies[: min(self._ticks, _LATENCY_WINDOW)] * 1e6
            p50, p99 = np.percentile(recent, [50, 99]) if len(recent) else (0.0, 0.0)
            return PoolStats(
                open_streams=len(self._slots),
                capacity=len(self._last_seen),
                ticks=self._ticks,
                stream_steps=self._stream_steps,
                rejected_samples=self._rejected,
                expired_streams=self._expired,
                tick_p50_us=float(p50),
                tick_p99_us=float(p99),
            )


def _is_a_fleet_pool(pool: StreamPool) -> FleetPool:
    return pool  # mypy checks here that StreamPool satisfies FleetPool (make lint)
