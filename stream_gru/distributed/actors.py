"""The driver's side of a ShardedPool's shards: one Ray actor each (``ray.remote(Shard)``),
its replay log and its last confirmed checkpoint.

``ShardActors.send`` gives each shard its operation, all at once, and waits for every
result. The operations that change a shard's streams go into its log; a checkpoint the
shard confirms ends the log. When an actor dies, a new one starts from the checkpoint
and replays the log (the operation in flight included), so each operation reaches the
shard at least once and changes its state exactly once. Where that cannot be done (the
restart fails, a shard refuses an operation the driver checked, a call is interrupted)
the driver no longer knows the shards' state: ``broken`` says why, and the pool refuses
every later call.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ShardError
from .messages import Checkpoint, Message, ReadStats, stepped_rows
from .shard import Recovery, Shard, ShardSettings, ShardStats

try:
    import ray
except ImportError as e:  # pragma: no cover - exercised where ray is absent
    from ..install import install_hint

    raise ImportError(f"stream_gru.distributed needs Ray: {install_hint('ray')}") from e

__all__ = ["ShardActors", "ShardHandle", "connect"]

# A shard's checkpoint as the driver keeps it: a file's path (checkpoint_dir), the pool
# file's bytes, or None (no streams yet).
Saved = str | bytes | None


@dataclass
class ShardHandle:
    """The driver's view of one shard."""

    actor: Any
    checkpoint: Saved = None
    checkpoint_streams: int = 0
    log: list[Message] = field(default_factory=list)
    stream_steps: int = 0
    busy_seconds: float = 0.0
    checkpoints: int = 0
    recoveries: int = 0
    capacity: int = 0  # the shard's slots, as last read


class ShardActors:
    """The shards of one pool: start, send, checkpoint, restart, stop."""

    def __init__(
        self,
        model_bytes: bytes,
        settings: ShardSettings,
        *,
        cpus_per_shard: float,
        restart_timeout: float,
        checkpoint_dir: Path | None,
        name: str,
    ) -> None:
        self.handles: dict[int, ShardHandle] = {}
        self.recoveries: list[Recovery] = []
        self.broken: str | None = None  # why the shards' state is unknown, once it is
        self.restart_timeout = restart_timeout
        self._settings = settings
        self._cpus = cpus_per_shard
        self._checkpoint_dir = checkpoint_dir
        self._name = name  # this pool's checkpoint files: ckpt-ID.NAME.N.pool
        self._model = ray.put(model_bytes)

    @property
    def ids(self) -> list[int]:
        return sorted(self.handles)

    def start(self, checkpoints: Mapping[int, bytes | None]) -> None:
        """Start shards and wait until each is up (at most ``restart_timeout``); where
        one cannot start, stop them all and raise ``ShardError``: nothing changed."""
        actors = {sid: self._new_actor(blob) for sid, blob in checkpoints.items()}
        try:
            ray.get([a.replay.remote([]) for a in actors.values()], timeout=self.restart_timeout)
        except (ray.exceptions.RayError, TimeoutError) as e:
            for actor in actors.values():
                _kill(actor)
            raise ShardError(
                f"{len(actors)} shard(s) could not start within {self.restart_timeout:g} s "
                f"(each asks for {self._cpus:g} CPUs; the cluster has "
                f"{_cluster_cpus():g}): {_reason(e)}"
            ) from None
        for sid, actor in actors.items():
            self.handles[sid] = ShardHandle(actor, checkpoint=checkpoints[sid])

    def stop(self, sid: int) -> None:
        """Stop one shard and drop its checkpoint."""
        handle = self.handles.pop(sid)
        _kill(handle.actor)
        _discard(handle.checkpoint)

    def shutdown(self) -> None:
        for sid in list(self.handles):
            self.stop(sid)
        self.broken = self.broken or "shutdown() was called"

    def send(
        self,
        ops: Mapping[int, Message],
        log: bool = True,
        then: Callable[[int, Any], list[Message]] | None = None,
    ) -> dict[int, Any]:
        """Send each shard its operation, all at once; each shard's result.

        ``log``: the operation goes into the shard's replay log (the default); else
        ``then(shard, result)`` gives what to log in its place once it succeeded. A
        shard whose actor died is restarted and its result comes from the replay. Any
        failure that leaves a shard's state unknown sets ``broken`` and raises
        ``ShardError``.
        """
        results: dict[int, Any] = {}
        failures: list[str] = []
        try:
            futures = {}
            for sid, op in ops.items():
                if log:
                    self.handles[sid].log.append(op)
                futures[sid] = self.handles[sid].actor.apply.remote(op)
            for sid, future in futures.items():
                try:
                    results[sid] = ray.get(future)
                except ray.exceptions.RayActorError:
                    try:
                        results[sid] = self._recover(sid, None if log else ops[sid])
                    except ShardError as e:
                        failures.append(str(e))
                        continue
                except ray.exceptions.RayError as e:  # refused: the driver's view is wrong
                    name = type(ops[sid]).__name__
                    failures.append(f"shard {sid} refused {name}: {_reason(e)}")
                    continue
                if then is not None:
                    self.handles[sid].log.extend(then(sid, results[sid]))
        except BaseException as e:  # Ctrl-C or a timeout: shards may have applied it
            names = sorted({type(op).__name__ for op in ops.values()})
            self.broken = f"a call was interrupted ({type(e).__name__}) while shards ran {names}"
            raise
        if failures:
            self.broken = "; ".join(failures)
            raise ShardError(self.broken)
        return results

    def shard_stats(self, streams: Mapping[int, int]) -> tuple[ShardStats, ...]:
        """Each shard's counters (``streams``: its open streams). Reads the shards'
        capacities first where the shards can answer; else the last ones read stand."""
        if self.broken is None and self.handles:
            with contextlib.suppress(ShardError):
                read = self.send(dict.fromkeys(self.handles, ReadStats()), log=False)
                for sid, pool_stats in read.items():
                    self.handles[sid].capacity = pool_stats.capacity
        return tuple(
            ShardStats(
                sid, streams.get(sid, 0), h.stream_steps, h.busy_seconds, h.checkpoints,
                h.recoveries,
            )
            for sid, h in sorted(self.handles.items())
        )  # fmt: skip

    def due(self, every: int) -> bool:
        """Whether some shard's log holds ``every`` operations: time to checkpoint."""
        return any(len(h.log) >= every for h in self.handles.values())

    def checkpoint(self, streams: Mapping[int, int]) -> None:
        """Checkpoint every shard (``streams``: each one's open streams, for the
        recovery report). A shard that cannot write its file keeps its log, with a
        warning, and tries again at the next checkpoint."""
        targets = {sid: self._checkpoint_path(sid) for sid in self.handles}
        done = self.send({sid: Checkpoint(path) for sid, path in targets.items()}, log=False)
        for sid, result in done.items():
            handle = self.handles[sid]
            if isinstance(result, OSError):  # e.g. a full disk: keep the log, retry later
                warnings.warn(
                    f"shard {sid} could not write its checkpoint ({result}); its replay log "
                    f"({len(handle.log)} operations) is kept and the checkpoint retried",
                    RuntimeWarning,
                    stacklevel=4,
                )
                continue
            _discard(handle.checkpoint)
            handle.checkpoint, handle.checkpoint_streams = result, streams.get(sid, 0)
            handle.log.clear()
            handle.checkpoints += 1

    def _checkpoint_path(self, sid: int) -> str | None:
        if self._checkpoint_dir is None:
            return None
        n = self.handles[sid].checkpoints + 1
        return str(self._checkpoint_dir / f"ckpt-{sid}.{self._name}.{n:08d}.pool")

    def _new_actor(self, checkpoint: Saved) -> Any:
        remote = _remote_shard().options(
            num_cpus=self._cpus, scheduling_strategy="SPREAD", max_restarts=0
        )
        return remote.remote(self._model, self._settings, checkpoint)

    def _recover(self, sid: int, unlogged: Message | None) -> Any:
        """Restart shard ``sid`` from its checkpoint and replay its log, then
        ``unlogged`` (an operation that is not kept in the log, like a checkpoint)."""
        handle = self.handles[sid]
        start = time.perf_counter()
        _kill(handle.actor)  # it is dead already: this only tidies up
        ops = [*handle.log, *([unlogged] if unlogged is not None else [])]
        actor = self._new_actor(handle.checkpoint)
        try:
            result = ray.get(actor.replay.remote(ops), timeout=self.restart_timeout)
        except (ray.exceptions.RayError, TimeoutError) as e:
            _kill(actor)
            raise ShardError(f"shard {sid} died and could not be restarted: {_reason(e)}") from e
        handle.actor = actor
        handle.recoveries += 1
        self.recoveries.append(
            Recovery(
                shard=sid,
                checkpoint_streams=handle.checkpoint_streams,
                replayed_ops=len(ops),
                replayed_stream_steps=stepped_rows(ops),
                seconds=time.perf_counter() - start,
            )
        )
        return result


def connect(address: str | None) -> None:
    """Join this process's Ray runtime, else the cluster at ``address``, else a new
    local one (never a cluster that happens to run on this machine)."""
    if ray.is_initialized():
        return
    if address is not None:
        ray.init(address=address)
    else:
        ray.init(address="local", include_dashboard=False)


_REMOTE: Any = None


def _remote_shard() -> Any:
    global _REMOTE
    if _REMOTE is None:
        _REMOTE = ray.remote(Shard)
    return _REMOTE


def _kill(actor: Any) -> None:
    with contextlib.suppress(Exception):
        ray.kill(actor)


def _discard(checkpoint: Saved) -> None:
    """Delete a superseded checkpoint file (bytes need nothing)."""
    if isinstance(checkpoint, str):
        with contextlib.suppress(OSError):
            Path(checkpoint).unlink(missing_ok=True)


def _reason(error: BaseException) -> str:
    """One readable line for a Ray error: the shard's own exception where there is one
    (not Ray's coloured remote traceback)."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"[:300]
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[-1] if lines else ''}"[:300]


def _cluster_cpus() -> float:
    resources = ray.cluster_resources()  # type: ignore[no-untyped-call]
    return float(resources.get("CPU", 0))
