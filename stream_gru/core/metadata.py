"""The metadata this project's model files carry (``stream_gru``, a JSON object under
``METADATA_KEY``; docs/design.md lists its fields), read and checked field by field:
each checker returns the value or raises ``ValueError``/``TypeError`` naming the field,
so a crafted file is refused with a message, never half-read."""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from ..errors import ModelError

__all__ = [
    "METADATA_KEY",
    "METADATA_VERSION",
    "POOL_METADATA_KEY",
    "STEP_METADATA_KEY",
    "count",
    "names",
    "normalization",
    "one_of",
    "optional_mapping",
    "optional_str",
    "read_metadata",
]

METADATA_KEY = "stream_gru"
STEP_METADATA_KEY = "stream_gru.step"  # the one-step graph, base64 (see step_graph.py)
POOL_METADATA_KEY = "stream_gru.pool"  # its pooled variant, for state kept on a device
METADATA_VERSION = 1


def read_metadata(meta_map: Mapping[str, str], source: str) -> dict[str, Any] | None:
    """The ``stream_gru`` metadata object of a model file (None where it has none);
    ``ModelError`` for one that is not JSON, not an object, or of another format."""
    raw = meta_map.get(METADATA_KEY)
    if raw is None:
        return None
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ModelError(f"{source}: metadata '{METADATA_KEY}' is not valid JSON: {e}") from None
    except RecursionError:  # nested past Python's recursion limit: crafted
        raise ModelError(
            f"{source}: metadata '{METADATA_KEY}' is nested too deeply to be this project's"
        ) from None
    if not isinstance(meta, dict):
        raise ModelError(f"{source}: metadata '{METADATA_KEY}' is not a JSON object")
    version = meta.get("format_version")
    if version != METADATA_VERSION:
        raise ModelError(
            f"{source}: metadata format_version {version!r} is not supported "
            f"(this runtime reads version {METADATA_VERSION})"
        )
    return meta


def count(value: Any, name: str, least: int = 1) -> int:
    """A metadata size: an int (not a bool, not a string of one) of at least ``least``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be an int >= {least}, got {value!r:.40}")
    return value


def one_of(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r:.40}")
    return str(value)


def normalization(value: Any) -> Mapping[str, tuple[float, ...]]:
    """``{name: finite numbers}`` (lengths are checked against the sizes later)."""
    if not isinstance(value, dict):
        raise ValueError(f"normalization must be an object, got {value!r:.40}")
    out = {}
    for key, numbers in value.items():
        if not isinstance(numbers, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
            for v in numbers
        ):
            raise ValueError(f"normalization {key!r} must be a list of finite numbers")
        out[str(key)] = tuple(float(v) for v in numbers)
    return MappingProxyType(out)


def names(value: Any, name: str) -> tuple[str, ...]:
    """A list of distinct strings without control characters (a string itself is not a
    list of names)."""
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        raise ValueError(f"{name} must be a list of strings, got {value!r:.60}")
    if any(c < " " or c == "\x7f" for n in value for c in n):
        raise ValueError(f"{name} holds a control character: {value!r:.60}")
    twice = sorted({n for n in value if value.count(n) > 1})
    if twice:
        raise ValueError(f"{name} names {twice} more than once")
    return tuple(value)


def optional_mapping(value: Any, name: str) -> Mapping[str, Any] | None:
    if value is not None and not isinstance(value, dict):
        raise ValueError(f"{name} must be an object, got {value!r:.40}")
    return value


def optional_str(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"expected a string or null, got {value!r:.40}")
