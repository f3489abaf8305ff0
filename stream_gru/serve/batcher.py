"""``Batcher``: samples that arrive one by one, from any number of coroutines, stepped
together in ticks of a pool within a deadline.

    async with Batcher(pool, max_delay=0.002, max_batch=8192) as batcher:
        y = await batcher.step(key, x)
        ys = await batcher.feed(key, X)

A tick runs when ``max_batch`` samples wait, or when the oldest waiting sample has
waited ``max_delay`` seconds (the deadline runs from the oldest sample's arrival, not
from the last tick). Ticks run one at a time on one worker thread, so the event loop
never waits on onnxruntime; while a tick runs, samples keep queueing for the next. A
key's samples run in arrival order, one per tick: a key queued twice goes into
consecutive ticks.

Each sample is checked when it is given (shape, dtype, NaN/Inf, the key's type), so a
bad one raises in its own ``await`` and never reaches a tick; an unknown key raises
``KeyError`` there too (or, with ``open_unknown=True``, opens on its first sample). A
stream closed by someone else while its sample waits fails alone in its tick. The
queue holds at most ``max_queue`` samples: beyond it ``step`` raises
``QueueFullError`` at once. A cancelled ``await`` whose sample has not been taken into
a tick withdraws it: nothing changes. A sample already in a running tick is stepped
(the stream's state moves on) and its result dropped. ``aclose()``, or leaving the
``async with``, runs what is queued, then stops; samples given after that raise
``BatcherClosedError``.

Imports only the runtime (numpy, onnxruntime) and the standard library.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from ..core.checks import as_samples
from ..errors import BatcherClosedError, QueueFullError
from ..fleet.interface import FleetPool
from ..fleet.keys import canonical_key, split_refused
from ..fleet.ticks import check_samples

__all__ = ["Batcher", "TickReport"]

T = TypeVar("T")


@dataclass(frozen=True)
class TickReport:
    """What one tick did, for monitoring: its size, the seconds each of its samples
    waited in the queue, the seconds the tick itself took, and the samples it
    rejected (a stream closed while its sample waited, say)."""

    size: int
    waits: np.ndarray
    seconds: float
    rejected: int


@dataclass(eq=False)
class _Sample:
    key: Any
    x: np.ndarray
    future: asyncio.Future[tuple[np.ndarray, int]]
    arrived: float
    taken: bool = field(default=False)


class Batcher:
    """Ticks of ``pool`` (a ``StreamPool`` or ``ShardedPool``) from samples given one by
    one; see the module docstring. Use it from one event loop."""

    def __init__(
        self,
        pool: FleetPool,
        *,
        max_delay: float = 0.002,
        max_batch: int = 8192,
        max_queue: int = 65_536,
        open_unknown: bool = False,
        on_tick: Callable[[TickReport], None] | None = None,
    ) -> None:
        if not max_delay >= 0:
            raise ValueError(f"max_delay must be a number of seconds >= 0, got {max_delay!r}")
        for name, value in (("max_batch", max_batch), ("max_queue", max_queue)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.pool = pool
        self.max_delay = float(max_delay)
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.open_unknown = open_unknown
        self.on_tick = on_tick
        self._spec = pool.model.spec
        self._queue: collections.deque[_Sample] = collections.deque()
        self._wake = asyncio.Event()
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="stream-gru-tick")
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def __aenter__(self) -> Batcher:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def start(self) -> None:
        """Start ticking (``async with`` does it); needs a running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    @property
    def waiting(self) -> int:
        """Samples queued and not yet taken into a tick."""
        return len(self._queue)

    # -- giving samples -----------------------------------------------------------------
    async def step(self, key: Any, x: Any) -> np.ndarray:
        """The stream's output for one sample ``x`` (``(input_size,)``)."""
        y, _ = await self.step_counted(key, x)
        return y

    async def step_counted(self, key: Any, x: Any) -> tuple[np.ndarray, int]:
        """``(y, steps)``: the output, and the stream's step count after this sample."""
        key = self._check_key(key)
        sample = as_samples(
            x, self._spec.sample_shape, what="sample", feature_names=self._spec.feature_names
        )
        (future,) = self._enqueue(key, [sample])
        return await self._result(future)

    async def feed(self, key: Any, xs: Any) -> np.ndarray:
        """The outputs for a chunk ``X`` (``(T, input_size)``) of one stream, in order:
        its samples go into ``T`` consecutive ticks. The chunk is checked whole first;
        a sample that fails in its tick (the stream was closed meanwhile) raises here
        after the samples before it have run."""
        ys, _ = await self.feed_counted(key, xs)
        return ys

    async def feed_counted(self, key: Any, xs: Any) -> tuple[np.ndarray, int]:
        """``(Y, steps)``: the chunk's outputs and the stream's step count after it."""
        key = self._check_key(key)
        samples = as_samples(
            xs, self._spec.sample_shape, what="X", leading=("step",),
            feature_names=self._spec.feature_names,
        )  # fmt: skip
        if len(samples) == 0:
            tail = () if self._spec.output_size is None else (self._spec.output_size,)
            return np.zeros((0, *tail), np.float32), 0
        futures = self._enqueue(key, list(samples))
        try:
            results = [await self._result(f) for f in futures]
        finally:
            for f in futures:  # a failed or cancelled chunk withdraws what is left of it
                if not f.done():
                    f.cancel()
            self._withdraw_cancelled()
        return np.stack([y for y, _ in results]), results[-1][1]

    async def step_many(
        self, samples: Mapping[Any, Any]
    ) -> dict[Any, tuple[np.ndarray, int] | Exception]:
        """One sample for each of several streams (``{key: x}``, as a gateway sends
        them): ``{key: (y, steps)}``, or the exception of each sample that failed (a bad
        sample, an unknown key, a full queue). Cheaper than one ``step`` per sample: the
        samples are checked together and awaited as one."""
        submitted = self.submit_many(samples)
        futures = [f for f in submitted.values() if isinstance(f, asyncio.Future)]
        if futures:
            await asyncio.wait(futures)
        out: dict[Any, tuple[np.ndarray, int] | Exception] = {}
        for key, entry in submitted.items():
            if isinstance(entry, asyncio.Future):
                error = entry.exception()
                out[key] = entry.result() if error is None else error  # type: ignore[assignment]
            else:
                out[key] = entry
        return out

    def submit_many(
        self, samples: Mapping[Any, Any]
    ) -> dict[Any, asyncio.Future[tuple[np.ndarray, int]] | Exception]:
        """Queue one sample for each of several streams, now, without waiting: ``{key:
        future of (y, steps)}``, or the exception of each sample refused at once. Keys
        queued by one call keep their order against later calls."""
        if self._closing:
            raise BatcherClosedError("the batcher is closing: no new samples")
        samples, refused = split_refused(samples)
        keys, xs, rejected = check_samples(self._spec, samples)
        out: dict[Any, asyncio.Future[tuple[np.ndarray, int]] | Exception] = {}
        for key, why in refused.items():
            out[key] = TypeError(why)
        for key, why in rejected.items():
            out[key] = ValueError(why)
        good: list[Any] = []
        rows: list[np.ndarray] = []
        for key, x in zip(keys, xs, strict=True):
            if not self.open_unknown and key not in self.pool:
                out[key] = KeyError(f"stream {key!r} is not open in this pool")
            else:
                good.append(key)
                rows.append(x)
        if good:
            try:
                futures = self._enqueue_many(good, rows)
            except QueueFullError as e:
                out.update(dict.fromkeys(good, e))
            else:
                out.update(zip(good, futures, strict=True))
        return out

    async def call(self, function: Callable[[], T]) -> T:
        """Run ``function`` on the worker thread between two ticks (admin work on the
        pool: open, restore, snapshot, save, expire), in the order given."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, function)

    def _check_key(self, key: Any) -> Any:
        if self._closing:
            raise BatcherClosedError("the batcher is closing: no new samples")
        key = canonical_key(key)
        if not self.open_unknown and key not in self.pool:
            raise KeyError(f"stream {key!r} is not open in this pool")
        return key

    def _enqueue(
        self, key: Any, samples: list[np.ndarray]
    ) -> list[asyncio.Future[tuple[np.ndarray, int]]]:
        return self._enqueue_many([key] * len(samples), samples)

    def _enqueue_many(
        self, keys: list[Any], samples: list[np.ndarray]
    ) -> list[asyncio.Future[tuple[np.ndarray, int]]]:
        if len(self._queue) + len(samples) > self.max_queue:
            raise QueueFullError(
                f"the queue holds {len(self._queue):,} samples; {len(samples):,} more would "
                f"pass max_queue {self.max_queue:,}: try again shortly"
            )
        loop = asyncio.get_running_loop()
        now = time.perf_counter()
        futures = []
        for key, x in zip(keys, samples, strict=True):
            future: asyncio.Future[tuple[np.ndarray, int]] = loop.create_future()
            self._queue.append(_Sample(key, np.array(x, copy=True), future, now))
            futures.append(future)
        if len(self._queue) == len(samples) or len(self._queue) >= self.max_batch:
            self._wake.set()  # a first sample starts the deadline; a full batch ticks
        return futures

    async def _result(
        self, future: asyncio.Future[tuple[np.ndarray, int]]
    ) -> tuple[np.ndarray, int]:
        try:
            return await future
        except asyncio.CancelledError:
            self._withdraw_cancelled()
            raise

    def _withdraw_cancelled(self) -> None:
        if any(s.future.cancelled() for s in self._queue):
            self._queue = collections.deque(s for s in self._queue if not s.future.cancelled())

    # -- ticking ------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Run what is queued, then stop. Idempotent."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        self._worker.shutdown(wait=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            due = self._queue[0].arrived + self.max_delay - time.perf_counter()
            if due > 0 and len(self._queue) < self.max_batch and not self._closing:
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), due)
                continue
            tick = self._take()
            if not tick:
                continue
            started = time.perf_counter()
            keys = [s.key for s in tick]
            xs = np.stack([s.x for s in tick])
            try:
                ys, steps, failures = await loop.run_in_executor(self._worker, self._tick, keys, xs)
            except Exception as e:  # the whole tick failed: every sample learns why
                for s in tick:
                    if not s.future.done():
                        s.future.set_exception(e)
                continue
            for i, s in enumerate(tick):
                if s.future.done():  # cancelled while in the tick: its result is dropped
                    continue
                if i in failures:
                    s.future.set_exception(failures[i])
                else:
                    s.future.set_result((ys[i], int(steps[i])))
            if self.on_tick is not None:
                waits = np.array([started - s.arrived for s in tick])
                seconds = time.perf_counter() - started
                self.on_tick(TickReport(len(tick), waits, seconds, len(failures)))

    def _take(self) -> list[_Sample]:
        """The next tick: the oldest samples, at most one per key, at most
        ``max_batch``; the rest stay queued in order."""
        queue = self._queue
        n = min(len(queue), self.max_batch)
        head = [queue.popleft() for _ in range(n)]
        tick = [s for s in head if not s.future.done()]
        if len({s.key for s in tick}) == len(tick):
            for s in tick:
                s.taken = True
            return tick
        seen: set[Any] = set()
        chosen: list[_Sample] = []
        later: list[_Sample] = []
        for s in tick:
            (later if s.key in seen else chosen).append(s)
            seen.add(s.key)
        while queue and len(chosen) < self.max_batch:  # fill up from the rest, in order
            s = queue.popleft()
            if s.future.done():
                continue
            (later if s.key in seen else chosen).append(s)
            seen.add(s.key)
        queue.extendleft(reversed(later))
        for s in chosen:
            s.taken = True
        return chosen

    def _tick(
        self, keys: list[Any], xs: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, dict[int, Exception]]:
        """On the worker thread: step the tick, each sample failing alone."""
        pool = self.pool
        if self.open_unknown:
            for key in keys:
                if key not in pool:
                    pool.open(key)
        try:
            ys = pool.step_batch(keys, xs)
            return ys, pool.step_counts(keys), {}
        except KeyError:  # a stream closed while its sample waited: the others step
            result = pool.step_valid(dict(zip(keys, xs, strict=True)))
        failures: dict[int, Exception] = {}
        stepped = [k for k in keys if k in result.outputs]
        counts = dict(zip(stepped, pool.step_counts(stepped).tolist(), strict=True))
        size = self._spec.output_size
        ys = np.zeros((len(keys), *(() if size is None else (size,))), np.float32)
        steps = np.zeros(len(keys), np.int64)
        for i, key in enumerate(keys):
            if key in result.outputs:
                ys[i], steps[i] = result.outputs[key], counts[key]
            else:
                reason = result.rejected.get(key, "not stepped")
                error_type = KeyError if reason == "stream not open" else ValueError
                failures[i] = error_type(f"stream {key!r}: {reason}")
        return ys, steps, failures
