"""The one agreement rule: when two computations of the same model agree.

Two arrays agree when, element by element,

    |got - reference| <= atol + rtol * |reference|        (atol = rtol = 1e-5 by default)

numpy's ``allclose`` with the reference second. The ``rtol`` term makes the rule scale
with the values: a regressor's output near 3,000 may differ by 0.03 (float32 itself
steps by 2.4e-4 there), a probability near 0.5 by 1.5e-5, a state near 1e-3 by 1e-5.
Every check in the project that two computations agree uses this rule: export's check
of the one-step graph, ``verify``, ``compare OLD NEW``, and the tests (pool against
``Stream``, sharded against local, snapshots, the soak).

A float32 computation judged against the exact result (the checkpoint evaluated by
PyTorch in float64) gets an allowance that grows along the sequence as float32's own
error does: a recurrent network carries rounding from step to step, and where it
amplifies it, even PyTorch's own float32 run lands beyond the rule after enough steps.
So at each step the limit widens to ``FLOAT32_ALLOWANCE`` times the largest distance
PyTorch float32 has reached by that step, on the same inputs (never narrower than the
rule). A graph that computes the network passes; one that computes something else
(other weights of the same shapes, a wrong gate) is beyond the plain rule from the
first steps, where float32 has not drifted, and fails. ``docs/agreement.md`` gives
the measurements behind the factor.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_ATOL",
    "DEFAULT_RTOL",
    "DEFAULT_RULE",
    "FLOAT32_ALLOWANCE",
    "Agreement",
    "AgreementRule",
    "assert_agree",
]

DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-5
#: How many times PyTorch float32's own distance from the exact result (in units of
#: the rule's limit, the largest reached so far along the sequence) an onnxruntime
#: graph may land from it. onnxruntime's CPU Sigmoid and Tanh are approximations
#: (absolute error up to 1.5e-7 and 3.1e-7, PyTorch's within 2 float32 ulps), so its
#: float32 runs land a few times farther than PyTorch's, more where the network
#: amplifies; ``docs/agreement.md`` has the measurements.
FLOAT32_ALLOWANCE = 32.0
_REL_FLOOR = 1e-3  # relative differences are reported where |reference| >= this share
# of the tensor's largest magnitude: nearer zero a ratio says nothing (atol covers it)


@dataclass(frozen=True)
class Agreement:
    """How far ``got`` is from ``reference`` under a rule.

    ``excess``: the largest ``|got - reference| / (atol + rtol * |reference|)``, the
    difference in units of the rule's limit. ``allowed``: how many limits were allowed
    (1 for the plain rule; the largest of a float32 allowance); ``used``: the largest
    share of its allowance any element used: the arrays agree where it is at most 1.
    ``beyond``: how many elements lie beyond their allowance, of ``size``; ``first``:
    the index of the first of them (C order), ``worst``: of the largest ``used``.
    ``max_abs`` and ``max_rel`` are for reading (``max_rel`` where ``|reference|`` is
    not near zero). Non-finite values and other shapes never agree.
    """

    max_abs: float
    max_rel: float
    excess: float
    beyond: int
    size: int
    first: tuple[int, ...] | None = None
    worst: tuple[int, ...] | None = None
    allowed: float = 1.0
    used: float = 0.0

    @property
    def holds(self) -> bool:
        return math.isfinite(self.used) and self.used <= 1.0

    def __bool__(self) -> bool:
        return self.holds


@dataclass(frozen=True)
class AgreementRule:
    """``|got - reference| <= atol + rtol * |reference|``, element by element."""

    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL

    def __post_init__(self) -> None:
        for name in ("atol", "rtol"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"{name} must be a real number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
            object.__setattr__(self, name, float(value))

    def __str__(self) -> str:
        return f"|a - b| <= {self.atol:g} + {self.rtol:g} * |b|"

    def limit(self, reference: Any) -> np.ndarray:
        """The largest difference allowed at each element of ``reference``."""
        return self.atol + self.rtol * np.abs(np.asarray(reference, np.float64))

    def ratio(self, got: Any, reference: Any) -> np.ndarray:
        """``|got - reference| / limit`` element by element (same shapes); infinite
        where either is not finite."""
        a = np.asarray(got, np.float64)
        b = np.asarray(reference, np.float64)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            err = np.where(np.isfinite(a) & np.isfinite(b), np.abs(a - b), np.inf)
            return np.where(err == 0, 0.0, err / self.limit(b))  # 0/0: an exact zero limit

    def measure(self, got: Any, reference: Any, *, allowed: float | np.ndarray = 1.0) -> Agreement:
        """How far ``got`` is from ``reference``; ``allowed``: how many limits each
        element may be off (a number, or an array that broadcasts, such as
        ``float32_allowance``)."""
        a = np.asarray(got, np.float64)
        b = np.asarray(reference, np.float64)
        most = float(np.max(allowed)) if np.size(allowed) else 1.0
        if a.shape != b.shape:
            size = max(a.size, b.size)
            return Agreement(math.inf, math.inf, math.inf, size, b.size, allowed=most,
                             used=math.inf)  # fmt: skip
        if a.size == 0:
            return Agreement(0.0, 0.0, 0.0, 0, 0, allowed=most)
        ratio = self.ratio(a, b)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            used = np.broadcast_to(ratio / np.asarray(allowed, np.float64), ratio.shape)
            err = ratio * self.limit(b)
            err = np.where(np.isfinite(err), err, np.where(ratio == 0, 0.0, np.inf))
            mag = np.abs(b)
            floor = _REL_FLOOR * float(np.max(np.where(np.isfinite(mag), mag, 0.0)))
            rel = np.where(mag >= max(floor, 1e-30), err / np.maximum(mag, 1e-30), 0.0)
        bad = ~(used <= 1.0)  # NaN counts as beyond
        beyond = int(np.count_nonzero(bad))
        worst = int(np.argmax(np.where(np.isnan(used), np.inf, used)))
        return Agreement(
            max_abs=float(err.max()),
            max_rel=float(rel.max()),
            excess=float(ratio.max()),
            beyond=beyond,
            size=int(b.size),
            first=_index(np.argmax(bad), b.shape) if beyond else None,
            worst=_index(worst, b.shape),
            allowed=most,
            used=float(used.flat[worst]) if not np.isnan(used.flat[worst]) else math.inf,
        )

    def holds(self, got: Any, reference: Any) -> bool:
        """Whether ``got`` agrees with ``reference`` everywhere."""
        return self.measure(got, reference).holds

    def excess(self, got: Any, reference: Any) -> float:
        """The largest difference in units of the limit (at most 1: they agree)."""
        return self.measure(got, reference).excess

    def float32_allowance(
        self, float32: Any, reference: Any, *, time_axis: int, shape: tuple[int, ...] = ()
    ) -> np.ndarray:
        """How many limits a float32 graph may land from the exact ``reference`` at each
        step: ``max(1, FLOAT32_ALLOWANCE * e)``, where ``e`` is the largest distance (in
        limits, over every stream and output) PyTorch's ``float32`` run of the same
        inputs reached at that step or any before it. Returns an array that broadcasts
        against ``reference`` (or against ``shape``, which has the same time axis)."""
        ratio = self.ratio(float32, reference)
        steps = ratio.shape[time_axis]
        per_step = np.moveaxis(ratio, time_axis, 0).reshape(steps, -1).max(axis=1)
        allowed = np.maximum(1.0, FLOAT32_ALLOWANCE * np.maximum.accumulate(per_step))
        allowed = np.where(np.isfinite(allowed), allowed, 1.0)  # float32 overflowed
        target = shape or ratio.shape
        view = [1] * len(target)
        view[time_axis % len(target)] = steps
        return allowed.reshape(view)


def _index(flat: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(flat), shape)) if shape else ()


DEFAULT_RULE = AgreementRule()


def assert_agree(
    got: Any, reference: Any, rule: AgreementRule = DEFAULT_RULE, *, what: str = "values"
) -> Agreement:
    """``AssertionError`` (for tests, like ``numpy.testing``) unless ``got`` agrees
    with ``reference`` by ``rule``; returns the measurement."""
    m = rule.measure(got, reference)
    if not m.holds:
        a, b = np.asarray(got), np.asarray(reference)
        where = ""
        if m.worst and a.shape == b.shape:
            where = f" at {m.worst}: {a[m.worst]!r} vs {b[m.worst]!r}"
        elif a.shape != b.shape:
            where = f": shapes {a.shape} vs {b.shape}"
        raise AssertionError(
            f"{what} do not agree by {rule}: {m.beyond} of {m.size} beyond, up to "
            f"{m.excess:.3g} times the limit (max |d| {m.max_abs:.3g}){where}"
        )
    return m
