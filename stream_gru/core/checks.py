"""Input validation shared by ``Stream`` and ``StreamPool``.

Every check runs before any state changes, and every error names the bad value and
what was expected: a wrong type raises ``TypeError``, a wrong shape or a non-finite
value ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["MAX_STEPS", "as_array", "as_samples", "check_step_count"]

#: A stream's step count is an integer in [0, MAX_STEPS] (int64's largest): snapshots,
#: pool files and the pool's arrays hold it exactly, and a stream at the maximum
#: refuses to step rather than wrap around.
MAX_STEPS = 2**63 - 1


def check_step_count(value: Any) -> int:
    """``value`` as a step count, or ``ValueError`` naming it (a bool, a float, a
    negative number or one beyond ``MAX_STEPS`` is not a step count)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_STEPS:
        raise ValueError(f"a step count is an int in [0, {MAX_STEPS}], got {value!r:.40}")
    return int(value)


_FLOAT32 = np.dtype(np.float32)
_ACCEPTED_KINDS = "fiu"  # float, signed int, unsigned int
_KIND_NAMES = {"b": "bool", "c": "complex", "U": "str", "S": "bytes", "O": "object", "V": "void"}


def _ragged(x: Any) -> str | None:
    """Where the rows of a nested sequence differ in length, e.g. "row 0 has 3 values,
    row 2 has 2" (None where they do not, or ``x`` has no rows)."""
    try:
        lengths = [len(row) for row in x]
    except TypeError:
        lengths = []
    if len(set(lengths)) < 2:
        return None
    first = lengths[0]
    other = next(i for i, n in enumerate(lengths) if n != first)
    return f"row 0 has {first} values, row {other} has {lengths[other]}"


def _numeric(x: Any, what: str) -> np.ndarray:
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(
            f"{what} is a masked array, whose mask would be ignored and its hidden values "
            f"fed in: fill it ({what}.filled(value)) or leave the masked samples out"
        )
    if isinstance(x, np.ndarray):
        arr = x
    elif isinstance(x, (str, bytes)):
        raise TypeError(f"{what} must be a real numeric array, got {type(x).__name__} {x!r:.40}")
    else:
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError) as e:
            ragged = _ragged(x)
            if ragged is not None:
                raise ValueError(f"{what} is ragged: {ragged}") from None
            raise TypeError(
                f"{what} must be a real numeric array, got {type(x).__name__}: {e}"
            ) from None
    if arr.dtype.kind not in _ACCEPTED_KINDS:
        kind = _KIND_NAMES.get(arr.dtype.kind, str(arr.dtype))
        raise TypeError(
            f"{what} must be a real numeric array (float or int), got dtype {arr.dtype} ({kind})"
        )
    return arr


def _where_not_finite(
    arr: np.ndarray,
    axis_names: Sequence[str],
    feature_names: Sequence[str],
    values: np.ndarray | None = None,
) -> str:
    """Where ``arr``'s first non-finite value is, and that value (taken from
    ``values`` where given: the caller's input before conversion)."""
    bad = np.argwhere(~np.isfinite(arr))
    index = tuple(int(i) for i in bad[0])
    value = (arr if values is None else values)[index]
    parts = [f"{name} {i}" for name, i in zip(axis_names, index, strict=False)]
    if feature_names and len(index) == len(axis_names) and axis_names[-1] == "feature":
        parts[-1] = f"feature {index[-1]} ('{feature_names[index[-1]]}')"
    more = f" ({len(bad)} non-finite values in all)" if len(bad) > 1 else ""
    return f"{value} at {', '.join(parts)}{more}"


def _require_finite(
    out: np.ndarray,
    original: np.ndarray,
    what: str,
    axis_names: Sequence[str],
    feature_names: Sequence[str],
) -> None:
    """``ValueError`` naming the first NaN/Inf of ``out`` (the converted ``original``)."""
    if not np.isfinite(out).all():
        if np.isfinite(original).all():  # finite before conversion: too big for float32
            found = _where_not_finite(out, axis_names, feature_names, np.asarray(original))
            raise ValueError(f"{what} must fit {out.dtype.name}, found {found}, which overflows")
        found = _where_not_finite(out, axis_names, feature_names)
        raise ValueError(f"{what} must be finite, found {found}")


def as_array(
    x: Any,
    shape: tuple[int, ...],
    *,
    what: str,
    dtype: np.dtype[Any] = _FLOAT32,
    hint: str = "",
) -> np.ndarray:
    """A new contiguous array of ``dtype`` and exactly ``shape``, all finite: never a
    view of ``x``, so the caller may change ``x`` afterwards."""
    arr = _numeric(x, what)
    if arr.shape != shape:
        raise ValueError(f"{what} has shape {arr.shape}, expected {shape}{hint}")
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.array(arr, dtype=dtype, copy=True, order="C")
    _require_finite(out, arr, what, ["index"] * out.ndim, ())
    return out


def as_samples(
    x: Any,
    sample_shape: tuple[int, ...],
    *,
    what: str,
    leading: tuple[str, ...] = (),
    feature_names: Sequence[str] = (),
    check_finite: bool = True,
) -> np.ndarray:
    """Samples with ``leading`` axes (e.g. ``("step",)``) before ``sample_shape``.

    Returns a contiguous float32 array; a leading axis may have any length. The error
    for a NaN names the step and the feature where it is (``check_finite=False``: the
    caller checks finiteness itself, row by row).
    """
    arr = _numeric(x, what)
    n = len(leading)
    if arr.ndim != n + len(sample_shape) or arr.shape[n:] != sample_shape:
        expected = ", ".join([*leading, *map(str, sample_shape)])
        hint = ""
        if not leading and arr.ndim == len(sample_shape) + 1:
            hint = "; use feed() for a chunk of steps"
        raise ValueError(f"{what} has shape {arr.shape}, expected ({expected}){hint}")
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(arr, dtype=np.float32)
    if check_finite:
        per_sample = ["feature"] if len(sample_shape) == 1 else ["index"] * len(sample_shape)
        _require_finite(out, arr, what, [*leading, *per_sample], feature_names)
    return out
