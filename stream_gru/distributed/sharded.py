"""ShardedPool: one fleet of streams spread over Ray actors, each a shard (``shard.py``)
with its own ``StreamPool`` and session.

The driver (this process) routes each key to its shard by consistent hashing
(``hash_ring.py``), checks every call before any shard sees it (so bad input changes no
stream anywhere), sends each shard one batched call per tick, all in parallel, and puts
the results back in the caller's order. A stream's outputs are bit for bit those of a
single local ``StreamPool``: a row's result never depends on the rest of its batch.

Recovery. Every ``checkpoint_every`` ticks each shard writes its pool (the pool-file
format, atomically) into ``checkpoint_dir``, or, without one, hands the bytes to the
driver, which keeps them. The driver logs every operation sent to a shard since its last
confirmed checkpoint. When a shard's actor dies, the driver starts a new one from that
checkpoint and replays the log, so each operation reaches the shard at least once and
changes its state exactly once. Where that cannot be done (the restart fails, or a shard
refuses an operation the driver checked) the driver no longer knows the shards' state:
the pool raises ``ShardError`` then and for every later call, and the way back is the
last ``save``. README.md ("Past one machine") lists what holds and what does not.

Needs the ``ray`` extra (``pip install stream-gru[ray]``); ``import stream_gru`` never
imports this module.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import secrets
import threading
import time
import warnings
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np

from ..core.session import Provider, SessionOptions
from ..core.spec import ModelIO
from ..errors import ShardError, SnapshotError
from ..fleet.graphs import GraphChoice
from ..fleet.keys import (
    PLAIN_KEY_TYPES,
    canonical_key,
    canonical_samples,
    key_in,
    key_list,
    key_token,
)
from ..fleet.model import StreamingModel, load_bytes
from ..fleet.pool import StreamPool
from ..fleet.ticks import check_batch, check_idle_seconds, check_samples
from ..formats.files import NotARegularFile, atomic_write_bytes, open_regular, read_regular
from .ring import MAX_REPLICAS, HashRing, hash64
from .shard import Op, Recovery, Shard, ShardSettings, ShardStats

try:
    import ray
except ImportError as e:  # pragma: no cover - exercised where ray is absent
    from ..install import install_hint

    raise ImportError(f"stream_gru.distributed needs Ray: {install_hint('ray')}") from e

__all__ = ["Recovery", "ShardError", "ShardStats", "ShardedPool"]

MANIFEST = "sharded-pool.json"
_MANIFEST_FORMAT = 1
_TICK_WINDOW = 1024


@dataclass
class _Handle:
    """The driver's view of one shard."""

    actor: Any
    checkpoint: Any = None  # a path (checkpoint_dir) or bytes; None: no streams
    checkpoint_streams: int = 0
    log: list[Op] = field(default_factory=list)
    stream_steps: int = 0
    busy_seconds: float = 0.0
    checkpoints: int = 0
    recoveries: int = 0


F = TypeVar("F", bound=Callable[..., Any])


def _guarded(method: F) -> F:
    """Run a ShardedPool method under its lock (calls from several threads take turns),
    and only while the pool can vouch for its streams."""

    @functools.wraps(method)
    def guarded(self: ShardedPool, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            if self._broken is not None:
                raise ShardError(
                    f"this sharded pool is unusable since {self._broken}; "
                    "load its last save with ShardedPool.load"
                )
            result = method(self, *args, **kwargs)
            if self._broken is None and any(
                len(h.log) >= self.checkpoint_every for h in self._shards.values()
            ):
                # The call is done on every shard: its result goes back even where a
                # shard fails this checkpoint (then the next call raises ShardError).
                with contextlib.suppress(ShardError):
                    self._checkpoint()
            return result

    return cast(F, guarded)


class ShardedPool:
    """A ``StreamPool`` spread over Ray actors, with the pool's interface.

    ``model_path`` is read here and sent to each shard, so the workers need no copy of
    the file. Joins the Ray runtime already initialized in this process, else connects
    to ``address`` (e.g. ``"ray://head:10001"``, or ``"auto"`` on a cluster node), else
    starts a local one. Shards reserve ``cpus_per_shard`` CPUs each (default 0, so any
    number fits; Ray spreads them over the cluster's nodes). A restart that takes longer
    than ``restart_timeout`` seconds (no node can take the shard) raises ``ShardError``.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        shards: int = 2,
        address: str | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        *,
        checkpoint_every: int = 100,
        graph: GraphChoice = "auto",
        provider: Provider = "auto",
        threads: int = 1,
        io: ModelIO | None = None,
        cpus_per_shard: float = 0,
        replicas: int = 128,
        restart_timeout: float = 120.0,
        _checkpoints: Mapping[int, bytes] | None = None,
    ) -> None:
        if shards < 1:
            raise ValueError(f"shards must be at least 1, got {shards}")
        if checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be at least 1, got {checkpoint_every}")
        self.model_path = Path(model_path)
        self._model_bytes = read_regular(self.model_path)
        # The driver's own copy checks samples and snapshots; it never steps a stream.
        self.model: StreamingModel = load_bytes(
            self._model_bytes, source=str(self.model_path), options=SessionOptions("cpu"), io=io
        )
        self._settings = ShardSettings(SessionOptions(provider, threads), graph=graph, io=io)
        _connect(address)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        if self.checkpoint_dir is not None:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_every = checkpoint_every
        self.restart_timeout = restart_timeout
        self.moved_keys = 0  # by the last add_shard / remove_shard
        self.recoveries: list[Recovery] = []
        self._cpus = cpus_per_shard
        self._lock = threading.RLock()
        self._broken: str | None = None
        self._name = secrets.token_hex(4)  # this pool's checkpoint files: shard-ID.NAME.N.pool
        self._ref = ray.put(self._model_bytes)
        self._ring = HashRing(replicas=replicas)
        self._shards: dict[int, _Handle] = {}
        self._owner: dict[Any, int] = {}  # key -> shard
        self._hash: dict[Any, int] = {}  # key -> its place on the ring
        self._generation = 0  # moves on whenever a key opens, closes or moves
        self._recent: tuple[int, list[Any], dict[int, tuple[np.ndarray, list[Any]]]] = (
            -1, [], {},
        )  # fmt: skip
        self._ticks = 0
        self._tick_seconds: deque[float] = deque(maxlen=_TICK_WINDOW)
        start: dict[int, bytes | None] = (
            dict(_checkpoints) if _checkpoints else dict.fromkeys(range(shards))
        )
        self._start_shards(start)
        self._next_id = max(start) + 1

    def __repr__(self) -> str:
        return f"ShardedPool({len(self)} streams on {len(self._shards)} shards, {self.model!r})"

    # -- membership ------------------------------------------------------------------
    def __contains__(self, key: object) -> bool:
        return key_in(self._owner, key)

    def __len__(self) -> int:
        return len(self._owner)

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._owner))

    @property
    def shards(self) -> list[int]:
        """The shards' ids."""
        return sorted(self._shards)

    def shard_of(self, key: Any) -> int:
        """The shard that holds ``key`` (``TypeError`` for a key of a refused type)."""
        try:
            return self._owner[canonical_key(key)]
        except KeyError:
            raise KeyError(f"stream {key!r} is not open in this pool") from None

    def open(self, key: Any) -> None:
        """Open a stream at the initial state on its shard."""
        self.open_many([key])

    @_guarded
    def open_many(self, keys: Sequence[Any]) -> None:
        """Open several streams, one call per shard. An open or repeated key raises
        ``ValueError`` and opens none."""
        keys = key_list(keys)
        taken = [k for k in keys if k in self._owner]
        if taken or len(set(keys)) != len(keys):
            raise ValueError(f"streams already open or named twice: {taken[:20]!r}")
        places = {key: hash64(key_token(key)) for key in keys}
        owners = {key: self._ring.owner(h) for key, h in places.items()}
        groups: dict[int, list[Any]] = {}
        for key, sid in owners.items():
            groups.setdefault(sid, []).append(key)
        self._run({sid: ("open", part) for sid, part in groups.items()})
        self._owner.update(owners)
        self._hash.update(places)
        self._generation += 1

    @_guarded
    def close(self, key: Any) -> None:
        """Close a stream. An unknown key raises ``KeyError``."""
        sid = self.shard_of(key)
        key = canonical_key(key)
        self._run({sid: ("close", [key])})
        del self._owner[key], self._hash[key]
        self._generation += 1

    # -- ticks -----------------------------------------------------------------------
    @_guarded
    def step(self, samples: Mapping[Any, Any]) -> dict[Any, np.ndarray]:
        """Step every named stream by one sample: ``{key: y}`` in the caller's order.
        A key of a refused type raises ``TypeError``, an unknown key ``KeyError``, a
        bad sample ``ValueError`` naming every bad key; either way no stream on any
        shard changes."""
        samples = canonical_samples(samples)
        keys, xs, rejected = check_samples(self.model.spec, samples)
        if rejected:  # an unknown key is reported before bad samples
            self._route(list(samples), check_distinct=False)
            reasons = "; ".join(f"{k!r}: {why}" for k, why in rejected.items())
            raise ValueError(f"{len(rejected)} bad sample(s), no stream stepped: {reasons}")
        return dict(zip(keys, self._tick(keys, xs), strict=True))

    @_guarded
    def step_batch(self, keys: Sequence[Any], xs: Any) -> np.ndarray:
        """``keys`` (n,) and ``X`` (n, input_size) -> (n, output_size), row i for
        ``keys[i]``; keys open and distinct (a numpy integer array means the equal ints),
        ``X`` checked whole before any shard runs."""
        keys = key_list(keys)
        samples = check_batch(self.model.spec, keys, xs)
        return self._tick(keys, samples, check_distinct=True)

    def _tick(self, keys: list[Any], xs: np.ndarray, check_distinct: bool = False) -> np.ndarray:
        routes = self._route(keys, check_distinct)
        tail = () if self.model.spec.output_size is None else (self.model.spec.output_size,)
        if not keys:
            return np.zeros((0, *tail), np.float32)
        start = time.perf_counter()
        results = self._run({sid: ("step", part, xs[rows]) for sid, (rows, part) in routes.items()})
        out = np.empty((len(keys), *tail), np.float32)
        for sid, (ys, busy) in results.items():
            rows = routes[sid][0]
            out[rows] = ys
            self._shards[sid].stream_steps += len(rows)
            self._shards[sid].busy_seconds += busy
        self._ticks += 1
        self._tick_seconds.append(time.perf_counter() - start)
        return out

    def _route(
        self, keys: list[Any], check_distinct: bool
    ) -> dict[int, tuple[np.ndarray, list[Any]]]:
        """Each shard's rows of the tick and their keys. ``KeyError`` naming the keys
        that are not open, ``ValueError`` naming those named twice. A fleet usually
        ticks the same keys again and again: while no stream opened, closed or moved,
        an equal key list reuses the last tick's routing."""
        generation, recent_keys, recent = self._recent
        plain = set(map(type, keys)) <= PLAIN_KEY_TYPES  # canonical keys (key_list)
        if generation == self._generation and plain and keys == recent_keys:
            return recent
        try:
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

    # -- one stream in or out, expiry --------------------------------------------------
    @_guarded
    def snapshot(self, key: Any) -> bytes:
        """One stream's state as ``Stream.snapshot()`` bytes."""
        sid = self.shard_of(key)
        (blob,) = self._run({sid: ("snapshot", [canonical_key(key)])}, log=False)[sid]
        return blob  # type: ignore[no-any-return]

    @_guarded
    def restore(self, key: Any, blob: bytes) -> None:
        """Open ``key`` from a snapshot, on its shard."""
        key = canonical_key(key)
        if key in self._owner:
            raise ValueError(f"stream {key!r} is already open; close it before restoring")
        self.model.restore(blob)  # SnapshotError here, for a bad or foreign snapshot
        h = hash64(key_token(key))
        sid = self._ring.owner(h)
        self._run({sid: ("restore", [key], [blob])})
        self._owner[key], self._hash[key] = sid, h
        self._generation += 1

    @_guarded
    def expire(self, idle_seconds: float) -> dict[Any, bytes]:
        """Close the streams idle for at least ``idle_seconds`` on every shard; return
        their snapshots. Idle time is measured by each shard's clock."""
        idle_seconds = check_idle_seconds(idle_seconds)
        # Logged as the closes they turn out to be, so a replay does not depend on time.
        gone = self._run(
            {sid: ("expire", float(idle_seconds)) for sid in self._shards},
            log=False,
            then=lambda sid, blobs: [("close", list(blobs))] if blobs else [],
        )
        out: dict[Any, bytes] = {}
        for blobs in gone.values():
            for key in blobs:
                del self._owner[key], self._hash[key]
            out.update(blobs)
        self._generation += 1
        return out

    # -- rebalancing -------------------------------------------------------------------
    @_guarded
    def add_shard(self) -> int:
        """Start a new shard and move to it exactly the keys the ring now gives it.
        Returns its id."""
        sid = self._next_id
        self._next_id += 1
        self._start_shards({sid: None})
        self._move_keys()
        return sid

    @_guarded
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
        """Move every key whose owner changed: snapshots out of the old shards (each
        logged as a close), into the new ones, one call per shard each way."""
        moves: dict[Any, tuple[int, int]] = {}
        for key, old in self._owner.items():
            new = self._ring.owner(self._hash[key])
            if new != old:
                moves[key] = (old, new)
        outgoing: dict[int, list[Any]] = {}
        incoming: dict[int, list[Any]] = {}
        for key, (old, new) in moves.items():
            outgoing.setdefault(old, []).append(key)
            incoming.setdefault(new, []).append(key)
        taken = self._run(
            {old: ("take", keys) for old, keys in outgoing.items()},
            log=False,
            then=lambda old, _: [("close", outgoing[old])],
        )
        blobs: dict[Any, bytes] = {}
        for old, keys in outgoing.items():
            blobs.update(zip(keys, taken[old], strict=True))
        self._run(
            {new: ("restore", keys, [blobs[k] for k in keys]) for new, keys in incoming.items()}
        )
        for key, (_, new) in moves.items():
            self._owner[key] = new
        self._generation += 1
        self.moved_keys = len(moves)

    # -- checkpoints, files ------------------------------------------------------------
    @_guarded
    def checkpoint(self) -> None:
        """Checkpoint every shard now (``step`` does it every ``checkpoint_every``
        ticks); a confirmed checkpoint ends the shard's replay log."""
        self._checkpoint()

    def _checkpoint(self) -> None:
        targets = {sid: self._checkpoint_target(sid) for sid in self._shards}
        done = self._run({sid: ("checkpoint", path) for sid, path in targets.items()}, log=False)
        counts = Counter(self._owner.values())
        for sid, result in done.items():
            handle = self._shards[sid]
            if isinstance(result, OSError):  # e.g. a full disk: keep the log, retry later
                warnings.warn(
                    f"shard {sid} could not write its checkpoint ({result}); its replay log "
                    f"({len(handle.log)} operations) is kept and the checkpoint retried",
                    RuntimeWarning,
                    stacklevel=3,
                )
                continue
            _discard(handle.checkpoint)
            handle.checkpoint, handle.checkpoint_streams = result, counts[sid]
            handle.log.clear()
            handle.checkpoints += 1

    def _checkpoint_target(self, sid: int) -> str | None:
        if self.checkpoint_dir is None:
            return None
        n = self._shards[sid].checkpoints + 1
        return str(self.checkpoint_dir / f"ckpt-{sid}.{self._name}.{n:08d}.pool")

    @_guarded
    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write every shard's pool into ``directory``, then a manifest naming them:
        until the manifest is replaced, ``load`` reads the previous save whole."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        blobs = self._run({sid: ("checkpoint", None) for sid in self._shards}, log=False)
        tag = secrets.token_hex(4)
        files = {sid: f"shard-{sid}.{tag}.pool" for sid in blobs}
        for sid, blob in blobs.items():
            atomic_write_bytes(directory / files[sid], blob)
        manifest = {
            "format": _MANIFEST_FORMAT,
            "fingerprint": self.model.spec.fingerprint,
            "replicas": self._ring.replicas,
            "shards": [{"id": sid, "file": files[sid]} for sid in sorted(files)],
        }
        atomic_write_bytes(directory / MANIFEST, json.dumps(manifest, indent=1).encode())
        for stale in directory.glob("shard-*.pool"):  # files of earlier saves
            if stale.name not in files.values():
                stale.unlink(missing_ok=True)

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
        foreign or missing file raises ``SnapshotError`` before any shard starts."""
        if "replicas" in options or "shards" in options:
            raise TypeError("load takes the shards and their ring from the saved manifest")
        directory = Path(directory)
        files, replicas, fingerprint = _read_manifest(directory)
        model = load_bytes(read_regular(model_path), source=str(model_path),
                           options=SessionOptions("cpu"), io=options.get("io"))  # fmt: skip
        if fingerprint != model.spec.fingerprint:
            raise SnapshotError(f"{directory} was saved by another model")
        blobs = {}
        for sid, path in files.items():
            try:
                blobs[sid] = read_regular(path)
            except (FileNotFoundError, NotARegularFile) as e:
                raise SnapshotError(f"sharded pool file {path} is missing or unreadable: "
                                    f"{type(e).__name__}") from None  # fmt: skip
        keys = {}
        for sid, path in files.items():  # every file checked before the ring is built
            what = f"sharded pool file {str(path)!r}"
            pool_file = StreamPool.from_bytes(
                model, blobs[sid], graph="sequence", what=what, quote=False
            )
            keys[sid] = pool_file.keys()
        ring = HashRing(files, replicas=replicas)
        owners = {}
        for sid, path in files.items():
            for key in keys[sid]:
                h = hash64(key_token(key))
                if ring.owner(h) != sid:
                    raise SnapshotError(f"stream {key!r} is in {path}, not its shard's file")
                owners[key] = (sid, h)
        pool = cls(
            model_path, address=address, checkpoint_dir=checkpoint_dir, replicas=replicas,
            _checkpoints=blobs, **options,
        )  # fmt: skip
        for key, (sid, h) in owners.items():
            pool._owner[key], pool._hash[key] = sid, h
        for sid, n in Counter(sid for sid, _ in owners.values()).items():
            pool._shards[sid].checkpoint_streams = n
        return pool

    # -- monitoring and shutdown --------------------------------------------------------
    def stats(self) -> list[ShardStats]:
        """Per-shard counters (also of an unusable pool)."""
        with self._lock:
            counts = Counter(self._owner.values())
            return [
                ShardStats(
                    sid, counts[sid], h.stream_steps, h.busy_seconds, h.checkpoints, h.recoveries
                )
                for sid, h in sorted(self._shards.items())
            ]

    @property
    def tick_seconds(self) -> list[float]:
        """Wall time of the last 1,024 ticks, as the driver measured them."""
        return list(self._tick_seconds)

    def actor(self, shard: int) -> Any:
        """The Ray actor handle of a shard (for operators and tests: ``ray.kill`` it)."""
        return self._shards[shard].actor

    def shutdown(self) -> None:
        """Stop every shard's actor (the Ray runtime itself keeps running). Works on
        an unusable pool too."""
        with self._lock:
            for handle in self._shards.values():
                with contextlib.suppress(Exception):
                    ray.kill(handle.actor)
                _discard(handle.checkpoint)
            self._shards.clear()
            self._broken = self._broken or "shutdown() was called"

    def __enter__(self) -> ShardedPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- the machinery -------------------------------------------------------------------
    def _start_shards(self, checkpoints: Mapping[int, bytes | None]) -> None:
        """Start shards and wait until each is up (at most ``restart_timeout``); where
        one cannot start, stop them all and raise ``ShardError``: nothing changed."""
        actors = {sid: self._new_actor(blob) for sid, blob in checkpoints.items()}
        try:
            ray.get([a.replay.remote([]) for a in actors.values()], timeout=self.restart_timeout)
        except (ray.exceptions.RayError, TimeoutError) as e:
            for actor in actors.values():
                with contextlib.suppress(Exception):
                    ray.kill(actor)
            raise ShardError(
                f"{len(actors)} shard(s) could not start within {self.restart_timeout:g} s "
                f"(each asks for {self._cpus:g} CPUs; the cluster has "
                f"{_cluster_cpus():g}): {_reason(e)}"
            ) from None
        for sid, actor in actors.items():
            self._ring.add(sid)
            self._shards[sid] = _Handle(actor, checkpoint=checkpoints[sid])

    def _new_actor(self, checkpoint: Any) -> Any:
        remote = _remote_shard().options(
            num_cpus=self._cpus, scheduling_strategy="SPREAD", max_restarts=0
        )
        return remote.remote(self._ref, self._settings, checkpoint)

    def _run(
        self,
        ops: Mapping[int, Op],
        log: bool = True,
        then: Callable[[int, Any], list[Op]] | None = None,
    ) -> dict[int, Any]:
        """Send each shard its operation, all at once; wait for every result.

        ``log``: the operation goes into the shard's replay log (the default); else
        ``then(shard, result)`` gives what to log in its place once it succeeded. A
        shard whose actor died is restarted from its checkpoint with its log replayed
        (the operation included), and its result comes from the replay. Any failure
        that leaves a shard's state unknown makes the pool unusable (``ShardError``).
        """
        results: dict[int, Any] = {}
        failures: list[str] = []
        try:
            futures = {}
            for sid, op in ops.items():
                if log:
                    self._shards[sid].log.append(op)
                futures[sid] = self._shards[sid].actor.apply.remote(op)
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
                    failures.append(f"shard {sid} refused {ops[sid][0]!r}: {_reason(e)}")
                    continue
                if then is not None:
                    self._shards[sid].log.extend(then(sid, results[sid]))
        except BaseException as e:  # Ctrl-C or a timeout: shards may have applied it
            names = sorted({op[0] for op in ops.values()})
            self._broken = f"a call was interrupted ({type(e).__name__}) while shards ran {names}"
            raise
        if failures:
            self._broken = "; ".join(failures)
            raise ShardError(self._broken)
        return results

    def _recover(self, sid: int, unlogged: Op | None) -> Any:
        """Restart shard ``sid`` from its checkpoint and replay its log, then
        ``unlogged`` (an operation that is not kept in the log, like a checkpoint)."""
        handle = self._shards[sid]
        start = time.perf_counter()
        with contextlib.suppress(Exception):  # it is dead already: this only tidies up
            ray.kill(handle.actor)
        ops = [*handle.log, *([unlogged] if unlogged is not None else [])]
        actor = self._new_actor(handle.checkpoint)
        try:
            result = ray.get(actor.replay.remote(ops), timeout=self.restart_timeout)
        except (ray.exceptions.RayError, TimeoutError) as e:
            with contextlib.suppress(Exception):
                ray.kill(actor)
            raise ShardError(f"shard {sid} died and could not be restarted: {_reason(e)}") from e
        handle.actor = actor
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


_REMOTE: Any = None


_MANIFEST_MAX_BYTES = 1 << 20
_MAX_SHARDS = 1024
_MAX_RING_POINTS = 1 << 18  # a ring of this many points builds in well under a second
_SHARD_FILE = re.compile(r"shard-[0-9]{1,9}\.[0-9a-f]{1,32}\.pool\Z")


def _read_manifest(directory: Path) -> tuple[dict[int, Path], int, str]:
    """A save's manifest, checked before anything else is read: (shard id -> pool file
    in ``directory``, replicas, fingerprint). ``SnapshotError`` naming what is wrong,
    never quoting a file's contents; only plain file names of the save's own pattern
    (``shard-<id>.<tag>.pool``) are accepted, so no path leads outside ``directory``."""
    path = directory / MANIFEST
    try:
        with open_regular(path) as f:
            raw = f.read(_MANIFEST_MAX_BYTES + 1)
    except (FileNotFoundError, NotARegularFile) as e:
        raise SnapshotError(f"{directory} holds no readable {MANIFEST}: {e}") from None
    if len(raw) > _MANIFEST_MAX_BYTES:
        raise SnapshotError(f"{path} is over {_MANIFEST_MAX_BYTES:,} bytes: not a manifest")
    try:
        manifest = json.loads(raw)
        entries = manifest["shards"]
        replicas, fingerprint, version = (
            manifest["replicas"],
            manifest["fingerprint"],
            manifest["format"],
        )
    except Exception as e:  # malformed JSON, nesting past the recursion limit, wrong types
        raise SnapshotError(f"{path} is not a readable manifest ({type(e).__name__})") from None
    if version != _MANIFEST_FORMAT or not isinstance(fingerprint, str):
        raise SnapshotError(f"{path}: unknown format {version!r:.20} or a bad fingerprint")
    if (
        isinstance(replicas, bool)
        or not isinstance(replicas, int)
        or not (1 <= replicas <= MAX_REPLICAS)
    ):
        raise SnapshotError(f"{path}: replicas must be an int in [1, {MAX_REPLICAS}], "
                            f"got {replicas!r:.20}")  # fmt: skip
    if not isinstance(entries, list) or not 1 <= len(entries) <= _MAX_SHARDS:
        raise SnapshotError(f"{path}: the shard list must hold 1 to {_MAX_SHARDS} entries")
    if replicas * len(entries) > _MAX_RING_POINTS:
        raise SnapshotError(f"{path}: {len(entries)} shards x {replicas} replicas is over "
                            f"{_MAX_RING_POINTS:,} points on the ring")  # fmt: skip
    files: dict[int, Path] = {}
    for entry in entries:
        sid = entry.get("id") if isinstance(entry, dict) else None
        name = entry.get("file") if isinstance(entry, dict) else None
        if isinstance(sid, bool) or not isinstance(sid, int) or not 0 <= sid < 2**31:
            raise SnapshotError(f"{path}: a shard id must be an int in [0, 2**31), got "
                                f"{sid!r:.20}")  # fmt: skip
        if not isinstance(name, str) or not _SHARD_FILE.match(name):
            raise SnapshotError(
                f"{path}: shard {sid} names the file {name!r:.80}, which is not a pool file "
                f"of this directory (shard-<id>.<tag>.pool); only files inside it are read"
            )
        if sid in files:
            raise SnapshotError(f"{path}: shard {sid} is listed twice")
        files[sid] = directory / name
    return files, replicas, fingerprint


def _remote_shard() -> Any:
    global _REMOTE
    if _REMOTE is None:
        _REMOTE = ray.remote(Shard)
    return _REMOTE


def _connect(address: str | None) -> None:
    """Join this process's Ray runtime, else the cluster at ``address``, else a new
    local one (never a cluster that happens to run on this machine)."""
    if ray.is_initialized():
        return
    if address is not None:
        ray.init(address=address)
    else:
        ray.init(address="local", include_dashboard=False)


def _discard(checkpoint: Any) -> None:
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
