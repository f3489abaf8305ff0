"""A consistent-hash ring: which shard owns a key, so that adding a shard moves few keys.

Each shard has ``replicas`` points on a 64-bit ring, at the hashes of its id; a key
belongs to the first point at or after its own hash, wrapping around. Adding a shard
of ``n`` takes about a ``1/(n+1)`` share of the keys, all of them from other shards to
the new one; removing one hands only its own keys to the rest. Hashes are blake2b of
bytes, so every machine and every Python process agrees (``hash()`` is salted).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable

__all__ = ["MAX_REPLICAS", "HashRing", "hash64"]

#: The most points a shard may have on the ring (a ring is built in O(n log n)).
MAX_REPLICAS = 4096


def hash64(data: bytes) -> int:
    """A stable 64-bit hash of ``data``."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class HashRing:
    """Shards (int ids) on a ring; ``owner(h)`` for a key's ``hash64``."""

    def __init__(self, shards: Iterable[int] = (), replicas: int = 128) -> None:
        if isinstance(replicas, bool) or not isinstance(replicas, int):
            raise TypeError(f"replicas must be an int, got {type(replicas).__name__}")
        if not 1 <= replicas <= MAX_REPLICAS:
            raise ValueError(f"replicas must be in [1, {MAX_REPLICAS}], got {replicas}")
        self.replicas = replicas
        self._points: list[int] = []
        self._owners: list[int] = []
        self._shards: set[int] = set()
        self.add_many(shards)

    @property
    def shards(self) -> list[int]:
        return sorted(self._shards)

    def __len__(self) -> int:
        return len(self._shards)

    def add(self, shard: int) -> None:
        self.add_many([shard])

    def add_many(self, shards: Iterable[int]) -> None:
        """Add shards in order, in one sort: O(n log n) for n points. Where points tie,
        a later shard's comes first (as inserting each before its equals would)."""
        shards = list(shards)
        twice = [s for s in shards if s in self._shards or shards.count(s) > 1]
        if twice:
            raise ValueError(f"shard {twice[0]} is already on the ring")
        batches = [
            [(hash64(f"shard {shard} replica {r}".encode()), shard) for r in range(self.replicas)]
            for shard in shards
        ]
        new = [point for batch in reversed(batches) for point in batch]  # later shards first
        if not new:
            return
        self._shards.update(shards)
        merged = sorted([*new, *zip(self._points, self._owners, strict=True)],
                        key=lambda p: p[0])  # fmt: skip
        self._points = [p for p, _ in merged]
        self._owners = [o for _, o in merged]

    def remove(self, shard: int) -> None:
        if shard not in self._shards:
            raise ValueError(f"shard {shard} is not on the ring (shards: {self.shards})")
        self._shards.discard(shard)
        keep = [i for i, owner in enumerate(self._owners) if owner != shard]
        self._points = [self._points[i] for i in keep]
        self._owners = [self._owners[i] for i in keep]

    def owner(self, key_hash: int) -> int:
        """The shard that owns a key whose ``hash64`` is ``key_hash``."""
        if not self._points:
            raise ValueError("the ring has no shards")
        i = bisect.bisect_left(self._points, key_hash)
        return self._owners[i % len(self._points)]
