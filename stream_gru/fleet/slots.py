"""Which slot each open stream of a pool holds, and per slot its step count and the time
it was last seen; opening, closing and looking up one key or a whole fleet at once.

Slots are rows of the store's state arrays (``stores.py``). Free slots wait on a stack
(an int64 array), so a million opens take one slice, not a million pops. A fleet
numbered by integer ids has a second index beside the key dict: a table from id to
slot, so that ``step_batch`` with a numpy array of ids (or a list of 64 or more plain
ints) resolves its slots in one vectorized lookup; ids outside the table (negative, or
far beyond the number of streams) are found through the dict as any other key. A
tick's key list is usually the last tick's again: while no stream opened or closed, an
equal list (or array) reuses the slots looked up for it.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from .keys import PLAIN_KEY_TYPES, key_in
from .stores import DeviceStates, HostStates

__all__ = ["KeysNotOpen", "KeysRepeated", "SlotTable"]

_ID_TABLE_MIN = 1 << 16  # the id table may always cover ids below this
_INT64 = (-(2**63), 2**63 - 1)


class KeysNotOpen(KeyError):
    """Keys of a tick that are not open; ``count``: how many."""

    def __init__(self, keys: list[Any], count: int) -> None:
        super().__init__(f"streams not open in this pool: {keys[:20]!r}")
        self.count = count


class KeysRepeated(ValueError):
    """Keys named more than once in one tick; ``count``: the samples beyond one each."""

    def __init__(self, keys: list[Any], count: int) -> None:
        super().__init__(f"keys named more than once in one tick: {keys[:10]!r}")
        self.count = count


class SlotTable:
    """The slots of a pool's open streams (not thread-safe: the pool's lock guards it)."""

    def __init__(self, store: HostStates | DeviceStates, capacity: int) -> None:
        self.store = store
        self.slots: dict[Any, int] = {}
        self.last_seen = np.zeros(capacity, np.float64)
        self.steps = np.zeros(capacity, np.int64)
        self.generation = 0  # moves on whenever a stream opens or closes
        self._free = np.arange(capacity - 1, -1, -1, dtype=np.int64)  # a stack: top at the end
        self._free_top = capacity
        self._stamp = np.zeros(capacity, np.int64)  # scratch for the distinct-keys check
        self._ids = np.full(0, -1, np.int64)  # slot by integer id, -1: not open
        self._beyond: set[int] = set()  # open ids beyond the table, found through the dict
        # the last tick's keys, slots, and whether they were checked to be distinct
        self._recent: tuple[int, Any, np.ndarray, bool] = (-1, None, np.zeros(0, np.int64), False)

    @property
    def capacity(self) -> int:
        return len(self.last_seen)

    def __len__(self) -> int:
        return len(self.slots)

    def __contains__(self, key: object) -> bool:
        return key_in(self.slots, key)

    def open_mask(self, keys: list[Any]) -> list[bool]:
        """Which keys are open; one C-level pass for plain key types."""
        if set(map(type, keys)) <= PLAIN_KEY_TYPES:
            return [k in self.slots for k in keys]
        return [key_in(self.slots, k) for k in keys]

    def slot_of(self, key: Any) -> int:
        """``KeyError`` for a key that is not open (the key is canonical)."""
        try:
            return self.slots[key]
        except KeyError:
            raise KeyError(f"stream {key!r} is not open in this pool") from None

    # -- opening and closing ------------------------------------------------------------
    def open_many(
        self,
        keys: list[Any],
        last_seen: float | np.ndarray,
        steps: np.ndarray | None = None,
        states: Mapping[str, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Give canonical, distinct keys that are not open a slot each, written with
        ``states`` (rows in the keys' order; None: zeros) and ``steps``; their slots.
        All or nothing: a store that fails to write changes nothing."""
        n = len(keys)
        while self._free_top < n:
            self._grow()
        slots = self._free[self._free_top - n : self._free_top][::-1].copy()
        self.store.write_many(slots, states)  # may raise: nothing taken yet
        self._free_top -= n
        self.last_seen[slots] = last_seen
        self.steps[slots] = 0 if steps is None else steps
        self.slots.update(zip(keys, slots.tolist(), strict=True))
        self._index_ids(keys, slots)
        self.generation += 1
        return slots

    def close_many(self, keys: list[Any]) -> np.ndarray:
        """Free the slots of open, canonical ``keys``; their slots."""
        slots = np.fromiter((self.slots.pop(k) for k in keys), np.int64, len(keys))
        self._free[self._free_top : self._free_top + len(slots)] = slots
        self._free_top += len(slots)
        found = _ids_of(keys)
        if found is not None:
            ids = found[0]
            inside = (ids >= 0) & (ids < len(self._ids))
            self._ids[ids[inside]] = -1
            if self._beyond:
                self._beyond.difference_update(ids[ids >= len(self._ids)].tolist())
        self.generation += 1
        return slots

    def _grow(self) -> None:
        old, new = self.capacity, self.capacity * 2
        self.store.grow(new)
        self.last_seen = np.concatenate([self.last_seen, np.zeros(new - old)])
        self.steps = np.concatenate([self.steps, np.zeros(new - old, np.int64)])
        self._stamp = np.zeros(new, np.int64)
        free = np.empty(new, np.int64)
        free[: self._free_top] = self._free[: self._free_top]
        free[self._free_top : self._free_top + new - old] = np.arange(new - 1, old - 1, -1)
        self._free = free
        self._free_top += new - old

    def _index_ids(self, keys: list[Any], slots: np.ndarray) -> None:
        """Put the integer keys of an open in the id table, where they fit in it."""
        found = _ids_of(keys)
        if found is None:
            return
        ids, slots = found[0], slots[found[1]]
        limit = max(_ID_TABLE_MIN, 4 * self.capacity)
        inside = (ids >= 0) & (ids < limit)
        self._beyond.update(ids[ids >= limit].tolist())
        if not inside.any():
            return
        top = int(ids[inside].max()) + 1
        if top > len(self._ids):
            old = len(self._ids)
            grown = np.full(min(limit, max(top, 2 * len(self._ids))), -1, np.int64)
            grown[:old] = self._ids
            self._ids = grown
            # ids opened while they were beyond the table are in the dict only: index
            # them now, or the table would call them not open
            for key in [k for k in self._beyond if old <= k < len(grown)]:
                grown[key] = self.slots[key]
                self._beyond.discard(key)
        self._ids[ids[inside]] = slots[inside]

    # -- a tick's keys ------------------------------------------------------------------
    def resolve(self, keys: list[Any] | np.ndarray, check_distinct: bool) -> np.ndarray:
        """The slots of a tick's keys (canonical, or an integer array of ids):
        ``KeysNotOpen`` for keys that are not open, ``KeysRepeated`` (with
        ``check_distinct``) for keys named twice."""
        generation, recent_keys, recent_slots, checked = self._recent
        same = generation == self.generation and recent_keys is not None
        if same and (checked or not check_distinct) and _same_keys(keys, recent_keys):
            return recent_slots
        ids = keys if isinstance(keys, np.ndarray) else _as_ids(keys)
        slots = None if ids is None else self._resolve_ids(ids)
        if slots is None and isinstance(keys, np.ndarray):  # ids beyond the table: the dict
            return self.resolve(keys.tolist(), check_distinct)
        if slots is None:
            try:
                slots = np.fromiter(map(self.slots.__getitem__, keys), np.int64, len(keys))
            except (KeyError, TypeError):
                missing = [k for k in keys if not key_in(self.slots, k)]
                raise KeysNotOpen(missing, len(missing)) from None
        if check_distinct:
            self._check_distinct(keys, slots)
        kept = keys.copy() if isinstance(keys, np.ndarray) else list(keys)
        self._recent = (self.generation, kept, slots, check_distinct)
        return slots

    def _resolve_ids(self, ids: np.ndarray) -> np.ndarray | None:
        """The slots of an integer id array through the id table; None where some id is
        outside it."""
        if ids.size == 0:
            return np.zeros(0, np.int64)
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= len(self._ids):
            return None
        slots = np.asarray(self._ids[ids], np.int64)
        closed = np.flatnonzero(slots < 0)
        if closed.size:
            missing = ids[closed[:20]].tolist()
            raise KeysNotOpen(missing, int(closed.size))
        return slots

    def _check_distinct(self, keys: list[Any] | np.ndarray, slots: np.ndarray) -> None:
        """``KeysRepeated`` where a slot comes twice: the later position of a repeated
        slot overwrites the earlier one's stamp, O(n) with no clearing."""
        positions = np.arange(len(slots))
        self._stamp[slots] = positions
        repeated = np.flatnonzero(self._stamp[slots] != positions)
        if repeated.size:
            listed = keys.tolist() if isinstance(keys, np.ndarray) else list(keys)
            twice = [k for k, n in Counter(listed).items() if n > 1]
            raise KeysRepeated(twice, int(repeated.size))


def _all_ids(keys: list[Any]) -> np.ndarray | None:
    """``keys`` as an int64 array where every one is a plain int that fits one; else
    None."""
    if not keys or set(map(type, keys)) != {int}:
        return None
    try:
        return np.fromiter(keys, np.int64, len(keys))
    except OverflowError:
        return None


def _ids_of(keys: list[Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """The int keys among ``keys`` that fit an int64, as an array, and their positions
    in ``keys``; None where there are none. Every such key must be in the id table (or
    known to be beyond it), whatever other keys come with it."""
    ids = _all_ids(keys)
    if ids is not None:
        return ids, np.arange(len(keys))
    positions = [i for i, k in enumerate(keys) if type(k) is int and _INT64[0] <= k <= _INT64[1]]
    if not positions:
        return None
    return np.array([keys[i] for i in positions], np.int64), np.array(positions, np.int64)


def _as_ids(keys: list[Any]) -> np.ndarray | None:
    """A long list of plain ints as an int64 array, to be looked up in the id table at
    once (a dict lookup per key costs about as much as the key's share of the graph);
    None for anything else (beyond int64 too: through the dict)."""
    return _all_ids(keys) if len(keys) >= 64 else None


def _same_keys(keys: list[Any] | np.ndarray, recent: Any) -> bool:
    """Whether a tick names the same keys as the last one (whose slots then hold)."""
    if isinstance(keys, np.ndarray):
        return (
            isinstance(recent, np.ndarray)
            and keys.shape == recent.shape
            and bool(np.array_equal(keys, recent))
        )
    if isinstance(recent, np.ndarray) or len(keys) != len(recent):
        return False
    # The same key objects, or equal keys of plain types (for those, equal means the same
    # key): the slots checked when they were looked up still hold.
    if all(map(operator.is_, keys, recent)):
        return True
    return set(map(type, keys)) <= PLAIN_KEY_TYPES and keys == recent
