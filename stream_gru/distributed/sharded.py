"""ShardedPool: one fleet of streams spread over Ray actors, each a shard (``shard.py``)
with its own ``StreamPool`` and session.

The driver (this process) routes each key to its shard by consistent hashing
(``ring.py``), checks every call before any shard sees it (so bad input changes no
stream anywhere), sends each shard one batched call per tick, all in parallel, and puts
the results back in the caller's order. A stream's outputs are bit for bit those of a
single local ``StreamPool``: a row's result never depends on the rest of its batch.

Every ``checkpoint_every`` operations each shard checkpoints its pool; a dead shard
restarts from it and replays the driver's log (``actors.py``). Where that cannot be
done, the pool raises ``ShardError`` then and for every later call; the way back is
the last ``save``. README.md ("Past one machine") lists what holds and what does not.

Needs the ``ray`` extra (``pip install stream-gru[ray]``); ``import stream_gru`` never
imports this module.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np

from ..core.session import Provider, SessionOptions
from ..core.spec import ModelIO
from ..errors import ShardError
from ..fleet.graphs import GraphChoice
from ..fleet.interface import FleetPool
from ..fleet.keys import (
    canonical_key,
    canonical_samples,
    key_list,
    split_refused,
)
from ..fleet.model import StreamingModel, load_bytes
from ..fleet.ticks import (
    TickResult,
    check_batch,
    check_idle_seconds,
    check_samples,
    drop_not_open,
    refused_rows,
)
from ..formats.files import read_regular
from . import messages as msg
from .actors import ShardActors, connect
from .routing import KeyTable
from .saves import MANIFEST, read_save, write_save
from .shard import Recovery, ShardedPoolStats, ShardSettings, ShardStats

__all__ = ["MANIFEST", "Recovery", "ShardError", "ShardStats", "ShardedPool", "ShardedPoolStats"]

_TICK_WINDOW = 1024


F = TypeVar("F", bound=Callable[..., Any])


def _guarded(method: F) -> F:
    """Run a ShardedPool method under its lock (calls from several threads take turns),
    and only while the pool can vouch for its streams."""

    @functools.wraps(method)
    def guarded(self: ShardedPool, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            if self._actors.broken is not None:
                raise ShardError(
                    f"this sharded pool is unusable since {self._actors.broken}; "
                    "load its last save with ShardedPool.load"
                )
            result = method(self, *args, **kwargs)
            if self._actors.broken is None and self._actors.due(self.checkpoint_every):
                # The call is done on every shard: its result goes back even where a
                # shard fails this checkpoint (then the next call raises ShardError).
                with contextlib.suppress(ShardError):
                    self._actors.checkpoint(self._keys.streams_per_shard())
            return result

    return cast(F, guarded)


class ShardedPool:
    """A ``StreamPool`` spread over Ray actors, with the pool's interface (``FleetPool``).

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
        model_bytes = read_regular(self.model_path)
        # The driver's own copy checks samples and snapshots; it never steps a stream.
        self.model: StreamingModel = load_bytes(
            model_bytes, source=str(self.model_path), options=SessionOptions("cpu"), io=io
        )
        connect(address)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        if self.checkpoint_dir is not None:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_every = checkpoint_every
        self.moved_keys = 0  # by the last add_shard / remove_shard
        self._lock = threading.RLock()
        self._actors = ShardActors(
            model_bytes,
            ShardSettings(SessionOptions(provider, threads), graph=graph, io=io),
            cpus_per_shard=cpus_per_shard,
            restart_timeout=restart_timeout,
            checkpoint_dir=self.checkpoint_dir,
            name=secrets.token_hex(4),
        )
        self._keys = KeyTable(replicas=replicas)
        self._ticks = 0
        self._rejected = 0
        self._expired = 0
        self._tick_seconds: deque[float] = deque(maxlen=_TICK_WINDOW)
        start: dict[int, bytes | None] = (
            dict(_checkpoints) if _checkpoints else dict.fromkeys(range(shards))
        )
        self._start_shards(start)
        self._next_id = max(start) + 1

    def __repr__(self) -> str:
        return f"ShardedPool({len(self)} streams on {len(self.shards)} shards, {self.model!r})"

    @property
    def recoveries(self) -> list[Recovery]:
        """Every restart of a dead shard so far."""
        return self._actors.recoveries

    # -- membership ------------------------------------------------------------------
    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.keys())

    def keys(self) -> list[Any]:
        """The open streams' keys."""
        with self._lock:
            return self._keys.keys()

    def missing(self, keys: Sequence[Any]) -> list[Any]:
        """The keys of ``keys`` that are not open."""
        with self._lock:
            return [k for k in keys if k not in self._keys]

    @property
    def shards(self) -> list[int]:
        """The shards' ids."""
        return self._actors.ids

    def shard_of(self, key: Any) -> int:
        """The shard that holds ``key`` (``TypeError`` for a key of a refused type)."""
        return self._keys.shard_of(key)

    def open(self, key: Any) -> None:
        """Open a stream at the initial state on its shard."""
        self.open_many([key])

    @_guarded
    def open_many(self, keys: Sequence[Any]) -> None:
        """Open several streams, one call per shard. An open or repeated key raises
        ``ValueError`` and opens none."""
        keys = key_list(keys)
        taken = [k for k in keys if k in self._keys]
        if taken or len(set(keys)) != len(keys):
            raise ValueError(f"streams already open or named twice: {taken[:20]!r}")
        places = self._keys.places(keys)
        groups: dict[int, list[Any]] = {}
        for key, (sid, _) in places.items():
            groups.setdefault(sid, []).append(key)
        self._actors.send({sid: msg.Open(part) for sid, part in groups.items()})
        self._keys.add(places)

    @_guarded
    def close(self, key: Any) -> None:
        """Close a stream. An unknown key raises ``KeyError``."""
        sid = self.shard_of(key)
        key = canonical_key(key)
        self._actors.send({sid: msg.Close([key])})
        self._keys.remove([key])

    # -- ticks -----------------------------------------------------------------------
    @_guarded
    def step(self, samples: Mapping[Any, Any]) -> dict[Any, np.ndarray]:
        """Step every named stream by one sample: ``{key: y}`` in the caller's order.
        A key of a refused type raises ``TypeError``, an unknown key ``KeyError``, a
        bad sample ``ValueError`` naming every bad key; either way no stream on any
        shard changes."""
        try:
            samples = canonical_samples(samples)
        except TypeError:
            self._rejected += len(samples) if isinstance(samples, Mapping) else 0
            raise
        keys, xs, rejected = check_samples(self.model.spec, samples)
        if rejected:  # an unknown key is reported before bad samples
            self._keys.route(list(samples), check_distinct=False)
            self._rejected += len(rejected)
            reasons = "; ".join(f"{k!r}: {why}" for k, why in rejected.items())
            raise ValueError(f"{len(rejected)} bad sample(s), no stream stepped: {reasons}")
        return dict(zip(keys, self._tick(keys, xs), strict=True))

    @_guarded
    def step_valid(self, samples: Mapping[Any, Any]) -> TickResult:
        """Step the streams whose samples are good; return the rest with their reasons
        (keys that are not open and keys of a refused type included), as
        ``StreamPool.step_valid``."""
        samples, refused = split_refused(samples)
        keys, xs, rejected = check_samples(self.model.spec, samples)
        rejected.update(refused)
        keys, xs = drop_not_open(keys, xs, [k in self._keys for k in keys], rejected)
        self._rejected += len(rejected)
        if not keys:
            return TickResult({}, rejected)
        return TickResult(dict(zip(keys, self._tick(keys, xs), strict=True)), rejected)

    @_guarded
    def step_batch(self, keys: Sequence[Any], xs: Any) -> np.ndarray:
        """``keys`` (n,) and ``X`` (n, input_size) -> (n, output_size), row i for
        ``keys[i]``; keys open and distinct (a numpy integer array means the equal ints),
        ``X`` checked whole before any shard runs."""
        named: list[Any] | None = None
        try:
            named = keys = key_list(keys)
            samples = check_batch(self.model.spec, keys, xs)
        except (TypeError, ValueError):
            self._rejected += refused_rows(self.model.spec, named, xs)
            raise
        return self._tick(keys, samples, check_distinct=True)

    def _tick(self, keys: list[Any], xs: np.ndarray, check_distinct: bool = False) -> np.ndarray:
        routes = self._keys.route(keys, check_distinct)
        tail = () if self.model.spec.output_size is None else (self.model.spec.output_size,)
        if not keys:
            return np.zeros((0, *tail), np.float32)
        start = time.perf_counter()
        results = self._actors.send(
            {sid: msg.Step(part, xs[rows]) for sid, (rows, part) in routes.items()}
        )
        out = np.empty((len(keys), *tail), np.float32)
        for sid, (ys, busy) in results.items():
            rows = routes[sid][0]
            out[rows] = ys
            self._actors.handles[sid].stream_steps += len(rows)
            self._actors.handles[sid].busy_seconds += busy
        self._ticks += 1
        self._tick_seconds.append(time.perf_counter() - start)
        return out

    # -- one stream in or out, expiry --------------------------------------------------
    @_guarded
    def snapshot(self, key: Any) -> bytes:
        """One stream's state as ``Stream.snapshot()`` bytes."""
        sid = self.shard_of(key)
        (blob,) = self._actors.send({sid: msg.Snapshot([canonical_key(key)])}, log=False)[sid]
        return blob  # type: ignore[no-any-return]

    @_guarded
    def state(self, key: Any) -> dict[str, np.ndarray]:
        """A copy of one stream's state, as ``Stream.state``."""
        return self._read_state(key)[0]

    @_guarded
    def steps(self, key: Any) -> int:
        """Samples the stream has run since it was opened (kept by snapshots)."""
        return self._read_state(key)[1]

    @_guarded
    def step_counts(self, keys: Sequence[Any]) -> np.ndarray:
        """The step counts of open, distinct ``keys``, in their order (int64)."""
        keys = key_list(keys)
        routes = self._keys.route(keys, check_distinct=True)
        read = self._actors.send(
            {sid: msg.ReadSteps(part) for sid, (_, part) in routes.items()}, log=False
        )
        out = np.zeros(len(keys), np.int64)
        for sid, (rows, _) in routes.items():
            out[rows] = read[sid]
        return out

    def _read_state(self, key: Any) -> tuple[dict[str, np.ndarray], int]:
        sid = self.shard_of(key)
        read = self._actors.send({sid: msg.ReadStates([canonical_key(key)])}, log=False)
        ((state, steps),) = read[sid]
        return state, int(steps)

    @_guarded
    def restore(self, key: Any, blob: bytes) -> None:
        """Open ``key`` from a snapshot, on its shard."""
        key = canonical_key(key)
        if key in self._keys:
            raise ValueError(f"stream {key!r} is already open; close it before restoring")
        self.model.restore(blob)  # SnapshotError here, for a bad or foreign snapshot
        places = self._keys.places([key])
        ((sid, _),) = places.values()
        self._actors.send({sid: msg.Restore([key], [blob])})
        self._keys.add(places)

    @_guarded
    def expire(self, idle_seconds: float) -> dict[Any, bytes]:
        """Close the streams idle for at least ``idle_seconds`` on every shard; return
        their snapshots. Idle time is measured by each shard's clock."""
        idle_seconds = check_idle_seconds(idle_seconds)

        def closed(_: int, blobs: dict[Any, bytes]) -> list[msg.Message]:
            return [msg.Close(list(blobs))] if blobs else []

        # Logged as the closes they turn out to be, so a replay does not depend on time.
        gone = self._actors.send(
            {sid: msg.Expire(idle_seconds) for sid in self.shards}, log=False, then=closed
        )
        out: dict[Any, bytes] = {}
        for blobs in gone.values():
            out.update(blobs)
        self._keys.remove(out)
        self._expired += len(out)
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
        if len(self.shards) == 1:
            raise ValueError("cannot remove the last shard")
        sid = max(self.shards) if shard is None else shard
        if sid not in self.shards:
            raise ValueError(f"no shard {sid}; shards: {self.shards}")
        self._keys.ring.remove(sid)
        self._move_keys()
        self._actors.stop(sid)
        return sid

    def _move_keys(self) -> None:
        """Move every key whose owner changed: snapshots out of the old shards (each
        logged as a close), into the new ones, one call per shard each way."""
        moves = self._keys.moves()
        outgoing: dict[int, list[Any]] = {}
        incoming: dict[int, list[Any]] = {}
        for key, (old, new) in moves.items():
            outgoing.setdefault(old, []).append(key)
            incoming.setdefault(new, []).append(key)
        taken = self._actors.send(
            {old: msg.Take(keys) for old, keys in outgoing.items()},
            log=False,
            then=lambda old, _: [msg.Close(outgoing[old])],
        )
        blobs: dict[Any, bytes] = {}
        for old, keys in outgoing.items():
            blobs.update(zip(keys, taken[old], strict=True))
        self._actors.send(
            {new: msg.Restore(keys, [blobs[k] for k in keys]) for new, keys in incoming.items()}
        )
        self._keys.move(moves)
        self.moved_keys = len(moves)

    # -- checkpoints, files ------------------------------------------------------------
    @_guarded
    def checkpoint(self) -> None:
        """Checkpoint every shard now (``step`` does it every ``checkpoint_every``
        ticks); a confirmed checkpoint ends the shard's replay log."""
        self._actors.checkpoint(self._keys.streams_per_shard())

    @_guarded
    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write every shard's pool into ``directory``, then a manifest naming them:
        until the manifest is replaced, ``load`` reads the previous save whole."""
        blobs = self._actors.send({sid: msg.Checkpoint(None) for sid in self.shards}, log=False)
        write_save(Path(directory), blobs, self.model.spec.fingerprint, self._keys.ring.replicas)

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
        model = load_bytes(read_regular(model_path), source=str(model_path),
                           options=SessionOptions("cpu"), io=options.get("io"))  # fmt: skip
        saved = read_save(model, Path(directory))
        pool = cls(
            model_path, address=address, checkpoint_dir=checkpoint_dir,
            replicas=saved.replicas, _checkpoints=saved.blobs, **options,
        )  # fmt: skip
        pool._keys.add(saved.owners)
        for sid, n in Counter(sid for sid, _ in saved.owners.values()).items():
            pool._actors.handles[sid].checkpoint_streams = n
        return pool

    # -- monitoring and shutdown --------------------------------------------------------
    def stats(self) -> ShardedPoolStats:
        """The pool's counters, with each shard's in ``.shards`` (iterating the result
        gives those too). Asks every shard for its capacity; an unusable pool answers
        from what the driver last knew."""
        with self._lock:
            shards = self._actors.shard_stats(self._keys.streams_per_shard())
            recent = np.array(self._tick_seconds, np.float64) * 1e6
            p50, p99 = np.percentile(recent, [50, 99]) if len(recent) else (0.0, 0.0)
            return ShardedPoolStats(
                open_streams=len(self._keys),
                capacity=sum(h.capacity for h in self._actors.handles.values()),
                ticks=self._ticks,
                stream_steps=sum(s.stream_steps for s in shards),
                rejected_samples=self._rejected + self._keys.refused,
                expired_streams=self._expired,
                tick_p50_us=float(p50),
                tick_p99_us=float(p99),
                shards=shards,
            )

    @property
    def tick_seconds(self) -> list[float]:
        """Wall time of the last 1,024 ticks, as the driver measured them."""
        return list(self._tick_seconds)

    def actor(self, shard: int) -> Any:
        """The Ray actor handle of a shard (for operators and tests: ``ray.kill`` it)."""
        return self._actors.handles[shard].actor

    def shutdown(self) -> None:
        """Stop every shard's actor (the Ray runtime itself keeps running). Works on
        an unusable pool too."""
        with self._lock:
            self._actors.shutdown()

    def __enter__(self) -> ShardedPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def _start_shards(self, checkpoints: Mapping[int, bytes | None]) -> None:
        self._actors.start(checkpoints)
        self._keys.ring.add_many(checkpoints)


def _is_a_fleet_pool(pool: ShardedPool) -> FleetPool:
    return pool  # mypy checks here that ShardedPool satisfies FleetPool (make lint)
