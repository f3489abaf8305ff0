"""One call for many streams, one time step each: the graph a ``StreamPool`` runs.

Every graph takes and gives batch-major arrays: samples (n, *sample) and states
{name: (n, *state)}, so the pool gathers and scatters its slot-major state arrays
without caring which graph serves it.

- ``SequenceGraph``: the model file's own graph (any ``ModelIO``), through
  ``Model.run_batch``: the graph streams run, so a pool's results equal its streams'
  bit for bit.
- the one-step graph this project's GRU and LSTM models carry beside it
  (``core.embedded.OneStepGraph``): plain Gemm/Sigmoid/Tanh nodes, faster at large
  batch (docs/design.md, trap 7).

The graph is chosen once per pool (``choose_graph``), never per call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Protocol, get_args

import numpy as np

from ..core.model import Model

__all__ = ["BatchedGraph", "GraphChoice", "SequenceGraph", "check_graph_choice", "choose_graph"]

GraphChoice = Literal["auto", "step", "sequence"]


def check_graph_choice(graph: str) -> None:
    """``ValueError`` unless ``graph`` names a pool graph choice (``model.pool``)."""
    if graph not in get_args(GraphChoice):
        raise ValueError(f"graph must be 'auto', 'step' or 'sequence', got {graph!r}")


class BatchedGraph(Protocol):
    """``run(samples, states) -> (outputs, new states)``, batch-major; ``name`` is
    "step" or "sequence"."""

    @property
    def name(self) -> str: ...
    def run(
        self, samples: np.ndarray, states: Mapping[str, np.ndarray]
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]: ...


class SequenceGraph:
    """The model file's own graph, as streams run it."""

    name = "sequence"

    def __init__(self, model: Model) -> None:
        self.run = model.run_batch


def choose_graph(model: Model, graph: str) -> BatchedGraph:
    """The graph a pool of ``model`` runs: "step" the one-step graph the file carries
    (``ValueError`` where it carries none), "sequence" the model's own, "auto" the first
    where there is one."""
    check_graph_choice(graph)
    if graph != "sequence":
        step = model.one_step_graph()
        if step is not None:
            return step
        if graph == "step":
            raise ValueError(
                f"{model.path} carries no one-step graph (this project's GRU and LSTM "
                f"do); use graph='sequence'"
            )
    return SequenceGraph(model)
