"""Load a model and run streams on it: ``load``, ``StreamingModel``, ``Stream``.

The model (one onnxruntime session) is shared; each ``Stream`` owns its state and
carries it from call to call. Nothing here imports torch or onnx.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..agreement import DEFAULT_RULE
from ..errors import ModelError, SnapshotError
from ..fleet.graphs import BatchedGraph, SequenceGraph, StepGraph, check_graph_choice
from ..formats import snapshot as _snapshot
from ..formats.files import NotARegularFile, read_regular
from ..formats.fingerprint import fingerprint_model_bytes
from .binding import StepBinding
from .checks import MAX_STEPS, as_array, as_samples, check_step_count
from .session import SessionOptions, check_placement, create_session
from .spec import POOL_METADATA_KEY, STEP_METADATA_KEY, ModelIO, ModelSpec, read_spec

if TYPE_CHECKING:
    from ..fleet.pool import StreamPool

__all__ = ["Stream", "StreamingModel", "load", "load_bytes"]

_STREAM_KIND = b"STRM"
_FLOAT32 = np.dtype(np.float32)


def load(
    path: str | os.PathLike[str],
    *,
    provider: str = "auto",
    threads: int = 1,
    spinning: bool = False,
    io: ModelIO | None = None,
) -> StreamingModel:
    """Load an ONNX model for streaming.

    ``provider`` is "auto" (CUDA where usable, else CPU), "cpu" or "cuda"; ``threads``
    the intra-op threads; ``spinning`` lets idle threads spin (costs CPU while idle).
    This project's models describe themselves in their metadata; for any other stateful
    model pass ``io`` to say which tensors carry data and state.

    Raises ``ModelError`` for a file that is not a model this runtime can run (a
    directory, a pipe or a device among them), ``FileNotFoundError`` for a missing one.
    """
    options = SessionOptions(provider=provider, threads=threads, spinning=spinning)
    if io is not None and not isinstance(io, ModelIO):
        raise TypeError(f"io must be a stream_gru.ModelIO, got {type(io).__name__}")
    path = Path(path)
    try:
        data = read_regular(path)
    except NotARegularFile as e:
        raise ModelError(f"{path} is {e.kind}, expected an .onnx model file") from None
    return load_bytes(data, source=str(path), options=options, io=io, path=path)


def load_bytes(
    data: bytes,
    *,
    source: str = "model",
    options: SessionOptions | None = None,
    io: ModelIO | None = None,
    path: Path | None = None,
) -> StreamingModel:
    """Load a model from the bytes of an ONNX file (weights inside it, no external
    data). The session and the fingerprint come from the same bytes, so a file
    replaced while it loads cannot mix one file's weights with another's."""
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
    return StreamingModel(path or Path(source), session, spec, in_use, options)


def _pooled_run(
    session: Any, x: np.ndarray, states: Mapping[str, np.ndarray]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The pooled one-step graph on ``len(x)`` streams in slots 0..n-1."""
    ((name, value),) = states.items()
    y, out = session.run(None, {"states": value, "slots": np.arange(len(x)), "x": x})
    return y, {name: out}


def _normalized_axes(io: ModelIO, rank: int) -> tuple[int | None, int | None]:
    b = None if io.batch_axis is None else io.batch_axis % rank
    t = None if io.time_axis is None else io.time_axis % rank
    return b, t


class StreamingModel:
    """A loaded model: one shared session, from which streams are made.

    ``spec`` describes the model; ``provider`` is the execution provider in use;
    ``session`` is the underlying ``onnxruntime.InferenceSession``.
    """

    def __init__(
        self,
        path: Path,
        session: Any,
        spec: ModelSpec,
        provider: str,
        options: SessionOptions,
    ) -> None:
        self.path = path
        self.session = session
        self.spec = spec
        self.provider = provider
        self.options = options
        io = spec.io
        self._rank = (
            len(spec.sample_shape) + (io.batch_axis is not None) + (io.time_axis is not None)
        )
        self._batch_axis, self._time_axis = _normalized_axes(io, self._rank)
        self._output_names = [io.output, *(s.output for s in io.states)]
        self._constants = dict(io.constants)
        self._initial = {
            s.input: self._batched_state(
                np.zeros(spec.state_shapes[s.input], spec.state_dtypes[s.input]), s.batch_axis
            )
            for s in io.states
        }
        # One step on a zero sample: proves the graph runs, and sizes the step buffers.
        # On CUDA it also tells which provider ran each node (``placement``, None on
        # the CPU, where nothing is checked).
        zero = self._as_model_input(np.zeros(spec.sample_shape, np.float32), with_time=False)
        (y, _), self.placement = self._first_run(
            session, str(path), lambda: self._run(zero, self._initial)
        )
        self._step_x_shape = zero.shape
        self._step_y = (y.shape, y.dtype)
        self._step_cache: tuple[StepGraph | None] | None = None
        self._pool_cache: tuple[Any] | None = None
        self._step_lock = threading.Lock()

    def __repr__(self) -> str:
        s = self.spec
        kind = f"{s.cell} {s.task}" if s.cell else "third-party"
        return (
            f"StreamingModel({str(self.path)!r}, {kind}, input_size={s.input_size}, "
            f"output_size={s.output_size}, provider={self.provider!r})"
        )

    # -- streams -----------------------------------------------------------------
    def stream(self) -> Stream:
        """A new stream starting from the initial (zero) state."""
        return Stream(self)

    def restore(self, blob: bytes) -> Stream:
        """A new stream continuing from ``Stream.snapshot()`` bytes.

        Raises ``SnapshotError`` for a corrupt or truncated snapshot or one made by
        another model (other weights, even of the same shapes).
        """
        state, steps = self._decode_snapshot(blob)
        stream = Stream(self)
        stream._states = state
        stream._steps = steps
        return stream

    def pool(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        graph: str = "auto",
        state_on_device: bool | None = None,
    ) -> StreamPool:
        """A ``StreamPool``: many streams of this model, one batched call per tick.

        ``graph``: "step" runs the one-step graph the file carries (faster at large
        batch), "sequence" the file's main graph (the one streams run, so a pool's
        results equal its streams' bit for bit), "auto" the first where there is one.
        ``state_on_device``: keep the states in device memory between ticks (default:
        on CUDA, for models that carry the pooled one-step graph).
        """
        from ..fleet.pool import StreamPool

        return StreamPool(self, clock=clock, graph=graph, state_on_device=state_on_device)

    def load_pool(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.monotonic,
        graph: str = "auto",
        state_on_device: bool | None = None,
    ) -> StreamPool:
        """A pool saved by ``StreamPool.save``; its streams continue bit-exact."""
        from ..fleet.pool import StreamPool

        return StreamPool.load(
            self, path, clock=clock, graph=graph, state_on_device=state_on_device
        )

    def _batched_graph(self, graph: str) -> BatchedGraph:
        check_graph_choice(graph)
        if graph != "sequence":
            step = self._step_graph()
            if step is not None:
                return step
            if graph == "step":
                raise ValueError(
                    f"{self.path} carries no one-step graph (only this project's GRU "
                    f"models do); use graph='sequence'"
                )
        return SequenceGraph(self)

    def _first_run(
        self, session: Any, source: str, run: Callable[[], Any]
    ) -> tuple[Any, dict[str, str] | None]:
        """Run a session's first call on zeros (proves the graph runs) and check where
        its nodes ran (on CUDA): (what ``run`` returned, the placement or None)."""
        try:
            result = run()
        except Exception as e:  # onnxruntime's own exception types
            raise ModelError(f"{source} fails on one zero sample: {e}") from None
        return result, check_placement(session, self.provider, source=source)

    def _step_graph(self) -> StepGraph | None:
        """The one-step graph from the metadata, loaded once; None where there is none."""
        with self._step_lock:
            if self._step_cache is None:
                self._step_cache = (self._load_step_graph(),)
            return self._step_cache[0]

    def _embedded_session(self, key: str, info: Mapping[str, Any] | None, source: str) -> Any:
        """A session of a graph the file carries in its metadata (sha256-checked), or
        None where it carries none."""
        raw = self.session.get_modelmeta().custom_metadata_map.get(key)
        if info is None or raw is None:
            return None
        try:
            data = base64.b64decode(raw.encode("ascii"), validate=True)
        except (ValueError, UnicodeEncodeError):
            raise ModelError(f"{source} is not valid base64") from None
        if hashlib.sha256(data).hexdigest() != info.get("sha256"):
            raise ModelError(f"{source} does not match its sha256 in the metadata")
        session, _ = create_session(data, self.options, source=source)
        return session

    def _pool_session(self) -> Any:
        """The pooled one-step graph's session (state on a device), loaded once."""
        with self._step_lock:
            if self._pool_cache is None:
                source = f"{self.path} (pooled one-step graph)"
                session = self._embedded_session(POOL_METADATA_KEY, self.spec.pool_graph, source)
                if session is not None:
                    (pair,) = self.spec.states
                    feeds = {
                        "states": np.zeros((1, *self.spec.state_shapes[pair.input]), np.float32),
                        "slots": np.zeros(1, np.int64),
                        "x": np.zeros((1, *self.spec.sample_shape), np.float32),
                    }
                    self._first_run(session, source, lambda: session.run(None, feeds))
                    self._check_embedded(source, lambda x, st: _pooled_run(session, x, st))
                self._pool_cache = (session,)
            return self._pool_cache[0]

    def _load_step_graph(self) -> StepGraph | None:
        info = self.spec.step_graph
        source = f"{self.path} (one-step graph)"
        session = self._embedded_session(STEP_METADATA_KEY, info, source)
        if session is None or info is None:
            return None
        try:
            io = ModelIO.from_json(info["io"])
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"{source}: its description is malformed: {e!r}") from None
        names = {i.name for i in session.get_inputs()} | {o.name for o in session.get_outputs()}
        wanted = {
            io.input,
            io.output,
            *(p.input for p in io.states),
            *(p.output for p in io.states),
        }
        if not wanted <= names or len(io.states) != len(self.spec.states):
            raise ModelError(f"{source} does not have the inputs and outputs it describes")
        step = StepGraph(
            session,
            input_name=io.input,
            output_name=io.output,
            states=[
                (main.input, step.input, step.output)
                for main, step in zip(self.spec.states, io.states, strict=True)
            ],
        )
        zeros = {k: np.zeros((1, *v.shape), v.dtype) for k, v in self.initial_state().items()}
        x = np.zeros((1, *self.spec.sample_shape), np.float32)
        self._first_run(session, source, lambda: step.run(x, zeros))
        self._check_embedded(source, step.run)
        return step

    def _check_embedded(self, source: str, run: Callable[..., Any]) -> None:
        """``ModelError`` unless an embedded graph computes what the model's own graph
        computes: a few chained steps of a few streams from samples at the data's scale,
        by the agreement rule. The file's fingerprint covers the main graph's weights
        only, so this is what ties the embedded graphs to them (a file whose embedded
        graphs were edited, sha256 and all, is refused here)."""
        rng = np.random.default_rng(0)
        norm = self.spec.normalization
        shape = self.spec.sample_shape
        mean = np.asarray(norm.get("feature_mean") or np.zeros(shape), np.float32).reshape(shape)
        std = np.asarray(norm.get("feature_std") or np.ones(shape), np.float32).reshape(shape)
        n = 4
        ours = {k: np.zeros((n, *v.shape), v.dtype) for k, v in self.initial_state().items()}
        theirs = dict(ours)
        sequence = SequenceGraph(self)
        for t in range(3):
            x = (mean + std * rng.standard_normal((n, *shape))).astype(np.float32)
            y_ours, ours = sequence.run(x, ours)
            y_theirs, theirs = run(x, theirs)
            agree = DEFAULT_RULE.holds(y_theirs, y_ours) and all(
                DEFAULT_RULE.holds(theirs[k], ours[k]) for k in ours
            )
            if not agree:
                raise ModelError(
                    f"{source} does not compute what the model's own graph computes (step "
                    f"{t} of a check on {n} streams): the file was changed after export"
                )

    def initial_state(self) -> dict[str, np.ndarray]:
        """The initial state of a stream, without the batch axis."""
        return {k: self._unbatched_state(k, v) for k, v in self._initial.items()}

    # -- plumbing shared by Stream (and later the pool) --------------------------
    def _batched_state(self, arr: np.ndarray, batch_axis: int | None) -> np.ndarray:
        return arr if batch_axis is None else np.expand_dims(arr, batch_axis)

    def _unbatched_state(self, name: str, arr: np.ndarray) -> np.ndarray:
        pair = next(s for s in self.spec.states if s.input == name)
        out = arr if pair.batch_axis is None else np.take(arr, 0, axis=pair.batch_axis)
        return np.array(out, copy=True)

    def _as_model_input(self, samples: np.ndarray, with_time: bool) -> np.ndarray:
        """(T, *sample) with time, (*sample) without -> the data input for one stream."""
        b, t = self._batch_axis, self._time_axis
        if with_time:
            assert t is not None, "feed() runs a chunk in one call only with a time axis"
            if b is None:
                return np.ascontiguousarray(np.moveaxis(samples, 0, t))
            return np.ascontiguousarray(np.moveaxis(samples[np.newaxis], [0, 1], [b, t]))
        x = samples
        for axis in sorted(a for a in (b, t) if a is not None):
            x = np.expand_dims(x, axis)
        return np.ascontiguousarray(x)

    def _from_model_output(self, y: np.ndarray, with_time: bool) -> np.ndarray:
        """The data output -> (T, *out) with time, (*out) without; batch removed."""
        b, t = self._batch_axis, self._time_axis
        if with_time:
            assert t is not None, "feed() runs a chunk in one call only with a time axis"
            if b is None:
                return np.moveaxis(y, t, 0)
            out: np.ndarray = np.moveaxis(y, [b, t], [0, 1])[0]
            return out
        drop = {a for a in (b, t) if a is not None}
        return y.reshape([d for i, d in enumerate(y.shape) if i not in drop])

    def _batch_input(self, samples: np.ndarray) -> np.ndarray:
        """(n, *sample) -> the data input for n streams, one time step each."""
        b, t = self._batch_axis, self._time_axis
        assert b is not None, "batching needs a batch axis"
        if t is None:
            return np.ascontiguousarray(np.moveaxis(samples, 0, b))
        return np.ascontiguousarray(np.moveaxis(samples[:, np.newaxis], [0, 1], [b, t]))

    def _batch_output(self, y: np.ndarray) -> np.ndarray:
        """The data output of a batched one-step call -> (n, *out)."""
        b, t = self._batch_axis, self._time_axis
        assert b is not None, "batching needs a batch axis"
        if t is None:
            return np.moveaxis(y, b, 0)
        out: np.ndarray = np.moveaxis(y, [b, t], [0, 1])[:, 0]
        return out

    def _run(
        self, x: np.ndarray, states: Mapping[str, np.ndarray]
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        feeds = {self.spec.io.input: x, **states, **self._constants}
        outs = self.session.run(self._output_names, feeds)
        new = {s.input: o for s, o in zip(self.spec.states, outs[1:], strict=True)}
        return outs[0], new

    def _check_state(self, value: Any) -> dict[str, np.ndarray]:
        if not isinstance(value, Mapping):
            raise TypeError(
                f"state must be a mapping of state names to arrays, got {type(value).__name__}"
            )
        names = list(self.spec.state_shapes)
        if set(value) != set(names):
            raise ValueError(f"state has keys {sorted(map(str, value))}, expected {names}")
        out = {}
        for s in self.spec.states:
            arr = as_array(
                value[s.input],
                self.spec.state_shapes[s.input],
                what=f"state '{s.input}'",
                dtype=self.spec.state_dtypes[s.input],
                hint=" (the state of one stream, without the batch axis)",
            )
            out[s.input] = self._batched_state(arr, s.batch_axis)
        return out

    def _encode_snapshot(self, states: Mapping[str, np.ndarray], steps: int) -> bytes:
        arrays = {k: self._unbatched_state(k, v) for k, v in states.items()}
        return _snapshot.encode(_STREAM_KIND, self.spec.fingerprint, arrays, {"steps": steps})

    def _decode_snapshot(self, blob: Any) -> tuple[dict[str, np.ndarray], int]:
        arrays, extra = _snapshot.decode(blob, _STREAM_KIND, self.spec.fingerprint)
        try:
            state = self._check_state(arrays)
        except (TypeError, ValueError) as e:
            raise SnapshotError(f"snapshot does not fit this model's state: {e}") from None
        try:
            steps = check_step_count(extra.get("steps", 0))
        except ValueError as e:
            raise SnapshotError(f"snapshot has a bad step count: {e}") from None
        return state, steps


class Stream:
    """One stream: the model plus this stream's state, carried between calls.

    ``step(x)`` runs one sample, ``feed(X)`` a chunk of samples in one call; both leave
    the state where the last sample left it. A call that raises changes nothing.
    A stream may be used from several threads; calls are serialized.
    """

    def __init__(self, model: StreamingModel) -> None:
        self.model = model
        io = model.spec.io
        self._fast = StepBinding(
            model.session,
            input_name=io.input,
            x_shape=model._step_x_shape,
            output_name=io.output,
            y_shape=model._step_y[0],
            y_dtype=model._step_y[1],
            states={
                s.input: (s.output, model._initial[s.input].shape, model._initial[s.input].dtype)
                for s in io.states
            },
            constants=io.constants,
        )
        self._x = self._fast.x.reshape(model.spec.sample_shape)  # a view of the input buffer
        self._y = model._from_model_output(self._fast.y, with_time=False)  # a view, too
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
        samples = as_samples(
            xs, m.spec.sample_shape, what="X", leading=("step",), feature_names=m.spec.feature_names
        )
        n = samples.shape[0]
        if self._steps + n > MAX_STEPS:
            self._refuse_steps(n)
        if m._time_axis is None:
            with self._lock:
                states, ys = self._states, []
                for i in range(n):
                    y, states = m._run(m._as_model_input(samples[i], with_time=False), states)
                    ys.append(m._from_model_output(y, with_time=False))
                self._states = states
                self._steps += n
            if not ys:
                return np.zeros((0, *self._y.shape), self._y.dtype)
            return np.stack(ys)
        if n == 0:
            return np.zeros((0, *self._y.shape), self._y.dtype)
        with self._lock:
            y, new = m._run(m._as_model_input(samples, with_time=True), self._states)
            self._states = new
            self._steps += n
        return m._from_model_output(y, with_time=True)

    def _refuse_steps(self, n: int) -> None:
        raise ValueError(
            f"this stream has run {self._steps:,} steps; {n:,} more would pass {MAX_STEPS:,}, "
            f"the most a step count holds"
        )

    def reset(self) -> None:
        """Back to the initial state, as a fresh stream."""
        with self._lock:
            self._states = self.model._initial
            self._steps = 0

    @property
    def state(self) -> dict[str, np.ndarray]:
        """A copy of the state: {state input name: array without the batch axis}."""
        with self._lock:
            return {k: self.model._unbatched_state(k, v) for k, v in self._states.items()}

    @state.setter
    def state(self, value: Mapping[str, Any]) -> None:
        checked = self.model._check_state(value)
        with self._lock:
            self._states = checked

    def snapshot(self) -> bytes:
        """The state as bytes: format version, model fingerprint, state, checksum.

        Restore with ``model.restore(blob)``, in this process or another.
        """
        with self._lock:
            return self.model._encode_snapshot(self._states, self._steps)
