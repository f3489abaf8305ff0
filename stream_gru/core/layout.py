"""Where a model keeps the batch and time axes of its data input and output.

This project's models take ``x`` as (batch, time, features); Silero VAD takes (batch,
samples) with no time axis; some models take (time, batch, features). ``AxisLayout``
turns the runtime's own shapes (one sample ``(*sample)``, a chunk ``(T, *sample)``, a
batch of one step of ``n`` streams ``(n, *sample)``) into what the graph takes, and
the graph's output back, so that ``Stream`` and ``StreamPool`` never need to know.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .spec import ModelIO

__all__ = ["AxisLayout"]


@dataclass(frozen=True)
class AxisLayout:
    """The batch and time axes of the data input and output (``None`` where the model
    has none), as non-negative indices into a tensor of ``rank`` dimensions."""

    batch_axis: int | None
    time_axis: int | None
    rank: int

    @classmethod
    def of(cls, io: ModelIO, sample_rank: int) -> AxisLayout:
        """The layout of ``io`` for samples of ``sample_rank`` dimensions."""
        rank = sample_rank + (io.batch_axis is not None) + (io.time_axis is not None)
        batch = None if io.batch_axis is None else io.batch_axis % rank
        time = None if io.time_axis is None else io.time_axis % rank
        return cls(batch, time, rank)

    def one_step(self, sample: np.ndarray) -> np.ndarray:
        """One stream's one sample ``(*sample)`` -> the data input (batch and time 1)."""
        x = sample
        for axis in sorted(a for a in (self.batch_axis, self.time_axis) if a is not None):
            x = np.expand_dims(x, axis)
        return np.ascontiguousarray(x)

    def chunk(self, samples: np.ndarray) -> np.ndarray:
        """One stream's ``(T, *sample)`` -> the data input (the model needs a time axis)."""
        b, t = self.batch_axis, self.time_axis
        if t is None:
            raise ValueError("a chunk runs in one call only through a time axis")
        if b is None:
            return np.ascontiguousarray(np.moveaxis(samples, 0, t))
        return np.ascontiguousarray(np.moveaxis(samples[np.newaxis], [0, 1], [b, t]))

    def batch(self, samples: np.ndarray) -> np.ndarray:
        """``n`` streams' one sample each ``(n, *sample)`` -> the data input."""
        b, t = self.batch_axis, self.time_axis
        if b is None:
            raise ValueError("a batch of streams needs a batch axis")
        if t is None:
            return np.ascontiguousarray(np.moveaxis(samples, 0, b))
        return np.ascontiguousarray(np.moveaxis(samples[:, np.newaxis], [0, 1], [b, t]))

    def step_output(self, y: np.ndarray) -> np.ndarray:
        """The data output of ``one_step`` -> ``(*out)`` (a view where it can be)."""
        drop = {a for a in (self.batch_axis, self.time_axis) if a is not None}
        return y.reshape([d for i, d in enumerate(y.shape) if i not in drop])

    def chunk_output(self, y: np.ndarray) -> np.ndarray:
        """The data output of ``chunk`` -> ``(T, *out)``."""
        b, t = self.batch_axis, self.time_axis
        assert t is not None, "chunk() refused a model without a time axis"
        if b is None:
            return np.moveaxis(y, t, 0)
        out: np.ndarray = np.moveaxis(y, [b, t], [0, 1])[0]
        return out

    def batch_output(self, y: np.ndarray) -> np.ndarray:
        """The data output of ``batch`` -> ``(n, *out)``."""
        b, t = self.batch_axis, self.time_axis
        assert b is not None, "batch() refused a model without a batch axis"
        if t is None:
            return np.moveaxis(y, b, 0)
        out: np.ndarray = np.moveaxis(y, [b, t], [0, 1])[:, 0]
        return out
