"""What a model file promises: its inputs, outputs, states and sizes.

``ModelIO`` and ``StatePair`` describe how a stateful ONNX model is wired (which input
carries the data, which input/output pairs carry state, where the batch and time axes
are). ``ModelSpec`` adds what this project's own models record in their metadata
(sizes, feature and output names, task, normalization, the weights' fingerprint).
``read_spec`` builds the spec from the metadata (or from a user's ``ModelIO``) and
checks it against the graph onnxruntime actually loaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from ..errors import ModelError
from .metadata import (
    METADATA_KEY,
    METADATA_VERSION,
    POOL_METADATA_KEY,
    STEP_METADATA_KEY,
    count,
    names,
    normalization,
    one_of,
    optional_mapping,
    optional_str,
    read_metadata,
)

__all__ = [
    "METADATA_KEY",
    "METADATA_VERSION",
    "POOL_METADATA_KEY",
    "STEP_METADATA_KEY",
    "ModelIO",
    "ModelSpec",
    "StatePair",
    "TensorInfo",
    "read_spec",
]


Dim = int | str | None


@dataclass(frozen=True)
class StatePair:
    """A state carried between calls: fed as ``input``, read back as ``output``.

    ``batch_axis`` is the axis of the state tensor that indexes streams (1 for a
    PyTorch GRU's ``h0`` of shape (num_layers, batch, hidden_size)), or ``None`` for a
    model that keeps a single stream's state without a batch axis.
    """

    input: str
    output: str
    batch_axis: int | None = 0

    def __post_init__(self) -> None:
        if not isinstance(self.input, str) or not isinstance(self.output, str):
            raise TypeError(f"StatePair input/output must be str, got {self.input!r}, "
                            f"{self.output!r}")  # fmt: skip
        _check_axis_type(self.batch_axis, "StatePair.batch_axis")


def _check_axis_type(axis: Any, what: str) -> None:
    if axis is not None and (isinstance(axis, bool) or not isinstance(axis, int)):
        raise TypeError(f"{what} must be an int or None, got {type(axis).__name__} {axis!r:.20}")


@dataclass(frozen=True)
class ModelIO:
    """How a stateful ONNX model is wired.

    ``input``/``output`` name the data tensors; ``batch_axis``/``time_axis`` are their
    axes (``None`` where the model has no such axis). ``states`` lists the state pairs;
    ``constants`` are fed unchanged on every call (e.g. a sample rate).
    ``input_size`` states the per-step input size where the graph leaves it open.
    """

    input: str
    output: str
    batch_axis: int | None = 0
    time_axis: int | None = None
    states: tuple[StatePair, ...] = ()
    constants: Mapping[str, np.ndarray] = field(default_factory=dict)
    input_size: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.input, str) or not isinstance(self.output, str):
            raise TypeError(
                f"ModelIO input/output must be str, got {self.input!r}, {self.output!r}"
            )
        states = tuple(self.states)
        for s in states:
            if not isinstance(s, StatePair):
                raise TypeError(f"ModelIO.states must hold StatePair objects, got {s!r}")
        _check_axis_type(self.batch_axis, "ModelIO.batch_axis")
        _check_axis_type(self.time_axis, "ModelIO.time_axis")
        names = [self.input, *(s.input for s in states)]
        twice = sorted({n for n in names if names.count(n) > 1})
        outputs = [self.output, *(s.output for s in states)]
        twice += sorted({n for n in outputs if outputs.count(n) > 1})
        if twice:
            raise ValueError(f"ModelIO names {twice} more than once (data and state tensors "
                             f"are distinct)")  # fmt: skip
        taken = [k for k in dict(self.constants) if k in names]
        if taken:
            raise ValueError(f"ModelIO.constants names {taken}, which carry the data or a "
                             f"state: a constant would replace them")  # fmt: skip
        if self.batch_axis is not None and self.batch_axis == self.time_axis:
            raise ValueError(f"batch_axis and time_axis are both {self.batch_axis}")
        if self.input_size is not None and (
            isinstance(self.input_size, bool)
            or not isinstance(self.input_size, int)
            or self.input_size < 1
        ):
            raise ValueError(f"ModelIO.input_size must be a positive int, got {self.input_size!r}")
        consts = {str(k): np.array(v, copy=True) for k, v in dict(self.constants).items()}
        for a in consts.values():
            a.flags.writeable = False
        object.__setattr__(self, "states", states)
        object.__setattr__(self, "constants", MappingProxyType(consts))

    def to_json(self) -> dict[str, Any]:
        """The JSON form stored in a model's metadata (constants are not stored)."""
        return {
            "input": self.input,
            "output": self.output,
            "batch_axis": self.batch_axis,
            "time_axis": self.time_axis,
            "states": [
                {"input": s.input, "output": s.output, "batch_axis": s.batch_axis}
                for s in self.states
            ],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ModelIO:
        return cls(
            input=d["input"],
            output=d["output"],
            batch_axis=d.get("batch_axis", 0),
            time_axis=d.get("time_axis"),
            states=tuple(
                StatePair(s["input"], s["output"], s.get("batch_axis", 0))
                for s in d.get("states", ())
            ),
        )


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output as onnxruntime reports it."""

    name: str
    dtype: str
    shape: tuple[Dim, ...]

    def __str__(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}: {self.dtype}[{dims}]"


@dataclass(frozen=True)
class ModelSpec:
    """Everything the runtime knows about a loaded model.

    For this project's own models every field comes from the metadata; for other
    models (loaded with ``io=``) the sizes come from the graph and the descriptive
    fields (``cell``, ``task``, names) are empty.
    """

    input_size: int
    output_size: int | None
    hidden_size: int | None
    num_layers: int | None
    cell: str | None
    task: str | None
    feature_names: tuple[str, ...]
    output_names: tuple[str, ...]
    io: ModelIO
    sample_shape: tuple[int, ...]
    state_shapes: Mapping[str, tuple[int, ...]]
    state_dtypes: Mapping[str, np.dtype[Any]]
    fingerprint: str
    normalization: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    target: str | None = None
    horizon: int = 0
    training: Mapping[str, Any] = field(default_factory=dict)
    format_version: int | None = None
    step_graph: Mapping[str, Any] | None = None
    pool_graph: Mapping[str, Any] | None = None
    sequence_column: str | None = None

    @property
    def states(self) -> tuple[StatePair, ...]:
        """The state input/output pairs."""
        return self.io.states

    def describe(self) -> str:
        """A human-readable summary (what ``stream-gru info`` prints)."""
        lines = []
        if self.cell is not None:
            lines.append(
                f"model        {self.cell.upper()} {self.task}, hidden {self.hidden_size}, "
                f"layers {self.num_layers}"
            )
        else:
            lines.append("model        third-party (described by ModelIO)")
        feats = f" ({', '.join(self.feature_names)})" if self.feature_names else ""
        lines.append(f"input        {self.io.input}: {self.input_size} per step{feats}")
        outs = f" ({', '.join(self.output_names)})" if self.output_names else ""
        lines.append(f"output       {self.io.output}: {self.output_size} per step{outs}")
        for s in self.states:
            shape = self.state_shapes[s.input]
            lines.append(f"state        {s.input} -> {s.output}, {list(shape)} per stream")
        if self.task == "regression" and self.target:
            ahead = f", {self.horizon} steps ahead" if self.horizon else ""
            lines.append(f"target       {self.target}{ahead}")
        elif self.target:
            lines.append(f"target       {self.target} (classes)")
        if self.sequence_column:
            lines.append(f"recordings   by column {self.sequence_column!r} (stream keys)")
        for k, v in self.training.items():
            if isinstance(v, (str, int, float)):
                lines.append(f"training     {k}: {v}")
        lines.append(f"fingerprint  {self.fingerprint}")
        return "\n".join(lines)


_ORT_DTYPES: dict[str, np.dtype[Any]] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(double)": np.dtype(np.float64),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(int32)": np.dtype(np.int32),
}


def _tensor_infos(args: Sequence[Any]) -> dict[str, TensorInfo]:
    return {a.name: TensorInfo(a.name, a.type, tuple(a.shape)) for a in args}


def _graph_listing(inputs: Mapping[str, TensorInfo], outputs: Mapping[str, TensorInfo]) -> str:
    ins = "; ".join(str(t) for t in inputs.values())
    outs = "; ".join(str(t) for t in outputs.values())
    return f"inputs: {ins}. outputs: {outs}"


def _without_axes(shape: tuple[Dim, ...], axes: Sequence[int | None]) -> tuple[Dim, ...]:
    drop = {a % len(shape) for a in axes if a is not None}
    return tuple(d for i, d in enumerate(shape) if i not in drop)


def _check_axis(axis: int | None, rank: int, what: str, source: str) -> None:
    if axis is not None and not -rank <= axis < rank:
        raise ModelError(f"{source}: {what} is {axis} but the tensor has rank {rank}")


def _fixed(shape: tuple[Dim, ...], what: str, source: str, hint: str) -> tuple[int, ...]:
    if any(not isinstance(d, int) for d in shape):
        raise ModelError(f"{source}: {what} has open dimensions {list(shape)}; {hint}")
    return tuple(int(d) for d in shape)  # type: ignore[arg-type]


def read_spec(
    *,
    inputs: Sequence[Any],
    outputs: Sequence[Any],
    metadata: Mapping[str, str],
    fingerprint: str,
    io: ModelIO | None,
    source: str,
) -> ModelSpec:
    """Build the spec of a loaded model and check it against its graph.

    ``inputs``/``outputs`` are onnxruntime's ``get_inputs()``/``get_outputs()``;
    ``metadata`` its custom metadata map; ``fingerprint`` the weights' hash computed
    from the file. Raises ``ModelError`` naming what does not fit.
    """
    ins, outs = _tensor_infos(inputs), _tensor_infos(outputs)
    meta = read_metadata(metadata, source)
    if meta is None and io is None:
        raise ModelError(
            f"{source} has no stream-gru metadata (key '{METADATA_KEY}'), so the runtime "
            f"does not know which tensors carry data and state. The graph has "
            f"{_graph_listing(ins, outs)}. Describe it with "
            f"stream_gru.load(path, io=stream_gru.ModelIO(input=..., output=..., "
            f"batch_axis=..., time_axis=..., states=(stream_gru.StatePair(in, out, "
            f"batch_axis=...),), constants={{...}}))"
        )
    try:
        if io is None:
            assert meta is not None
            io = ModelIO.from_json(meta["io"])
            if meta.get("fingerprint") != fingerprint:
                raise ModelError(
                    f"{source}: the weights' fingerprint {fingerprint[:16]}... does not match "
                    f"the metadata's {str(meta.get('fingerprint'))[:16]}...: the file was "
                    f"changed after export"
                )
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"{source}: metadata 'io' is malformed: {e!r}") from None

    # The data input and output.
    for name, table, kind in ((io.input, ins, "input"), (io.output, outs, "output")):
        if name not in table:
            raise ModelError(
                f"{source}: the {kind} '{name}' named by the "
                f"{'metadata' if meta else 'ModelIO'} is not in the graph "
                f"({_graph_listing(ins, outs)})"
            )
    x_info, y_info = ins[io.input], outs[io.output]
    if x_info.dtype != "tensor(float)":
        raise ModelError(f"{source}: data input {x_info} is not float32")
    for info, what in ((x_info, "input"), (y_info, "output")):
        rank = len(info.shape)
        _check_axis(io.batch_axis, rank, f"batch_axis of {what} '{info.name}'", source)
        _check_axis(io.time_axis, rank, f"time_axis of {what} '{info.name}'", source)
    sample_dims = _without_axes(x_info.shape, (io.batch_axis, io.time_axis))
    declared = meta.get("input_size") if meta else io.input_size
    if meta:
        try:
            declared = count(declared, "input_size")
        except ValueError as e:
            raise ModelError(f"{source}: metadata has a bad field: {e}") from None
    if declared is not None and len(sample_dims) >= 1:
        last = sample_dims[-1]
        if isinstance(last, int) and last != declared:
            raise ModelError(
                f"{source}: input_size is {declared} but the graph's {x_info} has {last}"
            )
        sample_dims = (*sample_dims[:-1], int(declared))
    sample_shape = _fixed(
        sample_dims, f"the data input {x_info} per step", source, "state input_size in ModelIO"
    )

    # The states.
    state_shapes: dict[str, tuple[int, ...]] = {}
    state_dtypes: dict[str, np.dtype[Any]] = {}
    for pair in io.states:
        if pair.input not in ins or pair.output not in outs:
            raise ModelError(
                f"{source}: state pair {pair.input} -> {pair.output} is not in the graph "
                f"({_graph_listing(ins, outs)})"
            )
        s_in, s_out = ins[pair.input], outs[pair.output]
        _check_axis(pair.batch_axis, len(s_in.shape), f"batch_axis of state '{s_in.name}'", source)
        if s_in.dtype != s_out.dtype or s_in.dtype not in _ORT_DTYPES:
            raise ModelError(f"{source}: state {s_in} and {s_out} must share a numeric dtype")
        shape = _fixed(
            _without_axes(s_in.shape, (pair.batch_axis,)),
            f"state {s_in}",
            source,
            "the state size must be fixed in the graph",
        )
        if len(s_out.shape) == len(s_in.shape):
            out_shape = _without_axes(s_out.shape, (pair.batch_axis,))
            for a, b in zip(shape, out_shape, strict=True):
                if isinstance(b, int) and a != b:
                    raise ModelError(f"{source}: state input {s_in} and output {s_out} differ")
        state_shapes[pair.input] = shape
        state_dtypes[pair.input] = _ORT_DTYPES[s_in.dtype]

    strays = [name for name in io.constants if name not in ins]
    if strays:
        raise ModelError(
            f"{source}: ModelIO.constants names {strays}, which are not inputs of the graph "
            f"({_graph_listing(ins, outs)})"
        )
    fed = {io.input, *state_shapes, *io.constants}
    missing = [t for t in ins.values() if t.name not in fed]
    if missing:
        raise ModelError(
            f"{source}: graph inputs {', '.join(map(str, missing))} are neither data, state "
            f"nor constants; add them to ModelIO.constants"
        )

    if meta is None:
        y_dims = _without_axes(y_info.shape, (io.batch_axis, io.time_axis))
        fixed_y = [d for d in y_dims if isinstance(d, int)]
        out_size = int(np.prod(fixed_y)) if len(fixed_y) == len(y_dims) else None
        return ModelSpec(
            input_size=int(np.prod(sample_shape)),
            output_size=out_size,
            hidden_size=None,
            num_layers=None,
            cell=None,
            task=None,
            feature_names=(),
            output_names=(),
            io=io,
            sample_shape=sample_shape,
            state_shapes=MappingProxyType(state_shapes),
            state_dtypes=MappingProxyType(state_dtypes),
            fingerprint=fingerprint,
        )
    return _own_spec(
        meta, io, sample_shape, state_shapes, state_dtypes, y_info, fingerprint, source
    )


def _own_spec(
    meta: dict[str, Any],
    io: ModelIO,
    sample_shape: tuple[int, ...],
    state_shapes: dict[str, tuple[int, ...]],
    state_dtypes: dict[str, np.dtype[Any]],
    y_info: TensorInfo,
    fingerprint: str,
    source: str,
) -> ModelSpec:
    try:
        spec = ModelSpec(
            input_size=count(meta["input_size"], "input_size"),
            output_size=count(meta["output_size"], "output_size"),
            hidden_size=count(meta["hidden_size"], "hidden_size"),
            num_layers=count(meta["num_layers"], "num_layers"),
            cell=one_of(meta["cell"], "cell", ("gru", "lstm")),
            task=one_of(meta["task"], "task", ("regression", "classification")),
            feature_names=names(meta["feature_names"], "feature_names"),
            output_names=names(meta["output_names"], "output_names"),
            io=io,
            sample_shape=sample_shape,
            state_shapes=MappingProxyType(state_shapes),
            state_dtypes=MappingProxyType(state_dtypes),
            fingerprint=fingerprint,
            normalization=normalization(meta.get("normalization", {})),
            target=optional_str(meta.get("target")),
            horizon=count(meta.get("horizon", 0), "horizon", least=0),
            training=MappingProxyType(dict(meta.get("training", {}))),
            format_version=int(meta["format_version"]),
            step_graph=optional_mapping(meta.get("step_graph"), "step_graph"),
            pool_graph=optional_mapping(meta.get("pool_graph"), "pool_graph"),
            sequence_column=optional_str(meta.get("sequence_column")),
        )
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise ModelError(f"{source}: metadata is missing or has a bad field: {e!r}") from None
    problems = []
    sizes = {"feature_mean": spec.input_size, "feature_std": spec.input_size}
    if spec.task == "regression" and spec.output_size is not None:
        sizes.update(target_mean=spec.output_size, target_std=spec.output_size)
    for key, size in sizes.items():
        got = len(spec.normalization.get(key, ()))
        if got not in (0, size):
            problems.append(f"normalization {key} has {got} values for {size}")
    if spec.sequence_column is not None and spec.sequence_column in spec.feature_names:
        problems.append(f"the sequence column {spec.sequence_column!r} is also a feature")
    if len(spec.feature_names) != spec.input_size:
        problems.append(f"{len(spec.feature_names)} feature_names for input_size {spec.input_size}")
    if len(spec.output_names) != spec.output_size:
        problems.append(f"{len(spec.output_names)} output_names for output_size {spec.output_size}")
    last = y_info.shape[-1] if y_info.shape else None
    if isinstance(last, int) and last != spec.output_size:
        problems.append(f"output_size {spec.output_size} but the graph's {y_info} has {last}")
    for pair in io.states:
        shape = state_shapes[pair.input]
        expected = (spec.num_layers, spec.hidden_size)
        if shape != expected:
            problems.append(
                f"state '{pair.input}' is {list(shape)} per stream in the graph but the metadata "
                f"says num_layers {spec.num_layers}, hidden_size {spec.hidden_size}"
            )
    if problems:
        raise ModelError(f"{source}: metadata does not match the graph: " + "; ".join(problems))
    return spec
