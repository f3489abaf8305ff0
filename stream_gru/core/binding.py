"""One stream's single-step fast path: onnxruntime IOBinding bound once.

Each stream owns preallocated buffers for its input, its output and two copies of its
state, and two IOBindings made once: one reads state copy A and writes B, the other
reads B and writes A. A step copies the sample into the input buffer, runs the
binding of the current phase and flips the phase: no feed dict, no output
allocation, no state copy (docs/design.md, trap 6).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = ["StepBinding"]


class StepBinding:
    """Buffers and bindings for one stream's ``step`` (not thread-safe by itself)."""

    def __init__(
        self,
        session: Any,
        *,
        input_name: str,
        x_shape: tuple[int, ...],
        output_name: str,
        y_shape: tuple[int, ...],
        y_dtype: np.dtype[Any],
        states: Mapping[str, tuple[str, tuple[int, ...], np.dtype[Any]]],
        constants: Mapping[str, np.ndarray],
    ) -> None:
        self._session = session
        self.x = np.zeros(x_shape, np.float32)
        self.y = np.zeros(y_shape, y_dtype)
        self._copies = (
            {name: np.zeros(shape, dtype) for name, (_, shape, dtype) in states.items()},
            {name: np.zeros(shape, dtype) for name, (_, shape, dtype) in states.items()},
        )
        self._constants = {k: np.ascontiguousarray(v) for k, v in constants.items()}
        self._bindings = tuple(
            self._bind(input_name, output_name, states, self._copies[i], self._copies[1 - i])
            for i in (0, 1)
        )
        self.phase = 0
        # The binding's C++ object and the session's run, looked up once: the public
        # wrapper adds a Python call per step (about 1.5 us, a tenth of a step).
        self._run: Callable[[int], None]
        inner = getattr(session, "_sess", None)
        if inner is not None and all(hasattr(b, "_iobinding") for b in self._bindings):
            raw = tuple(b._iobinding for b in self._bindings)
            run = inner.run_with_iobinding
            self._run = lambda phase: run(raw[phase], None)
        else:
            self._run = lambda phase: session.run_with_iobinding(self._bindings[phase])

    def _bind(
        self,
        input_name: str,
        output_name: str,
        states: Mapping[str, tuple[str, tuple[int, ...], np.dtype[Any]]],
        reads: Mapping[str, np.ndarray],
        writes: Mapping[str, np.ndarray],
    ) -> Any:
        binding = self._session.io_binding()
        binding.bind_cpu_input(input_name, self.x)
        for name, value in self._constants.items():
            binding.bind_cpu_input(name, value)
        self._bind_output(binding, output_name, self.y)
        for name, (output, _, _) in states.items():
            binding.bind_cpu_input(name, reads[name])
            self._bind_output(binding, output, writes[name])
        return binding

    @staticmethod
    def _bind_output(binding: Any, name: str, buffer: np.ndarray) -> None:
        binding.bind_output(name, "cpu", 0, buffer.dtype, list(buffer.shape), buffer.ctypes.data)

    @property
    def state(self) -> dict[str, np.ndarray]:
        """The current state buffers (batched; live: copy before handing out)."""
        return self._copies[self.phase]

    def run(self) -> None:
        """One step from ``x`` and the current state; the new state becomes current."""
        self._run(self.phase)
        self.phase ^= 1
