"""Which shard holds each stream: the driver's key table over the hash ring.

A key's place on the ring is the ``hash64`` of its token (``fleet.keys.key_token``),
so every process agrees where a key lives. ``route`` splits a tick into each shard's
rows; a fleet ticks the same keys again and again, so while no stream opened, closed or
moved, an equal key list reuses the last tick's routing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..fleet.keys import PLAIN_KEY_TYPES, canonical_key, key_in, key_token
from .ring import HashRing, hash64

__all__ = ["KeyTable", "Routes"]

# A tick's routing: shard -> (the tick's rows it takes, their keys).
Routes = dict[int, tuple[np.ndarray, list[Any]]]


class KeyTable:
    """Every open stream's shard and place on the ring; not thread-safe (the pool's
    lock guards it)."""

    def __init__(self, shards: Iterable[int] = (), replicas: int = 128) -> None:
        self.ring = HashRing(shards, replicas=replicas)
        self.refused = 0  # keys refused by route: not open, or named twice
        self._owner: dict[Any, int] = {}  # key -> shard
        self._place: dict[Any, int] = {}  # key -> its place on the ring
        self._generation = 0  # moves on whenever a key opens, closes or moves
        self._recent: tuple[int, list[Any], Routes] = (-1, [], {})

    def __contains__(self, key: object) -> bool:
        return key_in(self._owner, key)

    def __len__(self) -> int:
        return len(self._owner)

    def keys(self) -> list[Any]:
        return list(self._owner)

    def shard_of(self, key: Any) -> int:
        """The shard that holds ``key``: ``KeyError`` if it is not open, ``TypeError``
        for a key of a refused type."""
        try:
            return self._owner[canonical_key(key)]
        except KeyError:
            raise KeyError(f"stream {key!r} is not open in this pool") from None

    def streams_per_shard(self) -> Counter[int]:
        return Counter(self._owner.values())

    def places(self, keys: Iterable[Any]) -> dict[Any, tuple[int, int]]:
        """Where new (canonical) keys would live: key -> (shard, place)."""
        out = {}
        for key in keys:
            place = hash64(key_token(key))
            out[key] = (self.ring.owner(place), place)
        return out

    def add(self, places: Mapping[Any, tuple[int, int]]) -> None:
        """Record keys as open where ``places`` says."""
        for key, (sid, place) in places.items():
            self._owner[key], self._place[key] = sid, place
        self._generation += 1

    def remove(self, keys: Iterable[Any]) -> None:
        for key in keys:
            del self._owner[key], self._place[key]
        self._generation += 1

    def moves(self) -> dict[Any, tuple[int, int]]:
        """The keys whose owner the ring changed: key -> (old shard, new shard)."""
        moves = {}
        for key, old in self._owner.items():
            new = self.ring.owner(self._place[key])
            if new != old:
                moves[key] = (old, new)
        return moves

    def move(self, moves: Mapping[Any, tuple[int, int]]) -> None:
        for key, (_, new) in moves.items():
            self._owner[key] = new
        self._generation += 1

    def route(self, keys: list[Any], check_distinct: bool) -> Routes:
        """Each shard's rows of a tick of canonical ``keys`` and their keys.
        ``KeyError`` naming the keys that are not open, ``ValueError`` naming those
        named twice (with ``check_distinct``)."""
        generation, recent_keys, recent = self._recent
        plain = set(map(type, keys)) <= PLAIN_KEY_TYPES
        if generation == self._generation and plain and keys == recent_keys:
            return recent
        try:
            owners = np.fromiter(map(self._owner.__getitem__, keys), np.int64, len(keys))
        except (KeyError, TypeError):
            unknown = [k for k in keys if k not in self]
            self.refused += len(unknown)
            raise KeyError(f"streams not open in this pool: {unknown[:20]!r}") from None
        if check_distinct and len(set(keys)) != len(keys):
            twice = [k for k, n in Counter(keys).items() if n > 1]
            self.refused += len(keys) - len(set(keys))
            raise ValueError(f"keys named more than once in one tick: {twice[:10]!r}")
        routes = {}
        for sid in np.unique(owners).tolist():
            rows = np.flatnonzero(owners == sid)
            routes[sid] = (rows, [keys[i] for i in rows.tolist()])
        if plain:
            self._recent = (self._generation, keys, routes)
        return routes
