"""Where a pool's states live: host arrays, or one tensor kept on the device.

Both stores hold every stream's state in a slot (row) of one tensor per state, and
do the same four things: write slots (open, restore), read slots (snapshots, save),
grow, and tick: run one step of the given slots and put the new states back.

- ``HostStates``: numpy arrays; a tick gathers the slots' rows, runs the pool's graph
  (``graphs.py``) and scatters the new rows back. Cost grows with the tick.
- ``DeviceStates``: two device tensors (OrtValues) per state, swapped every tick, and
  the pooled one-step graph (Gather, the cell, ScatterND) bound to them with IOBinding,
  so the state never crosses to the host on a tick. Writes from the host (open,
  restore) go to a host copy and reach the device in one copy before the next tick;
  reads copy the states to the host once and serve from that copy until the next tick.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..core.embedded import PooledGraph
from ..core.model import Model
from ..core.session import CUDA
from .graphs import BatchedGraph, check_graph_choice, choose_graph

__all__ = ["BlocksDone", "DeviceStates", "HostStates", "block_rows_for", "make_store"]

Shapes = Mapping[str, tuple[int, ...]]
Dtypes = Mapping[str, np.dtype[Any]]


def block_rows_for(shapes: Shapes) -> int:
    """Rows per block of a large tick: the most whose layer of state (four bytes a value,
    one layer of every state tensor of a row together) fits in 256 KiB, a power of two
    in [64, 4096]: 1,024 for a GRU of H=64, 512 for an LSTM of H=64 (h and c), 256 for
    H=256. A tick of many streams runs block by block, so that the graph's intermediate
    tensors, each about as wide as a layer, stay in the caches (docs/design.md, trap 11)."""
    width = sum(int(shape[-1]) for shape in shapes.values() if shape) if shapes else 64
    rows = (256 * 1024) // (4 * max(width, 1))
    return int(min(4096, max(64, 2 ** int(np.log2(max(rows, 1))))))


class BlocksDone(Exception):
    """A blocked tick failed after its first ``rows`` rows had stepped (the pool turns
    it into ``PartialTickError``)."""

    def __init__(self, rows: int) -> None:
        super().__init__(f"the first {rows} rows stepped")
        self.rows = rows


class HostStates:
    """Slot-major numpy arrays, one per state tensor."""

    def __init__(
        self,
        shapes: Shapes,
        dtypes: Dtypes,
        capacity: int,
        graph: BatchedGraph,
        block_rows: int | None = None,
    ) -> None:
        self._graph = graph
        self.graph_name = graph.name
        self.block_rows = block_rows or block_rows_for(shapes)
        self._arrays = {n: np.zeros((capacity, *shape), dtypes[n]) for n, shape in shapes.items()}

    def write_many(self, slots: np.ndarray, states: Mapping[str, np.ndarray] | None) -> None:
        """Rows ``states[name]`` (in the slots' order) into ``slots``; None: zeros."""
        for name, arr in self._arrays.items():
            arr[slots] = 0 if states is None else states[name]

    def read(self, slots: np.ndarray) -> dict[str, np.ndarray]:
        return {name: arr[slots] for name, arr in self._arrays.items()}

    def grow(self, capacity: int) -> None:
        for name, arr in self._arrays.items():
            grown = np.zeros((capacity, *arr.shape[1:]), arr.dtype)
            grown[: len(arr)] = arr
            self._arrays[name] = grown

    def tick(self, slots: np.ndarray, samples: np.ndarray) -> np.ndarray:
        """Step ``slots`` by ``samples``, ``block_rows`` at a time: a row's result does
        not depend on the other rows of its call (trap 10), so the blocks give the
        outputs of one call, bit for bit (tested)."""
        rows, n, size = _as_run(slots), len(slots), self.block_rows
        if n <= size:
            return self._step(rows, samples)
        out: np.ndarray | None = None
        for start in range(0, n, size):
            end = min(start + size, n)
            block = (
                slice(rows.start + start, rows.start + end)
                if isinstance(rows, slice)
                else rows[start:end]
            )
            try:
                y = self._step(block, samples[start:end])
            except Exception as e:
                if start == 0:
                    raise  # nothing changed
                raise BlocksDone(start) from e
            if out is None:
                out = np.empty((n, *y.shape[1:]), y.dtype)
            out[start:end] = y
        assert out is not None
        return out

    def _step(self, rows: slice | np.ndarray, samples: np.ndarray) -> np.ndarray:
        """One call of the graph for the slots ``rows``: a slice of consecutive slots is
        read in place, other slots are gathered first."""
        if isinstance(rows, slice):
            states = {name: arr[rows] for name, arr in self._arrays.items()}
        else:
            states = {name: np.take(arr, rows, axis=0) for name, arr in self._arrays.items()}
        y, new = self._graph.run(samples, states)
        for name, arr in self._arrays.items():
            arr[rows] = new[name]
        return y


def _as_run(slots: np.ndarray) -> slice | np.ndarray:
    """``slots`` as a slice where they are consecutive and ascending (a fleet ticked in
    the order it was opened), which saves a gather's copy; else ``slots``."""
    n = len(slots)
    if n and int(slots[-1]) - int(slots[0]) == n - 1 and (n == 1 or (np.diff(slots) == 1).all()):
        return slice(int(slots[0]), int(slots[0]) + n)
    return slots


class DeviceStates:
    """The states on a device (``"cuda"``, or ``"cpu"`` to test the same logic without
    one), one tensor per state, ticked by the pooled one-step graph."""

    graph_name = "step"  # the pooled variant of the one-step graph

    def __init__(
        self,
        graph: PooledGraph,
        *,
        shapes: Shapes,
        capacity: int,
        device: str,
    ) -> None:
        import onnxruntime

        self._ort = onnxruntime
        self._graph = graph
        self._device = device
        self._shapes = dict(shapes)
        self._current = {
            name: self._on_device(np.zeros((capacity, *shapes[name]), np.float32))
            for name, _, _ in graph.states
        }
        self._spare = {
            n: self._on_device(np.zeros_like(v.numpy())) for n, v in self._current.items()
        }
        self._host: dict[str, np.ndarray] | None = None  # a host copy, valid until a tick
        self._dirty = False  # the host copy holds writes the device has not seen

    def _on_device(self, array: np.ndarray) -> Any:
        # A copy: on the CPU an OrtValue would otherwise share the array's memory.
        return self._ort.OrtValue.ortvalue_from_numpy(array.copy(), self._device, 0)

    def _host_copy(self) -> dict[str, np.ndarray]:
        if self._host is None:
            self._host = {name: value.numpy().copy() for name, value in self._current.items()}
        return self._host

    def write_many(self, slots: np.ndarray, states: Mapping[str, np.ndarray] | None) -> None:
        """Rows into ``slots`` of the host copy; they reach the device in one copy
        before the next tick."""
        for name, host in self._host_copy().items():
            host[slots] = 0 if states is None else states[name]
        self._dirty = True

    def read(self, slots: np.ndarray) -> dict[str, np.ndarray]:
        return {name: host[slots] for name, host in self._host_copy().items()}

    def grow(self, capacity: int) -> None:
        grown = {}
        for name, host in self._host_copy().items():
            grown[name] = np.zeros((capacity, *self._shapes[name]), np.float32)
            grown[name][: len(host)] = host
        self._current = {name: self._on_device(value) for name, value in grown.items()}
        self._spare = {name: self._on_device(value) for name, value in grown.items()}
        self._dirty = False
        self._host = grown

    def _flush(self) -> None:
        if self._dirty:
            for name, host in self._host_copy().items():
                self._current[name].update_inplace(host)
            self._dirty = False

    def tick(self, slots: np.ndarray, samples: np.ndarray) -> np.ndarray:
        self._flush()
        session = self._graph.session
        binding = session.io_binding()
        binding.bind_cpu_input("x", np.ascontiguousarray(samples))
        binding.bind_cpu_input("slots", np.ascontiguousarray(slots, np.int64))
        binding.bind_output("y", "cpu")
        for name, graph_input, graph_output in self._graph.states:
            binding.bind_ortvalue_input(graph_input, self._current[name])
            binding.bind_ortvalue_output(graph_output, self._spare[name])
        session.run_with_iobinding(binding)
        y = np.asarray(binding.get_outputs()[0].numpy())
        self._current, self._spare = self._spare, self._current
        self._host = None
        return y


def make_store(
    model: Model,
    capacity: int,
    graph_choice: str,
    state_on_device: bool | None,
    block_rows: int | None = None,
) -> HostStates | DeviceStates:
    """Where a pool of ``model`` keeps its states: device-resident where asked (by
    default: on CUDA, where the file carries the pooled graph), host arrays otherwise
    (ticked ``block_rows`` rows at a time; default ``block_rows_for``). Only the graph
    that will serve the ticks is loaded."""
    check_graph_choice(graph_choice)
    spec = model.spec
    wanted = state_on_device if state_on_device is not None else model.provider == CUDA
    pooled = model.pooled_graph() if wanted and graph_choice != "sequence" else None
    if state_on_device is None:
        state_on_device = pooled is not None
    if not state_on_device:
        graph = choose_graph(model, graph_choice)
        return HostStates(spec.state_shapes, spec.state_dtypes, capacity, graph, block_rows)
    if pooled is None:
        raise ValueError(
            "state_on_device needs the pooled one-step graph, which this project's models "
            "carry (and graph='auto' or 'step')"
        )
    return DeviceStates(
        pooled,
        shapes=spec.state_shapes,
        capacity=capacity,
        device="cuda" if model.provider == CUDA else "cpu",
    )
