"""The consistent-hash ring: balanced, stable, and adding a shard moves few keys."""

from __future__ import annotations

from collections import Counter

import pytest

from stream_gru.distributed.ring import HashRing, hash64
from stream_gru.fleet.keys import key_token

KEYS = (
    [f"sensor-{i}" for i in range(20_000)] + list(range(5_000)) + [("site", i) for i in range(500)]
)
HASHES = [hash64(key_token(k)) for k in KEYS]


def _owners(ring):
    return [ring.owner(h) for h in HASHES]


def test_keys_spread_evenly_over_the_shards():
    counts = Counter(_owners(HashRing(range(4))))
    assert set(counts) == {0, 1, 2, 3}
    share = [n / len(KEYS) for n in counts.values()]
    assert max(share) < 0.25 * 1.3 and min(share) > 0.25 * 0.7, counts


def test_the_same_key_has_the_same_owner_in_every_ring_with_the_same_shards():
    assert _owners(HashRing([0, 1, 2])) == _owners(HashRing([2, 0, 1]))
    assert hash64(key_token("a")) == hash64(b'["s","a"]')  # stable across processes


@pytest.mark.parametrize("shards", [1, 2, 3, 7])
def test_adding_a_shard_moves_only_keys_to_it_and_about_its_share(shards):
    ring = HashRing(range(shards))
    before = _owners(ring)
    ring.add(shards)
    after = _owners(ring)
    moved = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert all(b == shards for _, b in moved)  # every moved key went to the new shard
    share = len(moved) / len(KEYS)
    assert 0.5 / (shards + 1) < share < 1.5 / (shards + 1), share


def test_removing_a_shard_moves_only_its_own_keys():
    ring = HashRing(range(4))
    before = _owners(ring)
    ring.remove(2)
    after = _owners(ring)
    for a, b in zip(before, after, strict=True):
        assert (a == b) if a != 2 else (b != 2)


def test_bad_calls():
    ring = HashRing([0])
    with pytest.raises(ValueError, match="shard 0 is already on the ring"):
        ring.add(0)
    with pytest.raises(ValueError, match=r"shard 5 is not on the ring \(shards: \[0\]\)"):
        ring.remove(5)
    ring.remove(0)
    with pytest.raises(ValueError, match="the ring has no shards"):
        ring.owner(1)
    with pytest.raises(ValueError, match=r"replicas must be in \[1, 4096\], got 0"):
        HashRing(replicas=0)
    with pytest.raises(ValueError, match=r"replicas must be in \[1, 4096\], got 1000000"):
        HashRing([0], replicas=1_000_000)


def test_a_ring_is_built_at_once_and_owns_keys_as_one_built_shard_by_shard():
    """add_many sorts once (O(n log n)); the owners are those of adding one by one."""
    import time

    one_by_one = HashRing(replicas=64)
    for shard in range(40):
        one_by_one.add(shard)
    at_once = HashRing(range(40), replicas=64)
    assert at_once._points == one_by_one._points and at_once._owners == one_by_one._owners
    start = time.perf_counter()
    big = HashRing(range(200), replicas=1000)  # 200,000 points: minutes when quadratic
    assert len(big._points) == 200_000 and time.perf_counter() - start < 20
