"""Export a trained network to ONNX (``train`` extra: torch and onnx).

``export_onnx`` writes one self-contained ``.onnx`` file that follows the ONNX contract
(README, "The ONNX contract"): dynamic batch and time, normalization inside the graph,
and a ``stream_gru`` metadata document with the weights' fingerprint. Every export is
checked structurally before anything is written (docs/design.md, traps 1 to 3).

``verify`` (from ``stream_gru.verification``, re-exported here) proves the file
computes what the checkpoint does.
"""

from __future__ import annotations

import io as _io
import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from .._version import __version__
from ..agreement import DEFAULT_ATOL, DEFAULT_RTOL
from ..core.spec import METADATA_KEY, METADATA_VERSION, ModelIO, StatePair
from ..errors import ExportError
from ..fleet.model import StreamingModel, load_bytes
from ..formats.files import atomic_write_bytes
from ..formats.fingerprint import fingerprint_model_bytes
from ..training.network import GRUModel, load_checkpoint, model_facts
from .step_graph import (
    POOL_METADATA_KEY,
    STEP_METADATA_KEY,
    build_step_graph,
    encode_pool_graph,
    encode_step_graph,
)
from .verification import CheckResult, VerifyReport, check_against_checkpoint, verify

__all__ = [
    "OPSET",
    "CheckResult",
    "VerifyReport",
    "check_step_graph",
    "check_structure",
    "export_onnx",
    "model_io",
    "verify",
]

# Opset 14: older onnxruntime registered the CUDA GRU kernel only up to 14 (trap 4).
OPSET = 14


def model_io(cell: str) -> ModelIO:
    """The wiring of this project's models: x/y batch-first, states (L, batch, H)."""
    names = [("h0", "hn")] if cell == "gru" else [("h0", "hn"), ("c0", "cn")]
    return ModelIO(
        input="x",
        output="y",
        batch_axis=0,
        time_axis=1,
        states=tuple(StatePair(i, o, batch_axis=1) for i, o in names),
    )


class _Exportable(nn.Module):
    """Flat tensors in and out (an LSTM's (h, c) becomes two inputs and outputs)."""

    def __init__(self, net: GRUModel) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.net.config.cell == "gru":
            y, hn = self.net(x, states[0])
            return y, hn
        y, (hn, cn) = self.net(x, (states[0], states[1]))
        return y, hn, cn


# -- structural checks ---------------------------------------------------------------
def _all_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(attr.g)
            for g in attr.graphs:
                yield from _all_nodes(g)


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [
        d.dim_param
        if d.HasField("dim_param")
        else (d.dim_value if d.HasField("dim_value") else "?")
        for d in value.type.tensor_type.shape.dim
    ]


def check_structure(model: onnx.ModelProto, io: ModelIO) -> list[str]:
    """What is wrong with an exported graph, as readable sentences (empty: all good).

    Checks ``onnx.checker``; every GRU node has ``linear_before_reset=1`` (PyTorch's
    GRU, trap 2); no Dropout node (trap 3); the batch and time axes of every input and
    output are dynamic (trap 1).
    """
    problems: list[str] = []
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:
        problems.append(f"onnx.checker rejects the model: {str(e).strip()}")
    for node in _all_nodes(model.graph):
        if node.op_type == "GRU":
            lbr = next((a.i for a in node.attribute if a.name == "linear_before_reset"), 0)
            if lbr != 1:
                problems.append(
                    f"GRU node '{node.name}' has linear_before_reset={lbr}; PyTorch's GRU "
                    f"needs 1 (trap 2)"
                )
        if node.op_type == "Dropout":
            problems.append(f"Dropout node '{node.name}' in the graph: export in eval mode")
    axes: dict[str, dict[int, str]] = {
        io.input: {},
        io.output: {},
    }
    for name in (io.input, io.output):
        if io.batch_axis is not None:
            axes[name][io.batch_axis] = "batch"
        if io.time_axis is not None:
            axes[name][io.time_axis] = "time"
    for pair in io.states:
        if pair.batch_axis is not None:
            axes[pair.input] = {pair.batch_axis: "batch"}
            axes[pair.output] = {pair.batch_axis: "batch"}
    values = {v.name: v for v in [*model.graph.input, *model.graph.output]}
    for name, wanted in axes.items():
        if name not in values:
            problems.append(f"the graph has no input or output named '{name}'")
            continue
        dims = _dims(values[name])
        for axis, what in wanted.items():
            if axis >= len(dims):
                problems.append(f"'{name}' has rank {len(dims)}, no {what} axis {axis}")
            elif isinstance(dims[axis], int):
                problems.append(
                    f"'{name}' has a fixed {what} dimension {dims[axis]} at axis {axis} "
                    f"(shape {dims}); it must be dynamic (trap 1)"
                )
    return problems


# -- export --------------------------------------------------------------------------
def _scalars(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if isinstance(v, (str, int, float, bool)) or v is None}


def _metadata(net: GRUModel, io: ModelIO, fingerprint: str) -> dict[str, Any]:
    info = getattr(net, "training_info", {})
    training = _scalars(info)
    training.update(_scalars(getattr(net, "metrics", {})))
    return {
        "format_version": METADATA_VERSION,
        "producer": f"stream-gru {__version__}",
        **model_facts(net),
        "target": info.get("target"),
        "sequence_column": info.get("sequence_column"),
        "horizon": int(info.get("horizon", 0) or 0),
        "normalization": net.normalization.to_dict(),
        "io": io.to_json(),
        "opset": OPSET,
        "training": training,
        "fingerprint": fingerprint,
    }


def _torch_export(net: GRUModel, io: ModelIO) -> onnx.ModelProto:
    cfg = net.config
    x = torch.zeros(2, 3, cfg.input_size)
    states = [torch.zeros(cfg.num_layers, 2, cfg.hidden_size) for _ in io.states]
    dynamic: dict[str, dict[int, str]] = {
        "x": {0: "batch", 1: "time"},
        "y": {0: "batch", 1: "time"},
    }
    for pair in io.states:
        dynamic[pair.input] = {1: "batch"}
        dynamic[pair.output] = {1: "batch"}
    buf = _io.BytesIO()
    with warnings.catch_warnings():
        # dynamo=False: the TorchScript exporter keeps time dynamic and writes the smallest
        # graph (trap 1); it warns that it is deprecated.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Exportable(net),
            (x, *states),
            buf,  # type: ignore[arg-type]  # a file object works, as documented
            dynamo=False,
            input_names=[io.input, *(s.input for s in io.states)],
            output_names=[io.output, *(s.output for s in io.states)],
            dynamic_axes=dynamic,
            opset_version=OPSET,
            do_constant_folding=True,
        )
    return onnx.load_from_string(buf.getvalue())


def check_step_graph(
    model: StreamingModel,
    net: GRUModel,
    *,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    streams: int = 8,
    steps: int = 200,
) -> CheckResult:
    """Whether the one-step graph (what pools run) computes ``net``: ``streams`` streams
    of ``steps`` chained steps at the training data's scale, judged by the agreement
    rule against ``net`` in float64, as ``verify`` judges the sequence graph. The
    check's ``detail`` also says how far the sequence graph lands on the same inputs."""
    rng = np.random.default_rng(0)
    norm = net.normalization
    mean = np.asarray(norm.feature_mean, np.float32)
    std = np.asarray(norm.feature_std, np.float32)
    x = (mean + std * rng.standard_normal((streams, steps, model.spec.input_size))).astype(
        np.float32
    )
    pool = model.pool(graph="step")
    keys = list(range(streams))
    for k in keys:
        pool.open(k)
    ys = np.stack([pool.step_batch(keys, x[:, t]) for t in range(steps)], axis=1)
    names = [s.input for s in model.spec.states]
    final = [np.stack([pool.state(k)[n] for k in keys], axis=1) for n in names]
    zeros = [np.zeros_like(f) for f in final]
    name = f"one-step graph, {streams} streams x {steps} chained steps"
    result = check_against_checkpoint(name, net, x, zeros, ys, final, atol=atol, rtol=rtol)
    if result.passed:
        return result
    seq_y, seq_states = model.run(x, dict(zip(names, zeros, strict=True)))
    seq = check_against_checkpoint(
        "sequence graph", net, x, zeros, seq_y, list(seq_states.values()), atol=atol, rtol=rtol
    )
    note = f"; the sequence graph lands {seq.excess:.3g}x the limit on the same inputs"
    return replace(result, detail=result.detail + note)


@dataclass(frozen=True)
class ExportResult:
    """What ``export_onnx`` wrote."""

    path: Path
    fingerprint: str
    metadata: dict[str, Any]
    nodes: tuple[str, ...]
    size_bytes: int


def export_onnx(
    source: str | os.PathLike[str] | GRUModel,
    out: str | os.PathLike[str],
    *,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
) -> ExportResult:
    """Export a checkpoint (or a ``GRUModel``) to one self-contained ONNX file.

    The graph is checked (``check_structure``) and loaded by the runtime, and the
    one-step graph pools run is checked against the checkpoint by the agreement rule
    (``check_step_graph``, with ``atol``/``rtol``), before the file is written
    atomically; on any failure ``ExportError`` names what failed and nothing is
    written.
    """
    net = source if isinstance(source, GRUModel) else load_checkpoint(source)
    net = net.cpu().eval()
    io = model_io(net.config.cell)
    proto = _torch_export(net, io)
    problems = check_structure(proto, io)
    if problems:
        raise ExportError("the exported graph fails its checks:\n  - " + "\n  - ".join(problems))
    proto.producer_name = "stream-gru"
    proto.producer_version = __version__
    fingerprint = fingerprint_model_bytes(proto.SerializeToString(), source="exported graph")
    meta = _metadata(net, io, fingerprint)
    del proto.metadata_props[:]
    cell = net.config.cell  # the pools' one-step graphs travel in the same file
    value, meta["step_graph"] = encode_step_graph(build_step_graph(net), cell)
    proto.metadata_props.add(key=STEP_METADATA_KEY, value=value)
    value, meta["pool_graph"] = encode_pool_graph(build_step_graph(net, pooled=True), cell)
    proto.metadata_props.add(key=POOL_METADATA_KEY, value=value)
    proto.metadata_props.add(key=METADATA_KEY, value=json.dumps(meta))
    data = proto.SerializeToString()
    if fingerprint_model_bytes(data) != fingerprint:
        raise ExportError("the fingerprint changed when the metadata was added")
    try:
        model = load_bytes(data, source="the exported graph")  # the runtime must accept it
    except Exception as e:
        raise ExportError(f"the runtime refuses the exported model: {e}") from e
    check = check_step_graph(model, net, atol=atol, rtol=rtol)
    if not check.passed:
        raise ExportError(
            f"the one-step graph that pools run does not compute the checkpoint "
            f"({check.name}): {check.detail}. This is a defect of the exporter, not of "
            f"the data: please report it with the checkpoint (--atol/--rtol relax the rule)"
        )
    out = Path(out)
    atomic_write_bytes(out, data)
    return ExportResult(
        path=out,
        fingerprint=fingerprint,
        metadata=meta,
        nodes=tuple(n.op_type for n in proto.graph.node),
        size_bytes=len(data),
    )
