"""Stream keys: which values name a stream, and their canonical form and bytes.

A key is a str, an int (not a bool), bytes, or a tuple of those (nested tuples
allowed): what a pool file stores exactly. A numpy integer scalar of any width,
signed or unsigned, means the equal ``int``, and a pool stores it as that ``int``, so
a fleet numbered by a numpy array reaches the same streams as one numbered by Python
ints. Floats and bools are refused with ``TypeError`` naming the type: ``1.0`` and
``True`` hash like ``1`` and must never reach stream ``1``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "MAX_KEY_DEPTH",
    "PLAIN_KEY_TYPES",
    "Key",
    "canonical_key",
    "canonical_samples",
    "check_key",
    "decode_key",
    "encode_key",
    "is_key",
    "key_in",
    "key_list",
    "key_token",
    "keys_at",
    "refuse_masked",
    "split_refused",
    "tick_keys",
]

Key = Hashable

# Key types compared by value in one C-level pass (bool and float excluded: True == 1.0 == 1).
PLAIN_KEY_TYPES = frozenset({str, int, bytes})


def _refused(key: Any) -> TypeError:
    return TypeError(
        f"a stream key must be a str, int (numpy integers too), bytes or a tuple of those, "
        f"got {type(key).__name__} {key!r:.60}"
    )


#: Tuples in a key nest at most this deep.
MAX_KEY_DEPTH = 16


def canonical_key(key: Any, _depth: int = 0) -> Any:
    """``key`` as a pool stores it: numpy integers and subclasses of int, str and bytes
    become the equal plain value (inside tuples too); other accepted keys are returned
    as they are. ``TypeError`` for a value of another type (a float, a bool, a list,
    None, ...), or tuples nested deeper than ``MAX_KEY_DEPTH``."""
    kind = type(key)
    if kind is str or kind is int or kind is bytes:
        return key
    if isinstance(key, np.integer):  # np.bool_ is not an np.integer
        return int(key)
    if isinstance(key, bool) or not isinstance(key, (str, int, bytes, tuple)):
        raise _refused(key)
    if isinstance(key, tuple):
        if _depth >= MAX_KEY_DEPTH:
            raise TypeError(f"a stream key's tuples nest at most {MAX_KEY_DEPTH} deep")
        return tuple(canonical_key(k, _depth + 1) for k in key)
    # a subclass of str, int or bytes (an IntEnum member, say) compares and hashes as its
    # value: stored as that value, so that the id table and saved files see the same key
    # (the base types' own methods: a subclass's __str__ or __int__ may say otherwise)
    if isinstance(key, int):
        return int.__int__(key)
    if isinstance(key, str):
        return str.__str__(key)
    return bytes.__getitem__(key, slice(None))


def check_key(key: Any) -> None:
    """Raise ``TypeError`` unless ``key`` is of a type a pool accepts."""
    canonical_key(key)


def is_key(key: Any) -> bool:
    """Whether ``key`` is of a type a pool accepts (see the module docstring)."""
    kind = type(key)
    if kind is str or kind is int or kind is bytes:
        return True
    try:
        canonical_key(key)
    except TypeError:
        return False
    return True


def key_in(slots: Mapping[Any, Any], key: Any) -> bool:
    """``key in slots``, but False for keys of a type a pool refuses (``1.0`` and
    ``True`` hash like ``1``, and must not reach stream ``1``) and for unhashable ones;
    a numpy integer finds the equal int."""
    try:
        return canonical_key(key) in slots
    except TypeError:
        return False


def refuse_masked(keys: Any) -> None:
    """``TypeError`` for keys given as a masked array: its masked entries would become
    None (or, for an id array, their hidden values), never what was meant."""
    if isinstance(keys, np.ma.MaskedArray):
        raise TypeError(
            "keys is a masked array, whose mask would be ignored: pass the keys to use "
            "(keys.compressed()), not a mask over them"
        )


def key_list(keys: Iterable[Any] | np.ndarray) -> list[Any]:
    """A tick's keys as a list of canonical keys. A numpy integer (or str/bytes) array
    converts in one C-level call; ``TypeError`` names the first key of a refused type,
    or a single str/bytes given where a sequence of keys was expected."""
    refuse_masked(keys)
    if isinstance(keys, np.ndarray):
        if keys.ndim != 1:
            raise ValueError(f"keys must be one-dimensional, got an array of shape {keys.shape}")
        if keys.dtype.kind in "iuUS":
            return keys.tolist()  # type: ignore[no-any-return]
        if keys.dtype.kind != "O":
            raise TypeError(
                f"keys of dtype {keys.dtype}: a stream key must be a str, int (numpy integers "
                f"too), bytes or a tuple of those"
            )
    elif isinstance(keys, (str, bytes)):
        raise TypeError(f"keys must be a sequence of stream keys, got one {type(keys).__name__}")
    out = list(keys)
    if set(map(type, out)) <= PLAIN_KEY_TYPES:
        return out
    return [canonical_key(k) for k in out]


def split_refused(samples: Mapping[Any, Any]) -> tuple[Mapping[Any, Any], dict[Any, str]]:
    """A tick's ``{key: sample}`` under canonical keys, and ``{key: why}`` for the keys
    of a refused type (taken out)."""
    if not isinstance(samples, Mapping):
        raise TypeError(f"samples must be a mapping {{key: sample}}, got {type(samples).__name__}")
    if set(map(type, samples)) <= PLAIN_KEY_TYPES:
        return samples, {}
    good: dict[Any, Any] = {}
    refused: dict[Any, str] = {}
    for key, value in samples.items():
        try:
            good[canonical_key(key)] = value
        except TypeError as e:
            refused[key] = str(e)
    return good, refused


def canonical_samples(samples: Mapping[Any, Any]) -> Mapping[Any, Any]:
    """A tick's ``{key: sample}`` under canonical keys; ``TypeError`` naming every key
    of a refused type."""
    good, refused = split_refused(samples)
    if refused:
        named = ", ".join(f"{type(k).__name__} {k!r:.40}" for k in list(refused)[:20])
        raise TypeError(
            f"{len(refused)} stream key(s) of a refused type, no stream stepped: {named} (a "
            f"stream key must be a str, int (numpy integers too), bytes or a tuple of those)"
        )
    return good


def encode_key(key: Any) -> Any:
    """The JSON form of a canonical key (as a pool file stores it)."""
    if isinstance(key, str):
        return ["s", str.__str__(key)]
    if isinstance(key, int):
        return ["x", format(key, "x")]  # hex: not bound by Python's int-to-decimal limit
    if isinstance(key, bytes):
        return ["b", base64.b64encode(key).decode("ascii")]
    return ["t", [encode_key(k) for k in key]]


def decode_key(data: Any) -> Any:
    """The key ``encode_key`` wrote; ``ValueError`` for a malformed record."""
    tag, value = data
    if tag == "s" and isinstance(value, str):
        return value
    if tag == "x" and isinstance(value, str):
        return int(value, 16)
    if tag == "b" and isinstance(value, str):
        return base64.b64decode(value.encode("ascii"), validate=True)
    if tag == "t" and isinstance(value, list):
        return tuple(decode_key(v) for v in value)
    raise ValueError(f"bad key record {data!r:.60}")


def key_token(key: Any) -> bytes:
    """A key's canonical bytes (as a pool file stores it): equal keys, equal bytes, on
    every machine and Python (``np.int64(5)`` and ``5`` too); what a router hashes to
    place a key."""
    return json.dumps(encode_key(canonical_key(key)), separators=(",", ":")).encode()


def tick_keys(keys: Any) -> list[Any] | np.ndarray:
    """A tick's keys: a one-dimensional integer array kept as it is (its ids are looked
    up at once; a masked array is not one: ``key_list`` refuses it), anything else as a
    list of canonical keys (``key_list``)."""
    if type(keys) is np.ndarray and keys.ndim == 1 and keys.dtype.kind in "iu":
        return keys
    return key_list(keys)


def keys_at(keys: Sequence[Any] | np.ndarray, positions: np.ndarray) -> list[Any]:
    """The keys at ``positions``, an id array's as the plain ints they stand for."""
    if isinstance(keys, np.ndarray):
        return keys[positions].tolist()  # type: ignore[no-any-return]
    return [keys[i] for i in positions.tolist()]
