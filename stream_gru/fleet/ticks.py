"""A tick's input checked before any stream changes, and what a tick gives back.

``check_samples`` checks a ``{key: sample}`` tick, ``check_batch`` the ``X`` of
``step_batch``; both name every bad key and why. ``TickResult`` is what
``step_valid`` returns, ``PoolStats`` what ``stats()`` returns. Needs no lock and no
pool: the sharded pool's driver checks its ticks with the same functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.checks import as_samples
from ..core.spec import ModelSpec
from .keys import keys_at

__all__ = [
    "PoolStats",
    "TickResult",
    "check_batch",
    "check_idle_seconds",
    "check_samples",
    "drop_not_open",
    "non_finite_rows",
    "refused_rows",
    "row_count",
]


def non_finite_rows(xs: Any, n: int, sample_shape: tuple[int, ...]) -> list[int]:
    """Rows of a well-shaped numeric ``X`` that hold NaN or Inf (after float32)."""
    try:
        arr = np.asarray(xs)
        if arr.dtype.kind not in "fiu" or arr.shape != (n, *sample_shape):
            return []
        with np.errstate(over="ignore", invalid="ignore"):
            finite = np.isfinite(arr.astype(np.float32)).reshape(n, -1).all(axis=1)
    except (TypeError, ValueError):
        return []
    return [int(i) for i in np.flatnonzero(~finite)]


def check_idle_seconds(idle_seconds: Any) -> float:
    """``idle_seconds`` as a float: a real number >= 0 (inf: none is that idle), or
    ``TypeError``/``ValueError`` naming it."""
    if isinstance(idle_seconds, (bool, np.bool_)) or not isinstance(
        idle_seconds, (int, float, np.integer, np.floating)
    ):
        raise TypeError(
            f"idle_seconds must be a number of seconds, got {type(idle_seconds).__name__} "
            f"{idle_seconds!r:.40}"
        )
    if not idle_seconds >= 0:
        raise ValueError(f"idle_seconds must be a non-negative number, got {idle_seconds!r}")
    return float(idle_seconds)


def row_count(xs: Any) -> int:
    """How many samples ``X`` holds (its first dimension, or its length where it is
    ragged; 0 where neither tells)."""
    try:
        shape = np.shape(xs)
    except Exception:  # ragged: count its rows
        try:
            return len(xs)
        except TypeError:
            return 0
    return int(shape[0]) if shape else 0


def check_batch(spec: ModelSpec, keys: Sequence[Any] | np.ndarray, xs: Any) -> np.ndarray:
    """``step_batch``'s ``X`` checked whole: float32 ``(len(keys), *sample)``, or
    ``ValueError`` naming the keys whose rows are not finite (``TypeError`` for a
    non-numeric ``X``)."""
    try:
        samples = as_samples(
            xs, spec.sample_shape, what="X", leading=("stream",), feature_names=spec.feature_names
        )
    except ValueError as e:
        bad = non_finite_rows(xs, len(keys), spec.sample_shape)
        if not bad:
            raise
        named = ", ".join(repr(k) for k in keys_at(keys, np.array(bad[:20], np.int64)))
        raise ValueError(
            f"{len(bad)} bad sample(s), no stream stepped: not finite for {named} (first: {e})"
        ) from None
    if samples.shape[0] != len(keys):
        raise ValueError(f"X has {samples.shape[0]} rows for {len(keys)} keys")
    return samples


def refused_rows(spec: ModelSpec, keys: Sequence[Any] | np.ndarray | None, xs: Any) -> int:
    """How many samples a refused ``step_batch(keys, X)`` rejected: the rows that are
    not finite where that was the fault, else every row (``keys`` None: the keys
    themselves were refused)."""
    if keys is None:
        return row_count(xs)
    bad = non_finite_rows(xs, len(keys), spec.sample_shape)
    return len(bad) if bad else max(len(keys), row_count(xs))


def check_samples(
    spec: ModelSpec, samples: Mapping[Any, Any]
) -> tuple[list[Any], np.ndarray, dict[Any, str]]:
    """Check a tick's samples against ``spec``: (good keys, their samples stacked
    (n, *sample) float32, {bad key: why}). Well-formed numpy samples are checked
    together in one pass; the rest, one by one, for their messages. Needs no lock."""
    if not isinstance(samples, Mapping):
        raise TypeError(f"samples must be a mapping {{key: sample}}, got {type(samples).__name__}")
    shape = spec.sample_shape
    keys = list(samples)
    values = list(samples.values())
    fast = [
        i
        for i, v in enumerate(values)
        if type(v) is np.ndarray and v.shape == shape and v.dtype.kind in "fiu"
    ]
    stacked = np.zeros((len(keys), *shape), np.float32)
    ok = np.zeros(len(keys), np.bool_)
    if fast:
        with np.errstate(over="ignore", invalid="ignore"):
            stacked[fast] = np.stack([values[i] for i in fast])
        ok[fast] = np.isfinite(stacked[fast].reshape(len(fast), -1)).all(axis=1)
    rejected: dict[Any, str] = {}
    for i in np.flatnonzero(~ok).tolist():
        try:
            stacked[i] = as_samples(
                values[i], shape, what="sample", feature_names=spec.feature_names
            )
            ok[i] = True
        except (ValueError, TypeError) as e:
            rejected[keys[i]] = str(e)
    return [k for k, good in zip(keys, ok.tolist(), strict=True) if good], stacked[ok], rejected


def drop_not_open(
    keys: list[Any], samples: np.ndarray, is_open: list[bool], rejected: dict[Any, str]
) -> tuple[list[Any], np.ndarray]:
    """``step_valid``'s good keys and their samples without those that are not open
    (``is_open`` False), each of which goes into ``rejected`` as "stream not open"."""
    if all(is_open):
        return keys, samples
    rejected.update({k: "stream not open" for k, ok in zip(keys, is_open, strict=True) if not ok})
    kept = [k for k, ok in zip(keys, is_open, strict=True) if ok]
    return kept, samples[np.asarray(is_open, np.bool_)]


@dataclass(frozen=True)
class TickResult:
    """What ``StreamPool.step_valid`` did: outputs of the streams it stepped, and the
    rejected keys with the reason each was rejected."""

    outputs: dict[Any, np.ndarray]
    rejected: dict[Any, str]


@dataclass(frozen=True)
class PoolStats:
    """Counters for monitoring, cheap to read at any time.

    Tick latencies are over the last 1,024 ticks, in microseconds (0 before the first).
    """

    open_streams: int
    capacity: int
    ticks: int
    stream_steps: int
    rejected_samples: int
    expired_streams: int
    tick_p50_us: float
    tick_p99_us: float
