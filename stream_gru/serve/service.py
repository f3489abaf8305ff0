"""What ``stream-gru serve`` does, apart from HTTP: a pool of string-keyed streams behind
a ``Batcher``, opened on a key's first request (or resumed from the archive), expired
when idle, saved periodically and on shutdown, and administered by key.

Every change to the pool (a tick, an open, a restore, a close, an expiry sweep, a save)
runs on the batcher's one worker thread, in the order asked, so admin calls and saves
see the pool between two ticks. A request's samples are checked whole before its
stream is touched, and an HTTP request for a key waits for the previous request of that
key to finish, so one stream's requests run in the order they arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import BatcherClosedError, QueueFullError, ServeError, SnapshotError
from ..fleet.model import StreamingModel
from ..fleet.pool import StreamPool
from .archive import Archive, ExpiredKeys
from .batcher import Batcher
from .metrics import ServeMetrics
from .queue import RowsResult, not_finite

__all__ = ["ServeOptions", "StreamService", "StreamStatus", "Submitted"]

# How a request found its stream: "continued" (open), "opened" (new), "restarted"
# (sequence_start on an open stream), "resumed" (from the archive), "expired" (it had
# expired without an archive, so it starts afresh).
StreamStatus = Literal["continued", "opened", "restarted", "resumed", "expired"]


@dataclass(frozen=True)
class ServeOptions:
    """How ``stream-gru serve`` runs (its command line, one field per option)."""

    model_name: str
    max_delay: float = 0.002
    max_batch: int = 8192
    max_queue: int = 65_536
    max_streams: int = 1_000_000
    max_body_bytes: int = 8 << 20
    idle_timeout: float | None = None
    archive: Path | None = None
    state: Path | None = None
    save_every: float = 30.0
    require_start: bool = False


@dataclass(frozen=True)
class _Prepared:
    """How ``_prepare`` found a stream, and its bytes before (a restarted stream's
    snapshot, or the archived one it took) for an undo."""

    status: StreamStatus
    before: bytes | None = None


@dataclass(frozen=True)
class Submitted:
    """``StreamService.submit_rows``'s answer: the rows refused before they were queued
    (``errors``), the future of the queued rows' ``RowsResult`` (for the rows
    ``queued``, in that order), and how the streams that were not simply continued
    were found (``"opened"``, ``"resumed"``, ...)."""

    keys: list[str]
    future: asyncio.Future[RowsResult] | None
    errors: dict[int, Exception]
    statuses: dict[str, StreamStatus]
    queued: list[int] = field(default_factory=list)

    def arrays(self, tail: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, dict[int, Exception]]:
        """Once the future is done: every row's output and step count (zeros where it
        failed) and the failed rows' exceptions; ``tail``: an output's shape."""
        n = len(self.keys)
        outputs = np.zeros((n, *tail), np.float32)
        steps = np.zeros(n, np.int64)
        errors = dict(self.errors)
        if self.future is not None:
            result = self.future.result()
            queued = np.asarray(self.queued, np.int64)
            outputs[queued] = result.outputs
            steps[queued] = result.steps
            errors.update({self.queued[i]: e for i, e in result.errors.items()})
        return outputs, steps, errors


@dataclass
class _KeyLock:
    lock: asyncio.Lock
    users: int = 0


class StreamService:
    """The pool, its batcher, the archive and the background sweeps of one server."""

    def __init__(self, model: StreamingModel, options: ServeOptions) -> None:
        self.model = model
        self.options = options
        state = options.state
        self.pool: StreamPool = (
            model.load_pool(state) if state is not None and state.exists() else model.pool()
        )
        self.metrics = ServeMetrics(lambda: len(self.pool))
        self.batcher = Batcher(
            self.pool, max_delay=options.max_delay, max_batch=options.max_batch,
            max_queue=options.max_queue, on_tick=self.metrics.tick,
        )  # fmt: skip
        self.archive = Archive(options.archive) if options.archive is not None else None
        self.expired = ExpiredKeys(min(options.max_streams, 1_000_000))
        self.ready = False
        self._locks: dict[str, _KeyLock] = {}
        self._sweeps: list[asyncio.Task[None]] = []

    # -- lifetime -----------------------------------------------------------------------
    async def start(self) -> None:
        self.batcher.start()
        loop = asyncio.get_running_loop()
        if self.options.idle_timeout is not None:
            every = min(1.0, self.options.idle_timeout / 4)
            self._sweeps.append(loop.create_task(self._every(every, self.expire_idle)))
        if self.options.state is not None:
            self._sweeps.append(loop.create_task(self._every(self.options.save_every, self.save)))
        self.ready = True

    async def stop(self) -> None:
        """Run what is queued, then save the pool to ``--state`` (atomically)."""
        self.ready = False
        for task in self._sweeps:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.batcher.aclose()
        if self.options.state is not None:
            await asyncio.to_thread(self.pool.save, self.options.state)

    async def _every(self, seconds: float, job: Any) -> None:
        while True:
            await asyncio.sleep(seconds)
            with contextlib.suppress(BatcherClosedError, RuntimeError):
                await job()

    async def save(self) -> None:
        state = self.options.state
        if state is not None:
            await self.batcher.call(lambda: self.pool.save(state))

    async def expire_idle(self) -> None:
        """Close the streams idle for ``idle_timeout``, archiving their snapshots."""
        timeout = self.options.idle_timeout
        if timeout is None:
            return

        def sweep() -> int:
            gone = self.pool.expire(timeout)
            for key, blob in gone.items():
                if self.archive is not None:
                    self.archive.put(key, blob)
                else:
                    self.expired.add(key)
            return len(gone)

        self.metrics.expired.inc(await self.batcher.call(sweep))

    # -- streams ------------------------------------------------------------------------
    def _prepare(self, key: str, start: bool) -> _Prepared:
        """On the worker: make ``key`` ready for its samples; what it was before, so
        that a request refused after this (a full queue) can be undone."""
        pool = self.pool
        if key in pool:
            if not start:
                return _Prepared("continued")
            before = pool.snapshot(key)
            pool.close(key)
            pool.open(key)
            return _Prepared("restarted", before)
        archived = None
        if self.archive is not None and key in self.archive:
            archived = self.archive.path(key).read_bytes()
            if not start:
                self._room_for(key)
                try:
                    pool.restore(key, archived)
                except SnapshotError as e:
                    raise ServeError(
                        f"stream {key!r}: its archived state is unreadable ({e}); it stays "
                        f"in the archive", status=500, code="archive_unreadable",
                    ) from None  # fmt: skip
                self.archive.take(key)
                return _Prepared("resumed", archived)
        if self.options.require_start and not start:
            raise ServeError(
                f"stream {key!r} is not open: its first request must set sequence_start",
                status=400, code="not_started",
            )  # fmt: skip
        self._room_for(key)
        pool.open(key)
        if archived is not None and self.archive is not None:  # a new sequence: it is over
            self.archive.take(key)
        return _Prepared("expired" if self.expired.pop(key) else "opened", archived)

    def _undo(self, key: str, prepared: _Prepared) -> None:
        """On the worker: put ``key`` back as it was before ``_prepare``."""
        if prepared.status == "continued":
            return
        self._close_if_open(key)
        if prepared.status == "restarted" and prepared.before is not None:
            self.pool.restore(key, prepared.before)
        elif prepared.before is not None and self.archive is not None:
            self.archive.put(key, prepared.before)
        if prepared.status == "expired":
            self.expired.add(key)

    def _room_for(self, key: str) -> None:
        if len(self.pool) >= self.options.max_streams:
            self.metrics.reject("too_many_streams")
            raise ServeError(
                f"stream {key!r} would open stream {len(self.pool) + 1:,}, over --max-streams "
                f"{self.options.max_streams:,}", status=429, code="too_many_streams",
            )  # fmt: skip

    async def prepare(self, key: str, start: bool = False) -> _Prepared:
        """Open, resume or restart ``key`` as a request for it needs."""
        if not start and key in self.pool:  # the common case: no trip to the worker
            return _Prepared("continued")
        return await self.batcher.call(lambda: self._prepare(key, start))

    async def infer(
        self, key: str, samples: np.ndarray, *, start: bool = False, end: bool = False
    ) -> tuple[np.ndarray, int, StreamStatus]:
        """Step ``key`` by ``samples`` ``(T, *sample)``, in order: (outputs, the stream's
        step count after them, how the stream was found). ``end`` closes it after. A
        request refused for a full queue changes nothing: a stream it opened, resumed or
        restarted is put back as it was."""
        entry = self._locks.setdefault(key, _KeyLock(asyncio.Lock()))
        entry.users += 1
        try:
            async with entry.lock:
                self._check_room(len(samples))
                prepared = await self.prepare(key, start)
                try:
                    ys, steps = await self._feed(key, samples)
                except KeyError:  # expired between prepare and its tick: once more
                    prepared = await self.prepare(key, False)
                    ys, steps = await self._feed(key, samples)
                except ServeError:  # refused before any sample ran
                    await self.batcher.call(lambda: self._undo(key, prepared))
                    raise
                if prepared.status == "resumed":
                    self.metrics.resumed.inc()
                if end:
                    await self.batcher.call(lambda: self._close_if_open(key))
                return ys, steps, prepared.status
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[key]

    def _check_room(self, n: int) -> None:
        waiting, limit = self.batcher.waiting, self.options.max_queue
        if waiting + n > limit:
            self.metrics.reject("queue_full", n)
            raise ServeError(
                f"the queue holds {waiting:,} samples; {n:,} more would pass --max-queue "
                f"{limit:,}: try again shortly", status=503, code="queue_full",
            )  # fmt: skip

    async def _feed(self, key: str, samples: np.ndarray) -> tuple[np.ndarray, int]:
        try:
            if len(samples) == 1:
                y, steps = await self.batcher.step_counted(key, samples[0])
                return y[None], steps
            return await self.batcher.feed_counted(key, samples)
        except QueueFullError as e:
            self.metrics.reject("queue_full", len(samples))
            raise ServeError(str(e), status=503, code="queue_full") from None
        except BatcherClosedError as e:
            self.metrics.reject("closing", len(samples))
            raise ServeError(str(e), status=503, code="closing") from None

    def _close_if_open(self, key: str) -> None:
        if key in self.pool:
            self.pool.close(key)

    async def submit_rows(self, keys: list[str], xs: np.ndarray) -> Submitted:
        """A gateway's samples: row i of ``xs`` (float32 ``(n, *sample)``) for
        ``keys[i]`` (distinct). The finite rows' keys are made ready (opened or
        resumed) and the rows queued at once; a row that is not finite opens no stream,
        and rows refused for a full queue leave their streams as they were."""
        errors: dict[int, Exception] = {}
        finite = np.isfinite(xs.reshape(len(xs), -1)).all(axis=1)
        for row in np.flatnonzero(~finite).tolist():
            spec = self.model.spec
            errors[row] = not_finite(xs[row], spec.sample_shape, keys[row], spec.feature_names)
        good = [row for row in range(len(keys)) if row not in errors] if errors else None
        try:
            self._check_room(len(keys) - len(errors))
        except ServeError as e:
            return Submitted(
                keys, None, {**errors, **dict.fromkeys(good or range(len(keys)), e)}, {}
            )
        new = self.pool.missing(keys if good is None else [keys[row] for row in good])
        prepared: dict[str, _Prepared] = {}
        if new:
            row_of = {key: row for row, key in enumerate(keys)}
            for key, result in (await self.batcher.call(lambda: self._prepare_many(new))).items():
                if isinstance(result, Exception):
                    errors[row_of[key]] = result
                else:
                    prepared[key] = result
        if errors:
            good = [row for row in range(len(keys)) if row not in errors]
            queued_keys, queued_xs = [keys[row] for row in good], xs[good]
        else:
            good, queued_keys, queued_xs = list(range(len(keys))), keys, xs
        try:
            future = self.batcher.submit_rows(queued_keys, queued_xs, checked=True)
        except (QueueFullError, BatcherClosedError) as e:
            code = "queue_full" if isinstance(e, QueueFullError) else "closing"
            self.metrics.reject(code, len(good))
            refused = ServeError(str(e), status=503, code=code)

            def undo() -> None:
                for key, before in prepared.items():
                    self._undo(key, before)

            await self.batcher.call(undo)
            return Submitted(keys, None, {**errors, **dict.fromkeys(good, refused)}, {})
        statuses: dict[str, StreamStatus] = {
            k: p.status for k, p in prepared.items() if p.status != "continued"
        }
        resumed = sum(status == "resumed" for status in statuses.values())
        if resumed:
            self.metrics.resumed.inc(resumed)
        return Submitted(keys, future, errors, statuses, good)

    def _prepare_many(self, keys: list[str]) -> dict[str, _Prepared | Exception]:
        result: dict[str, _Prepared | Exception] = {}
        for key in keys:
            try:
                result[key] = self._prepare(key, False)
            except ServeError as e:
                result[key] = e
        return result

    # -- admin --------------------------------------------------------------------------
    async def info(self, key: str) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            if key not in self.pool:
                raise ServeError(f"stream {key!r} is not open", status=404, code="not_open")
            return {
                "key": key,
                "steps": self.pool.steps(key),
                "idle_seconds": self.pool.idle_seconds(key),
            }

        return await self.batcher.call(read)

    async def snapshot(self, key: str) -> bytes:
        def read() -> bytes:
            if key not in self.pool:
                raise ServeError(f"stream {key!r} is not open", status=404, code="not_open")
            return self.pool.snapshot(key)

        return await self.batcher.call(read)

    async def restore(self, key: str, blob: bytes) -> None:
        def write() -> None:
            if key in self.pool:
                raise ServeError(
                    f"stream {key!r} is open: close it (DELETE) before restoring it",
                    status=409, code="open",
                )  # fmt: skip
            try:
                self.model.restore(blob)
            except (SnapshotError, TypeError) as e:
                raise ServeError(str(e), status=400, code="bad_snapshot") from None
            self._room_for(key)
            self.pool.restore(key, blob)

        await self.batcher.call(write)

    async def close(self, key: str) -> None:
        def close() -> None:
            if key not in self.pool:
                raise ServeError(f"stream {key!r} is not open", status=404, code="not_open")
            self.pool.close(key)

        await self.batcher.call(close)


def default_model_name(path: str | os.PathLike[str]) -> str:
    """The model's name on the wire: the file's stem (``model.onnx`` -> ``model``)."""
    return Path(path).stem or "model"
