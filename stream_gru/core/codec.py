"""One stream's state: checked, converted, and written to and read from snapshot bytes.

A state is ``{state input name: array}`` without the batch axis: what ``Stream.state``
gives and ``pool.state(key)`` too. The graph takes each array with its batch axis
(``batched``); a snapshot stores it without (``encode``/``decode``, in the container of
``formats.snapshot``, tied to the model's weights fingerprint). ``docs/formats.md``
describes the bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import SnapshotError
from ..formats import snapshot as _snapshot
from .checks import as_array, check_step_count
from .spec import ModelSpec, StatePair

__all__ = ["STREAM_KIND", "State", "StateCodec"]

STREAM_KIND = b"STRM"
State = dict[str, np.ndarray]


@dataclass(frozen=True)
class StateCodec:
    """The state tensors of a model: their pairs (input name, output name, batch axis),
    per-stream shapes and dtypes, and the weights' fingerprint snapshots carry."""

    pairs: tuple[StatePair, ...]
    shapes: Mapping[str, tuple[int, ...]]
    dtypes: Mapping[str, np.dtype[Any]]
    fingerprint: str

    @classmethod
    def of(cls, spec: ModelSpec) -> StateCodec:
        return cls(spec.states, spec.state_shapes, spec.state_dtypes, spec.fingerprint)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.input for p in self.pairs)

    def initial(self) -> State:
        """A new stream's state: zeros."""
        return {p.input: np.zeros(self.shapes[p.input], self.dtypes[p.input]) for p in self.pairs}

    def batched(self, name: str, array: np.ndarray) -> np.ndarray:
        """One stream's ``array`` with the batch axis (of size 1) the graph takes."""
        axis = self._pair(name).batch_axis
        return array if axis is None else np.expand_dims(array, axis)

    def unbatched(self, name: str, array: np.ndarray) -> np.ndarray:
        """A copy of one stream's ``array`` without its batch axis."""
        axis = self._pair(name).batch_axis
        out = array if axis is None else np.take(array, 0, axis=axis)
        return np.array(out, copy=True)

    def check(self, value: Any) -> State:
        """``value`` as a state: a mapping of exactly the state names to arrays of their
        shapes and dtypes, all finite (copies). ``TypeError``/``ValueError`` naming what
        is wrong."""
        if not isinstance(value, Mapping):
            raise TypeError(
                f"state must be a mapping of state names to arrays, got {type(value).__name__}"
            )
        if set(value) != set(self.names):
            raise ValueError(
                f"state has keys {sorted(map(str, value))}, expected {list(self.names)}"
            )
        return {
            name: as_array(
                value[name],
                self.shapes[name],
                what=f"state '{name}'",
                dtype=self.dtypes[name],
                hint=" (the state of one stream, without the batch axis)",
            )
            for name in self.names
        }

    def encode(self, state: Mapping[str, np.ndarray], steps: int) -> bytes:
        """Snapshot bytes of one stream's ``state`` after ``steps`` samples."""
        return _snapshot.encode(STREAM_KIND, self.fingerprint, dict(state), {"steps": steps})

    def decode(self, blob: Any) -> tuple[State, int]:
        """(state, steps) from snapshot bytes; ``SnapshotError`` for bytes that are not
        a snapshot of this model (corrupt, truncated, another model's, a bad count)."""
        arrays, extra = _snapshot.decode(blob, STREAM_KIND, self.fingerprint)
        try:
            state = self.check(arrays)
        except (TypeError, ValueError) as e:
            raise SnapshotError(f"snapshot does not fit this model's state: {e}") from None
        try:
            steps = check_step_count(extra.get("steps", 0))
        except ValueError as e:
            raise SnapshotError(f"snapshot has a bad step count: {e}") from None
        return state, steps

    def _pair(self, name: str) -> StatePair:
        return next(p for p in self.pairs if p.input == name)
