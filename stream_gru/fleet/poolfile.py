"""The pool file: every stream of a pool, its key, state, step count and idle time, in
one checksummed container tied to the model's weights (``docs/formats.md``).

``encode`` writes what a pool holds; ``decode`` reads it back and refuses, with
``SnapshotError``, anything the pool would not hold: a corrupt or foreign container,
malformed keys, arrays of other shapes or dtypes than this model's, non-finite values,
step counts outside [0, 2**63 - 1], negative idle times.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.checks import MAX_STEPS
from ..core.spec import ModelSpec
from ..errors import SnapshotError
from ..formats import snapshot as _snapshot
from .keys import check_key, decode_key, encode_key

__all__ = ["POOL_KIND", "PoolFile", "decode", "encode"]

POOL_KIND = b"POOL"


@dataclass(frozen=True)
class PoolFile:
    """The streams of a pool file: ``keys`` (n), ``states`` {name: (n, *state)},
    ``steps`` int64 (n) and ``idle`` seconds float64 (n)."""

    keys: list[Any]
    states: dict[str, np.ndarray]
    steps: np.ndarray
    idle: np.ndarray


def encode(
    fingerprint: str,
    keys: list[Any],
    states: Mapping[str, np.ndarray],
    steps: np.ndarray,
    idle: np.ndarray,
) -> bytes:
    """The bytes of a pool file."""
    arrays = {f"state:{name}": rows for name, rows in states.items()}
    arrays["idle"] = np.asarray(idle, np.float64)
    arrays["steps"] = np.asarray(steps, np.int64)
    return _snapshot.encode(POOL_KIND, fingerprint, arrays, {"keys": [encode_key(k) for k in keys]})


def decode(spec: ModelSpec, blob: Any, *, what: str = "pool file", quote: bool = True) -> PoolFile:
    """The streams of a pool file made for ``spec``'s model. ``what`` names the bytes in
    messages; ``quote=False`` keeps their contents out of them."""
    arrays, extra = _snapshot.decode(blob, POOL_KIND, spec.fingerprint, what=what, quote=quote)
    try:
        keys = [decode_key(k) for k in extra["keys"]]
        for k in keys:
            check_key(k)
    except Exception as e:  # a crafted key table: any error means the same
        raise SnapshotError(f"{what} has malformed keys: {e!r}") from None
    n = len(keys)
    expected = {f"state:{s.input}": (n, *spec.state_shapes[s.input]) for s in spec.states}
    expected.update(idle=(n,), steps=(n,))
    got = {k: v.shape for k, v in arrays.items()}
    if got != expected or len(set(keys)) != n:
        raise SnapshotError(f"{what} does not fit this model: arrays {got}, expected {expected}")
    # The values the pool will hold, in the dtypes it holds them: a file this runtime
    # wrote has exactly these (a float64 1e300 state would be inf in float32).
    dtypes = {f"state:{s.input}": spec.state_dtypes[s.input] for s in spec.states}
    dtypes.update(idle=np.dtype(np.float64), steps=np.dtype(np.int64))
    other = [f"{k} {v.dtype}" for k, v in arrays.items() if v.dtype != dtypes[k]]
    if other:
        wanted = ", ".join(f"{k} {v}" for k, v in dtypes.items())
        raise SnapshotError(f"{what} stores {', '.join(other)}; a pool file holds {wanted}")
    with np.errstate(all="ignore"):  # crafted arrays: the checks answer, not warnings
        floats = {name: a for name, a in arrays.items() if a.dtype.kind == "f"}
        not_finite = [name for name, a in floats.items() if not np.isfinite(a).all()]
        bad_steps = bool(((arrays["steps"] < 0) | (arrays["steps"] > MAX_STEPS)).any())
        negative_idle = bool((arrays["idle"] < 0).any())
    if not_finite or bad_steps or negative_idle:
        raise SnapshotError(
            f"{what} holds bad values: non-finite {not_finite}, step counts outside "
            f"[0, {MAX_STEPS}] ({bad_steps}), or negative idle times ({negative_idle})"
        )
    states = {s.input: arrays[f"state:{s.input}"] for s in spec.states}
    return PoolFile(keys, states, arrays["steps"], arrays["idle"])
