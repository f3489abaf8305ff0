"""A loaded model: ``Model`` (one shared onnxruntime session) and what it promises.

The model is shared; each ``Stream`` (``core.stream``) owns its state and carries it
from call to call. What a pool, a shard or an export check needs from a model is public
here: its ``spec``, ``layout`` (where the batch and time axes are), ``codec`` (one
stream's state and its snapshots), ``run`` (one call of the model's own graph),
``run_batch`` (one step of ``n`` streams, batch-major) and the graphs the file carries
beside its own (``one_step_graph``, ``pooled_graph``). ``fleet.model.StreamingModel``
adds pools. Nothing here imports torch or onnx.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..errors import ModelError
from ..formats.files import NotARegularFile, read_regular
from ..formats.fingerprint import fingerprint_model_bytes
from .codec import State, StateCodec
from .embedded import OneStepGraph, PooledGraph, check_against, embedded_bytes, open_embedded
from .layout import AxisLayout
from .session import Provider, SessionOptions, check_placement, create_session
from .spec import POOL_METADATA_KEY, STEP_METADATA_KEY, ModelIO, ModelSpec, read_spec
from .stream import Stream

__all__ = ["Model", "StepShapes", "Stream"]

M = TypeVar("M", bound="Model")


@dataclass(frozen=True)
class StepShapes:
    """The data input and output of one step of one stream, as the graph takes and
    gives them (with their batch and time axes of size 1)."""

    x: tuple[int, ...]
    y: tuple[int, ...]
    y_dtype: np.dtype[Any]


class Model:
    """A loaded model: one shared session, from which streams are made.

    ``spec`` describes the model; ``provider`` is the execution provider in use;
    ``session`` is the underlying ``onnxruntime.InferenceSession``; ``placement`` says
    where each node ran on CUDA (None on the CPU).
    """

    def __init__(
        self, path: Path, session: Any, spec: ModelSpec, provider: str, options: SessionOptions
    ) -> None:
        self.path = path
        self.session = session
        self.spec = spec
        self.provider = provider
        self.options = options
        io = spec.io
        self.layout = AxisLayout.of(io, len(spec.sample_shape))
        self.codec = StateCodec.of(spec)
        self._output_names = [io.output, *(s.output for s in io.states)]
        self._constants = dict(io.constants)
        # One step on a zero sample: proves the graph runs, and sizes the step buffers.
        # On CUDA it also tells which provider ran each node (``placement``).
        zero = self.layout.one_step(np.zeros(spec.sample_shape, np.float32))
        initial = self.batched(self.codec.initial())
        (y, _), self.placement = self.first_run(session, str(path), lambda: self.run(zero, initial))
        self.step_shapes = StepShapes(zero.shape, y.shape, y.dtype)
        self._embedded: dict[str, Any] = {}
        self._embedded_lock = threading.Lock()

    # -- loading -------------------------------------------------------------------
    @classmethod
    def load(
        cls: type[M],
        path: str | os.PathLike[str],
        *,
        provider: Provider = "auto",
        threads: int = 1,
        spinning: bool = False,
        io: ModelIO | None = None,
    ) -> M:
        """Load an ONNX model for streaming (see ``stream_gru.load``)."""
        options = SessionOptions(provider=provider, threads=threads, spinning=spinning)
        if io is not None and not isinstance(io, ModelIO):
            raise TypeError(f"io must be a stream_gru.ModelIO, got {type(io).__name__}")
        path = Path(path)
        try:
            data = read_regular(path)
        except NotARegularFile as e:
            raise ModelError(f"{path} is {e.kind}, expected an .onnx model file") from None
        return cls.from_bytes(data, source=str(path), options=options, io=io, path=path)

    @classmethod
    def from_bytes(
        cls: type[M],
        data: bytes,
        *,
        source: str = "model",
        options: SessionOptions | None = None,
        io: ModelIO | None = None,
        path: Path | None = None,
    ) -> M:
        """A model from the bytes of an ONNX file (weights inside it, no external data).
        The session and the fingerprint come from the same bytes, so a file replaced
        while it loads cannot mix one file's weights with another's."""
        options = options or SessionOptions()
        if not data:
            raise ModelError(f"{source} is empty (0 bytes), expected an .onnx model file")
        fingerprint = fingerprint_model_bytes(data, source=source)
        session, in_use = create_session(data, options, source=source)
        spec = read_spec(
            inputs=session.get_inputs(),
            outputs=session.get_outputs(),
            metadata=session.get_modelmeta().custom_metadata_map,
            fingerprint=fingerprint,
            io=io,
            source=source,
        )
        return cls(path or Path(source), session, spec, in_use, options)

    def __repr__(self) -> str:
        s = self.spec
        kind = f"{s.cell} {s.task}" if s.cell else "third-party"
        return (
            f"{type(self).__name__}({str(self.path)!r}, {kind}, input_size={s.input_size}, "
            f"output_size={s.output_size}, provider={self.provider!r})"
        )

    # -- streams -------------------------------------------------------------------
    def stream(self) -> Stream:
        """A new stream starting from the initial (zero) state."""
        return Stream(self)

    def restore(self, blob: bytes) -> Stream:
        """A new stream continuing from ``Stream.snapshot()`` bytes.

        Raises ``SnapshotError`` for a corrupt or truncated snapshot or one made by
        another model (other weights, even of the same shapes).
        """
        state, steps = self.codec.decode(blob)
        stream = Stream(self)
        stream.load(state, steps)
        return stream

    def initial_state(self) -> State:
        """The initial state of a stream, without the batch axis."""
        return self.codec.initial()

    # -- the model's graph ---------------------------------------------------------
    def run(
        self, x: np.ndarray, states: Mapping[str, np.ndarray]
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One call of the model's own graph: the data input and the states as the
        graph takes them (its axes), the constants added; (data output, new states)."""
        feeds = {self.spec.io.input: x, **states, **self._constants}
        outs = self.session.run(self._output_names, feeds)
        new = {s.input: o for s, o in zip(self.spec.states, outs[1:], strict=True)}
        return outs[0], new

    def run_batch(
        self, samples: np.ndarray, states: Mapping[str, np.ndarray]
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One step of ``n`` streams in one call, batch-major: samples ``(n, *sample)``
        and states ``{name: (n, *state)}`` in, outputs ``(n, *out)`` and states out."""
        feeds = {
            p.input: np.ascontiguousarray(np.moveaxis(states[p.input], 0, p.batch_axis or 0))
            for p in self.spec.states
        }
        y, new = self.run(self.layout.batch(samples), feeds)
        moved = {p.input: np.moveaxis(new[p.input], p.batch_axis or 0, 0) for p in self.spec.states}
        return self.layout.batch_output(y), moved

    def batched(self, state: Mapping[str, np.ndarray]) -> State:
        """One stream's state with the batch axes the graph takes."""
        return {name: self.codec.batched(name, value) for name, value in state.items()}

    def first_run(
        self, session: Any, source: str, run: Callable[[], Any]
    ) -> tuple[Any, dict[str, str] | None]:
        """Run a session's first call (proves the graph runs) and check where its nodes
        ran on CUDA: (what ``run`` returned, the placement or None)."""
        try:
            result = run()
        except Exception as e:  # onnxruntime's own exception types
            raise ModelError(f"{source} fails on one zero sample: {e}") from None
        return result, check_placement(session, self.provider, source=source)

    # -- the graphs the file carries beside its own ------------------------------------
    def one_step_graph(self) -> OneStepGraph | None:
        """The one-step graph the file carries (this project's GRUs), loaded and checked
        against the model's own graph once; None where the file carries none."""
        graph: OneStepGraph | None = self._cached("step", self._load_one_step)
        return graph

    def pooled_graph(self) -> PooledGraph | None:
        """The pooled one-step graph (for states kept on a device), loaded and checked
        once; None where the file carries none."""
        graph: PooledGraph | None = self._cached("pool", self._load_pooled)
        return graph

    def _cached(self, key: str, load: Callable[[], Any]) -> Any:
        with self._embedded_lock:
            if key not in self._embedded:
                self._embedded[key] = load()
            return self._embedded[key]

    def _session_of(self, key: str, info: Mapping[str, Any] | None, source: str) -> Any:
        metadata = self.session.get_modelmeta().custom_metadata_map
        data = embedded_bytes(metadata, key, info, source)
        return None if data is None else open_embedded(data, self.options, source)

    def _load_one_step(self) -> OneStepGraph | None:
        source = f"{self.path} (one-step graph)"
        session = self._session_of(STEP_METADATA_KEY, self.spec.step_graph, source)
        if session is None:
            return None
        graph = OneStepGraph.from_session(session, self.spec, source)
        zeros = {k: np.zeros((1, *v.shape), v.dtype) for k, v in self.codec.initial().items()}
        x = np.zeros((1, *self.spec.sample_shape), np.float32)
        self.first_run(session, source, lambda: graph.run(x, zeros))
        check_against(graph.run, self.run_batch, self.spec, self.codec.initial(), source)
        return graph

    def _load_pooled(self) -> PooledGraph | None:
        source = f"{self.path} (pooled one-step graph)"
        session = self._session_of(POOL_METADATA_KEY, self.spec.pool_graph, source)
        if session is None:
            return None
        graph = PooledGraph.from_session(session, self.spec, source)
        zeros = {k: np.zeros((1, *v.shape), v.dtype) for k, v in self.codec.initial().items()}
        x = np.zeros((1, *self.spec.sample_shape), np.float32)
        self.first_run(session, source, lambda: graph.run(x, zeros))
        check_against(graph.run, self.run_batch, self.spec, self.codec.initial(), source)
        return graph
