"""ShardedPool: one fleet of streams spread over Ray actors, each a shard with its own
``StreamPool`` and session.

The driver (this process) routes each key to its shard by consistent hashing
(``hash_ring.py``), checks every tick's samples before any shard sees them (so a bad
tick changes no stream anywhere), sends each shard one batched call per tick, all in
parallel, and puts the results back in the caller's order. A stream's outputs are bit
for bit those of a single local ``StreamPool``: a row's result never depends on the
rest of its batch.

Recovery. Every ``checkpoint_every`` ticks each shard writes its pool (the pool-file
format, atomically) to ``checkpoint_dir``, or, without one, hands the bytes to the
driver, which keeps them. The driver logs every operation sent to a shard since its
last confirmed checkpoint. When a shard's actor dies, the driver starts a new one from
that checkpoint and replays the log, so each operation reaches the shard at least once
and changes its state exactly once. The guarantees, and what they do not cover, are in
README.md ("Past one machine").

Needs the ``ray`` extra (``pip install stream-gru[ray]``); ``import stream_gru`` never
imports this module.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np

from .checks import as_samples
from .errors import SnapshotError, StreamGRUError
from .files import atomic_write_bytes
from .hash_ring import HashRing, hash64
from .pool import (
    _PLAIN_KEY_TYPES,
    StreamPool,
    _non_finite_rows,
    check_key,
    check_samples,
    key_token,
)
from .runtime import StreamingModel, load_bytes
from .session import SessionOptions
from .spec import ModelIO

try:
    import ray
except ImportError as e:  # pragma: no cover - exercised where ray is absent
    raise ImportError("stream_gru.distributed needs Ray: pip install 'stream-gru[ray]'") from e

__all__ = ["Recovery", "ShardError", "ShardStats", "ShardedPool"]

MANIFEST = "sharded-pool.json"
_MANIFEST_FORMAT = 1

# An operation as the driver logs and a shard applies it: (name, *arguments).
Op = tuple[Any, ...]


class ShardError(StreamGRUError):
    """A shard could not be reached or restarted."""


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


F = TypeVar("F", bound=Callable[..., Any])


def _locked(method: F) -> F:
    """Run a ShardedPool method under its lock: calls from several threads take turns."""

    @functools.wraps(method)
    def locked(self: ShardedPool, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return cast(F, locked)


# -- the shard: an actor holding one StreamPool -------------------------------------------
class Shard:
    """What runs in each Ray actor (``ray.remote(Shard)``); the driver calls ``apply``."""

    def __init__(self, model_bytes: bytes, settings: _Settings, checkpoint: Any) -> None:
        self.model = load_bytes(model_bytes, options=settings.session, io=settings.io)
        graph = settings.graph
        blob = _read_checkpoint(checkpoint)
        self.pool = (
            StreamPool.from_bytes(self.model, blob, graph=graph, what="shard checkpoint")
            if blob is not None
            else self.model.pool(graph=graph)
        )

    def apply(self, op: Op) -> Any:
        """Apply one operation; return its result (tick outputs, snapshots, ...)."""
        name, *args = op
        pool = self.pool
        if name == "step":
            keys, xs = args
            start = time.perf_counter()
            ys = pool.step_batch(keys, xs)
            return ys, time.perf_counter() - start
        if name == "open":
            for key in args[0]:
                pool.open(key)
            return None
        if name == "close":
            for key in args[0]:
                pool.close(key)
            return None
        if name == "restore":
            for key, blob in zip(args[0], args[1], strict=True):
                pool.restore(key, blob)
            return None
        if name == "snapshot":
            return [pool.snapshot(key) for key in args[0]]
        if name == "take":  # snapshots of the keys, which then close: a move's first half
            blobs = [pool.snapshot(key) for key in args[0]]
            for key in args[0]:
                pool.close(key)
            return blobs
        if name == "expire":
            return pool.expire(args[0])
        if name == "checkpoint":  # -> the path written, or the bytes
            blob = pool.to_bytes()
            if args[0] is None:
                return blob
            atomic_write_bytes(args[0], blob)
            return args[0]
        if name == "len":
            return len(pool)
        raise ValueError(f"unknown shard operation {name!r}")

    def replay(self, ops: Sequence[Op]) -> Any:
        """Apply ``ops`` in order; the last one's result."""
        result = None
        for op in ops:
            result = self.apply(op)
        return result


def _read_checkpoint(checkpoint: Any) -> bytes | None:
    if checkpoint is None or isinstance(checkpoint, bytes):
        return checkpoint
    return Path(checkpoint).read_bytes()


@dataclass(frozen=True)
class _Settings:
    """How every shard loads the model and runs its pool."""

    session: SessionOptions
    graph: str
    io: ModelIO | None


@dataclass
class _Handle:
    """The driver's view of one shard."""

    actor: Any
    checkpoint: Any = None  # a path (checkpoint_dir) or bytes; None: empty
    checkpoint_streams: int = 0
    log: list[Op] = field(default_factory=list)
    stream_steps: int = 0
    busy_seconds: float = 0.0
    checkpoints: int = 0
    recoveries: int = 0


# -- the driver ---------------------------------------------------------------------------
class ShardedPool:
    """A ``StreamPool`` spread over Ray actors, with the pool's interface.

    ``model_path`` is read here and sent to each shard, so the workers need no copy of
    the file. Joins the Ray runtime already initialized in this process, else connects
    to ``address``, else starts a local one (``ray.init()``). Shards reserve
    ``cpus_per_shard`` CPUs each (default 0, so any number of shards fits; Ray spreads
    them over the cluster's nodes).
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        shards: int = 2,
        address: str | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        *,
        checkpoint_every: int = 100,
        graph: str = "auto",
        provider: str = "auto",
        threads: int = 1,
        io: ModelIO | None = None,
        cpus_per_shard: float = 0,
        replicas: int = 128,
        _checkpoints: Mapping[int, Any] | None = None,
    ) -> None:
        if shards < 1:
            raise ValueError(f"shards must be at least 1, got {shards}")
        if checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be at least 1, got {checkpoint_every}")
        self.model_path = Path(model_path)
        self._model_bytes = self.model_path.read_bytes()
        self._settings = _Settings(
            SessionOptions(provider=provider, threads=threads), graph=graph, io=io
        )
        # The driver's own copy checks samples and snapshots; it never steps a stream.
        self.model: StreamingModel = load_bytes(
            self._model_bytes, source=str(self.model_path), options=SessionOptions("cpu"), io=io
        )
        _connect(address)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        if self.checkpoint_dir is not None:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_every = checkpoint_every
        self._cpus = cpus_per_shard
        self._lock = threading.RLock()  # one call at a time reaches the shards
        self.moved_keys = 0  # by the last add_shard / remove_shard
        self._generation = 0  # moves on whenever a key opens, closes or moves
        self._recent: tuple[int, list[Any], dict[int, tuple[np.ndarray, list[Any]]]] = (
            -1, [], {},
        )  # fmt: skip
        self._ref = ray.put(self._model_bytes)
        self._ring = HashRing(replicas=replicas)
        self._shards: dict[int, _Handle] = {}
        self._owner: dict[Any, int] = {}
        self._hash: dict[Any, int] = {}
        self._ticks = 0
        self._tick_seconds: list[float] = []
        self.recoveries: list[Recovery] = []
        start = dict(_checkpoints) if _checkpoints else dict.fromkeys(range(shards))
        for sid, checkpoint in start.items():
            self._start_shard(sid, checkpoint)
        self._next_id = max(start) + 1

    def __repr__(self) -> str:
        return f"ShardedPool({len(self)} streams on {len(self._shards)} shards, {self.model!r})"

    # -- membership ------------------------------------------------------------------
    def __contains__(self, key: object) -> bool:
        try:
            return key in self._owner and _plain_key(key)
        except TypeError:
            return False

    def __len__(self) -> int:
        return len(self._owner)

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._owner))

    @property
    def shards(self) -> list[int]:
        """The shards' ids."""
        return sorted(self._shards)

    def shard_of(self, key: Any) -> int:
        """The shard that holds ``key``."""
        if key not in self:
            raise KeyError(f"stream {key!r} is not open in this pool")
        return self._owner[key]

    def open(self, key: Any) -> None:
        """Open a stream at the initial state on its shard."""
        self.open_many([key])

    @_locked
    def open_many(self, keys: Sequence[Any]) -> None:
        """Open several streams, one call per shard. An open or repeated key raises
        ``ValueError`` and opens none."""
        keys = list(keys)
        for key in keys:
            check_key(key)
        taken = [k for k in keys if k in self._owner]
        if taken or len(set(keys)) != len(keys):
            raise ValueError(f"streams already open or named twice: {taken[:20]!r}")
        hashes = [hash64(key_token(k)) for k in keys]
        groups: dict[int, list[Any]] = {}
        for key, h in zip(keys, hashes, strict=True):
            groups.setdefault(self._ring.owner(h), []).append(key)
        self._run({sid: ("open", part) for sid, part in groups.items()})
        for key, h in zip(keys, hashes, strict=True):
            self._owner[key], self._hash[key] = self._ring.owner(h), h
        self._generation += 1

    @_locked
    def close(self, key: Any) -> None:
        """Close a stream. An unknown key raises ``KeyError``."""
        sid = self.shard_of(key)
        self._run({sid: ("close", [key])})
        del self._owner[key], self._hash[key]
        self._generation += 1

    # -- ticks -----------------------------------------------------------------------
    @_locked
    def step(self, samples: Mapping[Any, Any]) -> dict[Any, np.ndarray]:
        """Step every named stream by one sample: ``{key: y}`` in the caller's order.
        An unknown key raises ``KeyError``, a bad sample ``ValueError`` naming every
        bad key; either way no stream on any shard changes."""
        keys, xs, rejected = check_samples(self.model.spec, samples)
        if rejected:  # an unknown key is reported before bad samples
            self._route(list(samples), check_distinct=False)
            reasons = "; ".join(f"{k!r}: {why}" for k, why in rejected.items())
            raise ValueError(f"{len(rejected)} bad sample(s), no stream stepped: {reasons}")
        return dict(zip(keys, self._tick(keys, xs), strict=True))

    @_locked
    def step_batch(self, keys: Sequence[Any], xs: Any) -> np.ndarray:
        """``keys`` (n,) and ``X`` (n, input_size) -> (n, output_size), row i for
        ``keys[i]``; keys open and distinct, ``X`` checked whole before any shard runs."""
        keys = list(keys)
        spec = self.model.spec
        try:
            samples = as_samples(
                xs, spec.sample_shape, what="X", leading=("stream",),
                feature_names=spec.feature_names,
            )  # fmt: skip
        except ValueError as e:
            bad = _non_finite_rows(xs, len(keys), spec.sample_shape)
            if not bad:
                raise
            named = ", ".join(repr(keys[i]) for i in bad[:20])
            raise ValueError(
                f"{len(bad)} bad sample(s), no stream stepped: not finite for {named} (first: {e})"
            ) from None
        if samples.shape[0] != len(keys):
            raise ValueError(f"X has {samples.shape[0]} rows for {len(keys)} keys")
        return self._tick(keys, samples, check_distinct=True)

    def _route(
        self, keys: list[Any], check_distinct: bool
    ) -> dict[int, tuple[np.ndarray, list[Any]]]:
        """Each shard's rows of the tick and their keys. ``KeyError`` naming the keys
        that are not open, ``ValueError`` naming those named twice. A fleet usually
        ticks the same keys again and again: while no stream opened, closed or moved,
        an equal key list reuses the last tick's routing."""
        generation, recent_keys, recent = self._recent
        plain = set(map(type, keys)) <= _PLAIN_KEY_TYPES  # 1.0 and True never match 1
        if generation == self._generation and plain and keys == recent_keys:
            return recent
        try:
            if not plain and not all(map(_plain_key, keys)):
                raise KeyError
            owners = np.fromiter(map(self._owner.__getitem__, keys), np.int64, len(keys))
        except (KeyError, TypeError):
            unknown = [k for k in keys if k not in self]
            raise KeyError(f"streams not open in this pool: {unknown[:20]!r}") from None
        if check_distinct and len(set(keys)) != len(keys):
            twice = [k for k, n in Counter(keys).items() if n > 1]
            raise ValueError(f"keys named more than once in one tick: {twice[:10]!r}")
        routes = {}
        for sid in np.unique(owners).tolist():
            rows = np.flatnonzero(owners == sid)
            routes[sid] = (rows, [keys[i] for i in rows.tolist()])
        if plain:
            self._recent = (self._generation, keys, routes)
        return routes

    def _tick(self, keys: list[Any], xs: np.ndarray, check_distinct: bool = False) -> np.ndarray:
        routes = self._route(keys, check_distinct)
        if not keys:
            return np.zeros((0, *self._output_tail()), np.float32)
        start = time.perf_counter()
        results = self._run({sid: ("step", part, xs[rows]) for sid, (rows, part) in routes.items()})
        out = np.empty((len(keys), *self._output_tail()), np.float32)
        for sid, (ys, busy) in results.items():
            rows = routes[sid][0]
            out[rows] = ys
            handle = self._shards[sid]
            handle.stream_steps += len(rows)
            handle.busy_seconds += busy
        self._ticks += 1
        self._tick_seconds.append(time.perf_counter() - start)
        if self._ticks % self.checkpoint_every == 0:
            self.checkpoint()
        return out

    def _output_tail(self) -> tuple[int, ...]:
        size = self.model.spec.output_size
        return () if size is None else (size,)

    # -- one stream in or out, expiry --------------------------------------------------
    @_locked
    def snapshot(self, key: Any) -> bytes:
        """One stream's state as ``Stream.snapshot()`` bytes."""
        sid = self.shard_of(key)
        (blob,) = self._run({sid: ("snapshot", [key])}, log=False)[sid]
        return blob  # type: ignore[no-any-return]

    @_locked
    def restore(self, key: Any, blob: bytes) -> None:
        """Open ``key`` from a snapshot, on its shard."""
        check_key(key)
        if key in self._owner:
            raise ValueError(f"stream {key!r} is already open; close it before restoring")
        self.model.restore(blob)  # SnapshotError here, for a bad or foreign snapshot
        h = hash64(key_token(key))
        sid = self._ring.owner(h)
        self._run({sid: ("restore", [key], [blob])})
        self._owner[key], self._hash[key] = sid, h
        self._generation += 1

    @_locked
    def expire(self, idle_seconds: float) -> dict[Any, bytes]:
        """Close the streams idle for at least ``idle_seconds`` on every shard; return
        their snapshots. Idle time is measured by each shard's clock."""
        if not idle_seconds >= 0:
            raise ValueError(f"idle_seconds must be a non-negative number, got {idle_seconds!r}")
        gone = self._run({sid: ("expire", float(idle_seconds)) for sid in self._shards}, log=False)
        out: dict[Any, bytes] = {}
        for sid, blobs in gone.items():
            if blobs:  # logged as the closes they were, so a replay does not depend on time
                self._shards[sid].log.append(("close", list(blobs)))
            for key in blobs:
                del self._owner[key], self._hash[key]
            self._generation += 1
            out.update(blobs)
        return out

    # -- rebalancing -------------------------------------------------------------------
    @_locked
    def add_shard(self) -> int:
        """Start a new shard and move to it exactly the keys the ring now gives it.
        Returns its id."""
        sid = self._next_id
        self._next_id += 1
        self._start_shard(sid, None)
        self._move_keys()
        return sid

    @_locked
    def remove_shard(self, shard: int | None = None) -> int:
        """Move a shard's keys to their new owners and stop it (default: the newest).
        Returns its id."""
        if len(self._shards) == 1:
            raise ValueError("cannot remove the last shard")
        sid = max(self._shards) if shard is None else shard
        if sid not in self._shards:
            raise ValueError(f"no shard {sid}; shards: {self.shards}")
        self._ring.remove(sid)
        self._move_keys()
        handle = self._shards.pop(sid)
        ray.kill(handle.actor)
        _discard(handle.checkpoint)
        return sid

    def _move_keys(self) -> None:
        """Move every key whose owner changed: snapshots out of the old shards, into
        the new ones, in one call per shard each way."""
        moves: dict[tuple[int, int], list[Any]] = {}
        for key, old in self._owner.items():
            new = self._ring.owner(self._hash[key])
            if new != old:
                moves.setdefault((old, new), []).append(key)
        outgoing: dict[int, list[Any]] = {}
        for (old, _), keys in moves.items():
            outgoing.setdefault(old, []).extend(keys)
        taken = self._run({old: ("take", keys) for old, keys in outgoing.items()}, log=False)
        for old, keys in outgoing.items():
            self._shards[old].log.append(("close", keys))
        blobs: dict[Any, bytes] = {}
        for old, keys in outgoing.items():
            blobs.update(zip(keys, taken[old], strict=True))
        incoming: dict[int, list[Any]] = {}
        for (_, new), keys in moves.items():
            incoming.setdefault(new, []).extend(keys)
        self._run(
            {new: ("restore", keys, [blobs[k] for k in keys]) for new, keys in incoming.items()}
        )
        for (_, new), keys in moves.items():
            for key in keys:
                self._owner[key] = new
        self._generation += 1
        self.moved_keys = sum(len(keys) for keys in moves.values())

    # -- checkpoints, files ------------------------------------------------------------
    @_locked
    def checkpoint(self) -> None:
        """Checkpoint every shard now (``step`` does it every ``checkpoint_every``
        ticks); a confirmed checkpoint ends the shard's replay log."""
        paths = {sid: self._checkpoint_target(sid) for sid in self._shards}
        done = self._run({sid: ("checkpoint", path) for sid, path in paths.items()}, log=False)
        counts = Counter(self._owner.values())
        for sid, result in done.items():
            handle = self._shards[sid]
            _discard(handle.checkpoint)
            handle.checkpoint, handle.checkpoint_streams = result, counts[sid]
            handle.log.clear()
            handle.checkpoints += 1

    def _checkpoint_target(self, sid: int) -> str | None:
        if self.checkpoint_dir is None:
            return None
        n = self._shards[sid].checkpoints + 1
        return str(self.checkpoint_dir / f"shard-{sid}.{n:08d}.pool")

    @_locked
    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write every shard's pool file and a manifest into ``directory``, atomically
        each; ``ShardedPool.load`` continues bit-exact."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        blobs = self._run({sid: ("checkpoint", None) for sid in self._shards}, log=False)
        for sid, blob in blobs.items():
            atomic_write_bytes(directory / f"shard-{sid}.pool", blob)
        manifest = {
            "format": _MANIFEST_FORMAT,
            "fingerprint": self.model.spec.fingerprint,
            "replicas": self._ring.replicas,
            "shards": sorted(blobs),
        }
        atomic_write_bytes(directory / MANIFEST, json.dumps(manifest, indent=1).encode())

    @classmethod
    def load(
        cls,
        model_path: str | os.PathLike[str],
        directory: str | os.PathLike[str],
        address: str | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        **options: Any,
    ) -> ShardedPool:
        """A sharded pool from ``save``'s directory, with the same shards; a corrupt,
        foreign or missing file raises ``SnapshotError``."""
        directory = Path(directory)
        try:
            manifest = json.loads((directory / MANIFEST).read_text())
            shard_ids = [int(s) for s in manifest["shards"]]
            replicas = int(manifest["replicas"])
            fingerprint = manifest["fingerprint"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SnapshotError(f"{directory} holds no readable {MANIFEST}: {e}") from None
        # Every file is checked here, before any shard starts: a bad one raises now.
        model = load_bytes(Path(model_path).read_bytes(), source=str(model_path),
                           options=SessionOptions("cpu"), io=options.get("io"))  # fmt: skip
        if fingerprint != model.spec.fingerprint:
            raise SnapshotError(f"{directory} was saved by another model")
        ring = HashRing(shard_ids, replicas=replicas)
        blobs, owners = {}, {}
        for sid in shard_ids:
            path = directory / f"shard-{sid}.pool"
            if not path.is_file():
                raise SnapshotError(f"sharded pool file {path} is missing")
            blobs[sid] = path.read_bytes()
            what = f"sharded pool file {str(path)!r}"
            for key in StreamPool.from_bytes(model, blobs[sid], graph="sequence", what=what):
                h = hash64(key_token(key))
                if ring.owner(h) != sid:
                    raise SnapshotError(f"stream {key!r} is in {path}, not its shard's file")
                owners[key] = (sid, h)
        pool = cls(
            model_path, shards=len(shard_ids), address=address, checkpoint_dir=checkpoint_dir,
            replicas=replicas, _checkpoints=blobs, **options,
        )  # fmt: skip
        for key, (sid, h) in owners.items():
            pool._owner[key], pool._hash[key] = sid, h
        for sid, n in Counter(sid for sid, _ in owners.values()).items():
            pool._shards[sid].checkpoint_streams = n
        return pool

    # -- monitoring and shutdown --------------------------------------------------------
    @_locked
    def stats(self) -> list[ShardStats]:
        """Per-shard counters."""
        counts: dict[int, int] = dict.fromkeys(self._shards, 0)
        for sid in self._owner.values():
            counts[sid] += 1
        return [
            ShardStats(
                sid, counts[sid], h.stream_steps, h.busy_seconds, h.checkpoints, h.recoveries
            )
            for sid, h in sorted(self._shards.items())
        ]

    def actor(self, shard: int) -> Any:
        """The Ray actor handle of a shard (for operators and tests: ``ray.kill`` it)."""
        return self._shards[shard].actor

    @_locked
    def shutdown(self) -> None:
        """Stop every shard's actor (the Ray runtime itself keeps running)."""
        for handle in self._shards.values():
            ray.kill(handle.actor)
            _discard(handle.checkpoint)
        self._shards.clear()

    def __enter__(self) -> ShardedPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- the machinery -------------------------------------------------------------------
    def _start_shard(self, sid: int, checkpoint: Any) -> None:
        self._ring.add(sid)
        self._shards[sid] = _Handle(self._new_actor(checkpoint), checkpoint=checkpoint)

    def _new_actor(self, checkpoint: Any) -> Any:
        remote = _remote_shard().options(
            num_cpus=self._cpus, scheduling_strategy="SPREAD", max_restarts=0
        )
        return remote.remote(self._ref, self._settings, checkpoint)

    def _run(self, ops: Mapping[int, Op], log: bool = True) -> dict[int, Any]:
        """Send each shard its operation, all at once; wait for every result. A shard
        whose actor died is restarted from its checkpoint with its log replayed (the
        operation included), and its result comes from the replay."""
        futures = {}
        for sid, op in ops.items():
            if log:
                self._shards[sid].log.append(op)
            futures[sid] = self._shards[sid].actor.apply.remote(op)
        results = {}
        for sid, future in futures.items():
            try:
                results[sid] = ray.get(future)
            except ray.exceptions.RayActorError:
                results[sid] = self._recover(sid, None if log else ops[sid])
        return results

    def _recover(self, sid: int, unlogged: Op | None) -> Any:
        """Restart shard ``sid`` from its checkpoint and replay its log, then
        ``unlogged`` (an operation that is not replayed later, like a checkpoint)."""
        handle = self._shards[sid]
        start = time.perf_counter()
        with contextlib.suppress(Exception):  # it is dead already: this only tidies up
            ray.kill(handle.actor)
        ops = [*handle.log, *([unlogged] if unlogged is not None else [])]
        try:
            handle.actor = self._new_actor(handle.checkpoint)
            result = ray.get(handle.actor.replay.remote(ops))
        except ray.exceptions.RayError as e:
            raise ShardError(f"shard {sid} died and could not be restarted: {e}") from e
        handle.recoveries += 1
        self.recoveries.append(
            Recovery(
                shard=sid,
                checkpoint_streams=handle.checkpoint_streams,
                replayed_ops=len(ops),
                replayed_stream_steps=sum(len(op[1]) for op in ops if op[0] == "step"),
                seconds=time.perf_counter() - start,
            )
        )
        return result

    @property
    def tick_seconds(self) -> list[float]:
        """Wall time of each tick, as the driver measured it."""
        return list(self._tick_seconds)


_REMOTE: Any = None


def _remote_shard() -> Any:
    global _REMOTE
    if _REMOTE is None:
        _REMOTE = ray.remote(Shard)
    return _REMOTE


def _connect(address: str | None) -> None:
    """Join this process's Ray runtime, else the cluster at ``address``, else a new
    local one."""
    if ray.is_initialized():
        return
    if address is not None:
        ray.init(address=address)
    else:
        ray.init(include_dashboard=False)


def _discard(checkpoint: Any) -> None:
    """Delete a superseded checkpoint file (bytes need nothing)."""
    if isinstance(checkpoint, str):
        Path(checkpoint).unlink(missing_ok=True)


def _plain_key(key: object) -> bool:
    """Keys of refused types (1.0, True) hash like 1: never a stream of this pool."""
    try:
        check_key(key)
    except TypeError:
        return False
    return True
