"""Where a pool's states live: host arrays, or one tensor kept on the device.

Both stores hold every stream's state in a slot (row) of one tensor per state, and
do the same five things: write a slot (open, restore), read slots (snapshots, save),
grow, and tick: run one step of the given slots and put the new states back.

- ``HostStates``: numpy arrays; a tick gathers the slots' rows, runs the pool's graph
  (``graphs.py``) and scatters the new rows back. Cost grows with the tick.
- ``DeviceStates``: two device tensors (OrtValues), swapped every tick, and the
  pooled one-step graph (Gather, the cell, ScatterND) bound to them with IOBinding, so
  the state never crosses to the host on a tick (docs/design.md: "state kept on the
  device"). Writes from the host (open, restore) queue up and reach the device in one
  copy before the next tick; reads copy the state to the host once and serve from
  that copy until the next tick.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..core.model import Model
from ..core.session import CUDA
from .graphs import BatchedGraph, check_graph_choice, choose_graph

__all__ = ["DeviceStates", "HostStates", "make_store"]

Shapes = Mapping[str, tuple[int, ...]]
Dtypes = Mapping[str, np.dtype[Any]]


class HostStates:
    """Slot-major numpy arrays, one per state tensor."""

    def __init__(self, shapes: Shapes, dtypes: Dtypes, capacity: int, graph: BatchedGraph):
        self._graph = graph
        self.graph_name = graph.name
        self._arrays = {n: np.zeros((capacity, *shape), dtypes[n]) for n, shape in shapes.items()}

    def write(self, slot: int, state: Mapping[str, np.ndarray] | None) -> None:
        for name, arr in self._arrays.items():
            arr[slot] = 0 if state is None else state[name]

    def read(self, slots: np.ndarray) -> dict[str, np.ndarray]:
        return {name: arr[slots] for name, arr in self._arrays.items()}

    def grow(self, capacity: int) -> None:
        for name, arr in self._arrays.items():
            grown = np.zeros((capacity, *arr.shape[1:]), arr.dtype)
            grown[: len(arr)] = arr
            self._arrays[name] = grown

    def tick(self, slots: np.ndarray, samples: np.ndarray) -> np.ndarray:
        states = {name: np.take(arr, slots, axis=0) for name, arr in self._arrays.items()}
        y, new = self._graph.run(samples, states)
        for name, arr in self._arrays.items():
            arr[slots] = new[name]
        return y


class DeviceStates:
    """One state tensor on a device (``"cuda"``, or ``"cpu"`` to test the same logic
    without one), ticked by the pooled one-step graph."""

    graph_name = "step"  # the pooled variant of the one-step graph

    def __init__(
        self,
        session: Any,
        *,
        state: str,
        shape: tuple[int, ...],
        capacity: int,
        device: str,
    ) -> None:
        import onnxruntime

        self._ort = onnxruntime
        self._session = session
        self._state = state
        self._device = device
        self._shape = shape
        self._current = self._on_device(np.zeros((capacity, *shape), np.float32))
        self._spare = self._on_device(np.zeros((capacity, *shape), np.float32))
        self._pending: dict[int, np.ndarray] = {}
        self._host: np.ndarray | None = None  # a host copy, valid until the next tick

    def _on_device(self, array: np.ndarray) -> Any:
        # A copy: on the CPU an OrtValue would otherwise share the array's memory.
        return self._ort.OrtValue.ortvalue_from_numpy(array.copy(), self._device, 0)

    def _host_copy(self) -> np.ndarray:
        if self._host is None:
            host = self._current.numpy().copy()
            for slot, value in self._pending.items():
                host[slot] = value
            self._host = host
        return self._host

    def write(self, slot: int, state: Mapping[str, np.ndarray] | None) -> None:
        value = np.zeros(self._shape, np.float32) if state is None else state[self._state]
        self._pending[slot] = np.array(value, np.float32, copy=True)
        if self._host is not None:
            self._host[slot] = value

    def read(self, slots: np.ndarray) -> dict[str, np.ndarray]:
        return {self._state: self._host_copy()[slots]}

    def grow(self, capacity: int) -> None:
        host = self._host_copy()
        grown = np.zeros((capacity, *self._shape), np.float32)
        grown[: len(host)] = host
        self._current = self._on_device(grown)
        self._spare = self._on_device(np.zeros_like(grown))
        self._pending.clear()
        self._host = grown

    def _flush(self) -> None:
        if self._pending:
            self._current.update_inplace(self._host_copy())
            self._pending.clear()

    def tick(self, slots: np.ndarray, samples: np.ndarray) -> np.ndarray:
        self._flush()
        binding = self._session.io_binding()
        binding.bind_cpu_input("x", np.ascontiguousarray(samples))
        binding.bind_cpu_input("slots", np.ascontiguousarray(slots, np.int64))
        binding.bind_ortvalue_input("states", self._current)
        binding.bind_output("y", "cpu")
        binding.bind_ortvalue_output("states_out", self._spare)
        self._session.run_with_iobinding(binding)
        y = np.asarray(binding.get_outputs()[0].numpy())
        self._current, self._spare = self._spare, self._current
        self._host = None
        return y


def make_store(
    model: Model, capacity: int, graph_choice: str, state_on_device: bool | None
) -> HostStates | DeviceStates:
    """Where a pool of ``model`` keeps its states: device-resident where asked (by
    default: on CUDA, where the file carries the pooled graph), host arrays otherwise.
    Only the graph that will serve the ticks is loaded."""
    check_graph_choice(graph_choice)
    spec = model.spec
    wanted = state_on_device if state_on_device is not None else model.provider == CUDA
    pooled = model.pooled_graph() if wanted and graph_choice != "sequence" else None
    if state_on_device is None:
        state_on_device = pooled is not None
    if not state_on_device:
        graph = choose_graph(model, graph_choice)
        return HostStates(spec.state_shapes, spec.state_dtypes, capacity, graph)
    if pooled is None:
        raise ValueError(
            "state_on_device needs the pooled one-step graph, which only this project's "
            "GRU models carry (and graph='auto' or 'step')"
        )
    return DeviceStates(
        pooled.session,
        state=pooled.state,
        shape=spec.state_shapes[pooled.state],
        capacity=capacity,
        device="cuda" if model.provider == CUDA else "cpu",
    )
