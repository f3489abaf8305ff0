"""One stream: a model plus this stream's state, carried between calls.

``step`` runs one sample through buffers bound once (``core.binding``); ``feed`` runs a
chunk in one call where the model has a time axis. Both check their input whole before
anything runs, so a call that raises changes nothing.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from .binding import StepBinding
from .checks import MAX_STEPS, as_samples, check_step_count
from .codec import State, StateCodec
from .layout import AxisLayout
from .spec import ModelSpec

__all__ = ["Stream", "StreamModel"]

_FLOAT32 = np.dtype(np.float32)


class StreamModel(Protocol):
    """What a stream needs from its model (``core.model.Model`` has it)."""

    @property
    def spec(self) -> ModelSpec: ...
    @property
    def session(self) -> Any: ...
    @property
    def layout(self) -> AxisLayout: ...
    @property
    def codec(self) -> StateCodec: ...
    @property
    def step_shapes(self) -> Any: ...
    def run(
        self, x: np.ndarray, states: Mapping[str, np.ndarray]
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]: ...
    def batched(self, state: Mapping[str, np.ndarray]) -> State: ...


class Stream:
    """One stream: the model plus this stream's state, carried between calls.

    ``step(x)`` runs one sample, ``feed(X)`` a chunk of samples in one call; both leave
    the state where the last sample left it. A call that raises changes nothing.
    A stream may be used from several threads; calls are serialized.
    """

    def __init__(self, model: StreamModel) -> None:
        self.model = model
        spec, shapes = model.spec, model.step_shapes
        initial = model.batched(model.codec.initial())
        self._fast = StepBinding(
            model.session,
            input_name=spec.io.input,
            x_shape=shapes.x,
            output_name=spec.io.output,
            y_shape=shapes.y,
            y_dtype=shapes.y_dtype,
            states={
                s.input: (s.output, initial[s.input].shape, initial[s.input].dtype)
                for s in spec.states
            },
            constants=spec.io.constants,
        )
        self._x = self._fast.x.reshape(spec.sample_shape)  # a view of the input buffer
        self._y = model.layout.step_output(self._fast.y)  # a view, too
        assert np.shares_memory(self._y, self._fast.y)
        # A short vector is checked fastest as Python floats, a long one by numpy.
        self._small = self._x.ndim == 1 and self._x.size <= 64
        self._steps = 0
        self._lock = threading.Lock()

    @property
    def _states(self) -> dict[str, np.ndarray]:
        return self._fast.state

    @_states.setter
    def _states(self, value: Mapping[str, np.ndarray]) -> None:
        for name, buffer in self._fast.state.items():
            np.copyto(buffer, value[name])

    def __repr__(self) -> str:
        return f"Stream(steps={self._steps}, model={self.model!r})"

    @property
    def steps(self) -> int:
        """Samples run since the stream started or was reset (kept by snapshots)."""
        return self._steps

    def step(self, x: Any) -> np.ndarray:
        """Run one sample ``x`` of shape (input_size,); returns this step's output."""
        with self._lock:
            if self._steps >= MAX_STEPS:
                self._refuse_steps(1)
            if (
                type(x) is np.ndarray
                and x.dtype == _FLOAT32
                and x.shape == self._x.shape
                and (all(map(math.isfinite, x.tolist())) if self._small else np.isfinite(x).all())
            ):
                self._x[...] = x  # the common case: float32 of the right shape, all finite
            else:  # the full check: conversions, and the error naming what is wrong
                spec = self.model.spec
                self._x[...] = as_samples(
                    x, spec.sample_shape, what="x", feature_names=spec.feature_names
                )
            self._fast.run()
            self._steps += 1
            return self._y.copy()

    def feed(self, xs: Any) -> np.ndarray:
        """Run a chunk ``X`` of shape (T, input_size); returns (T, output_size).

        Equal to T calls of ``step`` (bit for bit on this project's models). The chunk
        is checked whole before any of it runs.
        """
        m = self.model
        spec, layout = m.spec, m.layout
        samples = as_samples(
            xs, spec.sample_shape, what="X", leading=("step",), feature_names=spec.feature_names
        )
        n = samples.shape[0]
        if self._steps + n > MAX_STEPS:
            self._refuse_steps(n)
        if n == 0:
            return np.zeros((0, *self._y.shape), self._y.dtype)
        with self._lock:
            if layout.time_axis is None:  # a step per call
                states, ys = self._states, []
                for i in range(n):
                    y, states = m.run(layout.one_step(samples[i]), states)
                    ys.append(layout.step_output(y))
                self._states = states
                self._steps += n
                return np.stack(ys)
            y, new = m.run(layout.chunk(samples), self._states)
            self._states = new
            self._steps += n
        return layout.chunk_output(y)

    def _refuse_steps(self, n: int) -> None:
        raise ValueError(
            f"this stream has run {self._steps:,} steps; {n:,} more would pass {MAX_STEPS:,}, "
            f"the most a step count holds"
        )

    def reset(self) -> None:
        """Back to the initial state, as a fresh stream."""
        with self._lock:
            self._states = self.model.batched(self.model.codec.initial())
            self._steps = 0

    def load(self, state: Mapping[str, np.ndarray], steps: int) -> None:
        """Set the state (checked, without batch axes) and the step count together (what
        ``model.restore`` does with a snapshot's)."""
        checked = self.model.codec.check(state)
        steps = check_step_count(steps)
        with self._lock:
            self._states = self.model.batched(checked)
            self._steps = steps

    @property
    def state(self) -> dict[str, np.ndarray]:
        """A copy of the state: {state input name: array without the batch axis}."""
        codec = self.model.codec
        with self._lock:
            return {k: codec.unbatched(k, v) for k, v in self._states.items()}

    @state.setter
    def state(self, value: Mapping[str, Any]) -> None:
        checked = self.model.codec.check(value)
        with self._lock:
            self._states = self.model.batched(checked)

    def snapshot(self) -> bytes:
        """The state as bytes: format version, model fingerprint, state, checksum.

        Restore with ``model.restore(blob)``, in this process or another.
        """
        codec = self.model.codec
        with self._lock:
            state = {k: codec.unbatched(k, v) for k, v in self._states.items()}
            return codec.encode(state, self._steps)
