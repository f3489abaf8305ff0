"""One call for many streams, one time step each: the graphs a ``StreamPool`` runs.

Both take and give batch-major arrays: samples (n, *sample) and states
{name: (n, *state)}, so the pool gathers and scatters its slot-major state arrays
without caring which graph serves it.

- ``SequenceGraph``: the model file's own graph (any ``ModelIO``), with the batch moved
  to and from the axes the model declares.
- ``StepGraph``: the one-step graph that this project's GRU models carry beside the
  sequence graph (``stream_gru.step_graph``): plain Gemm/Sigmoid/Tanh nodes, batch-major
  already, faster at large batch (DESIGN.md, trap 7).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..core.model import StreamingModel

__all__ = ["GRAPH_CHOICES", "BatchedGraph", "SequenceGraph", "StepGraph", "check_graph_choice"]

GRAPH_CHOICES = ("auto", "step", "sequence")


def check_graph_choice(graph: str) -> None:
    """``ValueError`` unless ``graph`` names a pool graph choice (``model.pool``)."""
    if graph not in GRAPH_CHOICES:
        raise ValueError(f"graph must be 'auto', 'step' or 'sequence', got {graph!r}")


States = Mapping[str, np.ndarray]


class BatchedGraph:
    """The interface: ``run(samples, states) -> (outputs, new states)``, batch-major."""

    name = "abstract"

    def run(self, samples: np.ndarray, states: States) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        raise NotImplementedError


class SequenceGraph(BatchedGraph):
    """The model file's graph, as streams run it."""

    name = "sequence"

    def __init__(self, model: StreamingModel) -> None:
        self._model = model
        self._pairs = [(s.input, s.batch_axis) for s in model.spec.states]

    def run(self, samples: np.ndarray, states: States) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        m = self._model
        feeds = {
            name: np.ascontiguousarray(np.moveaxis(states[name], 0, axis or 0))
            for name, axis in self._pairs
        }
        y, new = m._run(m._batch_input(samples), feeds)
        moved = {name: np.moveaxis(new[name], axis or 0, 0) for name, axis in self._pairs}
        return m._batch_output(y), moved


class StepGraph(BatchedGraph):
    """The one-step graph: ``x`` (n, I) and states (n, ...) in, ``y`` and states out."""

    name = "step"

    def __init__(
        self,
        session: Any,
        *,
        input_name: str,
        output_name: str,
        states: Sequence[tuple[str, str, str]],
    ) -> None:
        """``states``: (pool's state name, step graph input, step graph output)."""
        self._session = session
        self._input = input_name
        self._outputs = [output_name, *(out for _, _, out in states)]
        self._states = list(states)

    def run(self, samples: np.ndarray, states: States) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        feeds = {self._input: samples}
        for name, graph_input, _ in self._states:
            feeds[graph_input] = states[name]
        y, *new = self._session.run(self._outputs, feeds)
        return y, {name: arr for (name, _, _), arr in zip(self._states, new, strict=True)}
