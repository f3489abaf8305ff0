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

A gateway relaying many devices gives one sample for each of many streams at once
(``submit_rows``/``step_rows``, or ``step_many`` with a mapping): the rows are checked
together, each bad row fails alone, and one future answers them all, so a frame of
thousands of samples costs a few Python objects, not thousands of futures.

Imports only the runtime (numpy, onnxruntime) and the standard library.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from ..core.checks import as_samples
from ..errors import BatcherClosedError, QueueFullError
from ..fleet.interface import FleetPool
from ..fleet.keys import canonical_key, key_list, split_refused
from ..fleet.ticks import check_samples
from .queue import Block, RowsResult, Sink, TickReport, not_finite

__all__ = ["Batcher", "RowsResult", "TickReport"]

T = TypeVar("T")


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
        size = self._spec.output_size
        self._tail = () if size is None else (size,)
        self._queue: collections.deque[Block] = collections.deque()
        self._waiting = 0  # samples in the queue
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
        return self._waiting

    # -- one stream ---------------------------------------------------------------------
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
        result = await self._await(self._enqueue([key], sample[None], chunk=True))
        return result.outputs[0], int(result.steps[0])

    async def feed(self, key: Any, xs: Any) -> np.ndarray:
        """The outputs for a chunk ``X`` (``(T, input_size)``) of one stream, in order:
        its samples go into ``T`` consecutive ticks. The chunk is checked whole first;
        a sample that fails in its tick (the stream was closed meanwhile) raises here
        after the samples before it have run, and the rest are withdrawn."""
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
            return np.zeros((0, *self._tail), np.float32), 0
        result = await self._await(self._enqueue([key] * len(samples), samples, chunk=True))
        return result.outputs, int(result.steps[-1])

    # -- many streams at once -------------------------------------------------------------
    async def step_rows(self, keys: Sequence[Any], xs: Any) -> RowsResult:
        """One sample for each of several distinct streams: row i of ``X`` for
        ``keys[i]``. A bad row, an unknown key or a key named twice fails alone (in
        ``errors``); the rest step."""
        return await self._await(self.submit_rows(keys, xs))

    def submit_rows(
        self, keys: Sequence[Any], xs: Any, *, checked: bool = False
    ) -> asyncio.Future[RowsResult]:
        """``step_rows`` without waiting: the rows are queued now (so calls keep their
        order), and the future answers when they have run. Raises (and queues nothing)
        for an ``X`` of the wrong shape or type, a full queue, or a closing batcher.
        ``checked``: the caller has checked the rows (finite) and the keys (canonical,
        distinct, open), so they are not checked again; a key closed meanwhile still
        fails alone in its tick."""
        if self._closing:
            raise BatcherClosedError("the batcher is closing: no new samples")
        shape = self._spec.sample_shape
        keys = list(keys)
        arr = as_samples(xs, shape, what="X", leading=("row",), check_finite=False)
        if len(arr) != len(keys):
            raise ValueError(f"X has {len(arr)} rows for {len(keys)} keys")
        if checked:
            return self._enqueue(keys, arr, chunk=False)
        errors: dict[int, Exception] = {}
        try:
            keys = key_list(keys)  # plain keys: one pass at C speed
        except TypeError:
            for row, key in enumerate(keys):
                try:
                    keys[row] = canonical_key(key)
                except TypeError as e:
                    errors[row] = e
        finite = np.isfinite(arr.reshape(len(arr), -1)).all(axis=1)
        pool = self.pool
        if (
            errors
            or not finite.all()
            or len(set(keys)) != len(keys)
            or not (self.open_unknown or not pool.missing(keys))
        ):
            seen: set[Any] = set()
            for row, key in enumerate(keys):
                if row in errors:
                    continue
                if key in seen:
                    errors[row] = ValueError(f"stream {key!r} is named twice in one call")
                elif not finite[row]:
                    errors[row] = not_finite(arr[row], shape, key, self._spec.feature_names)
                elif not self.open_unknown and key not in pool:
                    errors[row] = KeyError(f"stream {key!r} is not open in this pool")
                seen.add(key)
        return self._enqueue(keys, arr, chunk=False, errors=errors)

    async def step_many(
        self, samples: Mapping[Any, Any]
    ) -> dict[Any, tuple[np.ndarray, int] | Exception]:
        """``{key: x}`` for several streams: ``{key: (y, steps)}``, or the exception of
        each sample that failed (a bad sample, an unknown key, a full queue)."""
        if self._closing:
            raise BatcherClosedError("the batcher is closing: no new samples")
        samples, refused = split_refused(samples)
        keys, xs, rejected = check_samples(self._spec, samples)
        out: dict[Any, tuple[np.ndarray, int] | Exception] = {}
        out.update({k: TypeError(why) for k, why in refused.items()})
        out.update({k: ValueError(why) for k, why in rejected.items()})
        if keys:
            try:
                result = await self.step_rows(keys, xs)
            except QueueFullError as e:
                result = RowsResult(
                    xs[:0], np.zeros(0, np.int64), dict.fromkeys(range(len(keys)), e)
                )
            for row, key in enumerate(keys):
                error = result.errors.get(row)
                out[key] = (
                    error if error is not None else (result.outputs[row], int(result.steps[row]))
                )
        return out

    async def call(self, function: Callable[[], T]) -> T:
        """Run ``function`` on the worker thread between two ticks (admin work on the
        pool: open, restore, snapshot, save, expire), in the order given."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, function)

    # -- the queue ------------------------------------------------------------------------
    def _check_key(self, key: Any) -> Any:
        if self._closing:
            raise BatcherClosedError("the batcher is closing: no new samples")
        key = canonical_key(key)
        if not self.open_unknown and key not in self.pool:
            raise KeyError(f"stream {key!r} is not open in this pool")
        return key

    def _enqueue(
        self,
        keys: list[Any],
        xs: np.ndarray,
        *,
        chunk: bool,
        errors: dict[int, Exception] | None = None,
    ) -> asyncio.Future[RowsResult]:
        errors = errors or {}
        queued = len(keys) - len(errors)
        if self._waiting + queued > self.max_queue:
            raise QueueFullError(
                f"the queue holds {self._waiting:,} samples; {queued:,} more would "
                f"pass max_queue {self.max_queue:,}: try again shortly"
            )
        future: asyncio.Future[RowsResult] = asyncio.get_running_loop().create_future()
        sink = Sink(future, len(keys), self._tail, chunk)
        sink.errors.update(errors)
        sink.remaining = queued
        if queued == 0:
            future.set_result(RowsResult(sink.outputs, sink.steps, sink.errors))
            return future
        rows = np.arange(len(keys))
        if errors:
            rows = np.setdiff1d(rows, np.fromiter(errors, np.int64, len(errors)))
        xs = np.array(xs[rows], dtype=np.float32)  # a copy: the caller may change its array
        now = time.perf_counter()
        size = 1 if chunk else self.max_batch  # a chunk's samples go into consecutive ticks
        for start in range(0, len(rows), size):
            part = rows[start : start + size]
            block_keys = [keys[r] for r in part.tolist()] if errors or size == 1 or start else keys
            self._queue.append(Block(block_keys, xs[start : start + size], part, now, sink))
        was_empty = self._waiting == 0
        self._waiting += queued
        if was_empty or self._waiting >= self.max_batch:
            self._wake.set()  # a first sample starts the deadline; a full batch ticks
        return future

    async def _await(self, future: asyncio.Future[RowsResult]) -> RowsResult:
        try:
            return await future
        except asyncio.CancelledError:
            self._withdraw()
            raise
        finally:
            if future.done() and not future.cancelled() and future.exception() is not None:
                self._withdraw()  # a failed chunk: its other samples leave the queue

    def _withdraw(self) -> None:
        """Drop the samples of calls that are over (cancelled, or a failed chunk)."""
        if any(b.sink.future.done() for b in self._queue):
            self._queue = collections.deque(b for b in self._queue if not b.sink.future.done())
            self._waiting = sum(len(b.keys) for b in self._queue)

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
            if due > 0 and self._waiting < self.max_batch and not self._closing:
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), due)
                continue
            tick = self._take()
            if not tick:
                continue
            started = time.perf_counter()
            if len(tick) == 1:
                keys, xs = tick[0].keys, tick[0].xs
            else:
                keys = [k for block in tick for k in block.keys]
                xs = np.concatenate([block.xs for block in tick])
            try:
                ys, steps, failures = await loop.run_in_executor(self._worker, self._tick, keys, xs)
            except Exception as e:  # the whole tick failed: every sample learns why
                for block in tick:
                    block.sink.fail(block.rows, e)
                continue
            offset = 0
            for block in tick:
                n = len(block.keys)
                mine = {i - offset: e for i, e in failures.items() if offset <= i < offset + n}
                block.sink.done(
                    block.rows, ys[offset : offset + n], steps[offset : offset + n], mine
                )
                offset += n
            if self.on_tick is not None:
                arrived = np.concatenate([np.full(len(b.keys), b.arrived) for b in tick])
                seconds = time.perf_counter() - started
                self.on_tick(TickReport(len(keys), started - arrived, seconds, len(failures)))

    def _take(self) -> list[Block]:
        """The next tick: the oldest blocks whose keys are not in it yet, nor in an older
        block still waiting, up to ``max_batch`` samples; the rest stay in order."""
        queue = self._queue
        tick: list[Block] = []
        in_tick: set[Any] = set()
        held: set[Any] = set()  # keys of older blocks that wait: theirs come first
        later: list[Block] = []
        size = 0
        while queue and size < self.max_batch:
            block = queue.popleft()
            if block.sink.future.done():
                self._waiting -= len(block.keys)
                continue
            n = len(block.keys)
            if size + n > self.max_batch or block.overlaps(in_tick) or block.overlaps(held):
                later.append(block)
                block.add_keys_to(held)
                if len(later) > 4096:  # far enough ahead: the rest waits for the next tick
                    break
                continue
            tick.append(block)
            block.add_keys_to(in_tick)
            size += n
        queue.extendleft(reversed(later))
        self._waiting -= size
        return tick

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
