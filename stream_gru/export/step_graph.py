"""The one-step graph: a GRU or LSTM cell written out in plain ONNX ops (``train`` extra).

For a pool, every tick is one time step of many streams. The ONNX GRU and LSTM ops are
built for sequences; for one step at large batch a graph of plain Gemm/Sigmoid/Tanh
nodes is 1.3-2x faster on the CPU (docs/design.md, trap 7), while at batch 1 the
sequence op wins (fewer nodes). So export writes both: the sequence graph is the model
file's graph (the ONNX contract), and the one-step graph travels inside the same file,
serialized in the metadata key ``stream_gru.step``. Streams use the first, pools the
second; a stream's result never depends on what else is in its tick, because the graph
is chosen per pool, not per call.

The one-step graph is batch-major: ``x`` [batch, input_size] and each state
[batch, num_layers, hidden_size] (``h0``; an LSTM also ``c0``) -> ``y`` [batch,
output_size] and the new states (``hn``, ``cn``), so a pool feeds its slot-major state
arrays without transposing them. Each gate is two Gemm nodes, the second adding the
first through its C input. A GRU computes PyTorch's GRU (``linear_before_reset=1``):

    r, z = sigmoid(W_ir x + b_ir + W_hr h + b_hr), sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = n + z * (h - n)              # = (1 - z) * n + z * h

and an LSTM PyTorch's LSTM (gates i, f, g, o; a Gemm on [x, h] for each):

    i, f, o = sigmoid(W_i. x + W_h. h + b), g = tanh(W_ig x + W_hg h + b_g)
    c' = f * c + i * g,  h' = o * tanh(c')

The pooled variant keeps a whole pool's states in one tensor per state, for state that
stays on a device between ticks (``docs/formats.md``).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..core.spec import POOL_METADATA_KEY, STEP_METADATA_KEY
from ..training.network import GRUModel

__all__ = [
    "POOL_METADATA_KEY",
    "STEP_METADATA_KEY",
    "build_step_graph",
    "encode_pool_graph",
    "encode_step_graph",
    "pool_state_names",
]

_OPSET = 14


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, name: str, value: Any) -> str:
        array = np.asarray(value)
        if array.dtype.kind == "f":
            array = array.astype(np.float32)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: list[str], outputs: list[str], **attrs: Any) -> list[str]:
        self.nodes.append(helper.make_node(op_type, inputs, outputs, **attrs))
        return outputs


def build_step_graph(net: GRUModel, *, pooled: bool = False) -> onnx.ModelProto:
    """The one-step graph of a GRU or LSTM network.

    ``pooled``: the variant that keeps a whole pool's states in one tensor per state,
    for state that stays on a device between ticks: each state [capacity, num_layers,
    hidden_size] (a GRU's ``states``; an LSTM's ``states_h0``, ``states_c0``), ``slots``
    int64 [batch] and ``x`` in; ``y`` and the states with the ticked slots replaced
    (``states_out``; ``states_out_h0``, ``states_out_c0``: Gather, the cell, ScatterND)
    out.
    """
    cfg = net.config
    h_size, layers = cfg.hidden_size, cfg.num_layers
    w = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
    names = [("h0", "hn")] if cfg.cell == "gru" else [("h0", "hn"), ("c0", "cn")]
    pooled_names = pool_state_names(cfg.cell)
    b = _Builder()
    if pooled:
        for (state, _), (_, tensor, _) in zip(names, pooled_names, strict=True):
            b.op("Gather", [tensor, "slots"], [state], axis=0)
    (xc,) = b.op("Sub", ["x", b.const("feature_mean", w["feature_mean"])], ["x_centered"])
    (xin,) = b.op("Div", [xc, b.const("feature_std", w["feature_std"])], ["x_normalized"])
    axis1 = b.const("axis_1", np.array([1], np.int64))
    per_layer = {state: _layers_of(b, state, layers, axis1) for state, _ in names}
    finals: dict[str, list[str]] = {out: [] for _, out in names}
    for k in range(layers):
        if cfg.cell == "gru":
            xin = _gru_layer(b, w, k, h_size, xin, per_layer["h0"][k])
            finals["hn"].append(xin)
        else:
            xin, c = _lstm_layer(b, w, k, h_size, xin, per_layer["h0"][k], per_layer["c0"][k])
            finals["hn"].append(xin)
            finals["cn"].append(c)
    for out, tensors in finals.items():
        if layers == 1:
            b.op("Unsqueeze", [tensors[0], axis1], [out])
        else:
            three_d = [b.op("Unsqueeze", [t, axis1], [f"{t}_3d"])[0] for t in tensors]
            b.op("Concat", three_d, [out], axis=1)
    (head,) = b.op(
        "Gemm",
        [xin, b.const("w_head", w["head.weight"]), b.const("b_head", w["head.bias"])],
        ["head"],
        transB=1,
    )
    if cfg.task == "classification":
        b.op("Softmax", [head], ["y"], axis=1)
    else:
        (scaled,) = b.op("Mul", [head, b.const("target_std", w["target_std"])], ["y_scaled"])
        b.op("Add", [scaled, b.const("target_mean", w["target_mean"])], ["y"])
    f32 = TensorProto.FLOAT
    x_info = helper.make_tensor_value_info("x", f32, ["batch", cfg.input_size])
    y_info = helper.make_tensor_value_info("y", f32, ["batch", cfg.output_size])
    if pooled:
        (index,) = b.op(
            "Unsqueeze", ["slots", b.const("axis_last", np.array([1], np.int64))], ["slots_2d"]
        )
        shape: list[str | int | None] = ["capacity", layers, h_size]
        inputs, outputs = [], [y_info]
        for (_, out), (_, tensor, tensor_out) in zip(names, pooled_names, strict=True):
            b.op("ScatterND", [tensor, index, out], [tensor_out])
            inputs.append(helper.make_tensor_value_info(tensor, f32, shape))
            outputs.append(helper.make_tensor_value_info(tensor_out, f32, shape))
        inputs += [helper.make_tensor_value_info("slots", TensorProto.INT64, ["batch"]), x_info]
    else:
        shape = ["batch", layers, h_size]
        inputs = [x_info, *(helper.make_tensor_value_info(s, f32, shape) for s, _ in names)]
        outputs = [y_info, *(helper.make_tensor_value_info(o, f32, shape) for _, o in names)]
    name = "stream_gru_pool_step" if pooled else "stream_gru_step"
    graph = helper.make_graph(b.nodes, name, inputs, outputs, b.initializers)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", _OPSET)], producer_name="stream-gru"
    )
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def pool_state_names(cell: str) -> list[tuple[str, str, str]]:
    """(the model's state, the pooled graph's input, its output) for each state: a GRU's
    one tensor keeps the names files of earlier versions use."""
    if cell == "gru":
        return [("h0", "states", "states_out")]
    return [(s, f"states_{s}", f"states_out_{s}") for s in ("h0", "c0")]


def _layers_of(b: _Builder, state: str, layers: int, axis1: str) -> list[str]:
    """A state [batch, layers, hidden] as one [batch, hidden] tensor per layer."""
    if layers == 1:  # a view, not a copy
        return b.op("Squeeze", [state, axis1], [f"{state}_l0"])
    splits = b.const(f"split_{state}", np.ones(layers, np.int64))
    parts = b.op("Split", [state, splits], [f"{state}_{k}_3d" for k in range(layers)], axis=1)
    return [b.op("Squeeze", [p, axis1], [f"{state}_l{k}"])[0] for k, p in enumerate(parts)]


def _gate(
    b: _Builder, w: dict[str, np.ndarray], k: int, name: str, rows: slice, x: str, h: str
) -> str:
    """W_i x + (b_i + b_h) + W_h h for one gate: two Gemms, the first as the second's C."""
    w_ih, w_hh = w[f"rnn.weight_ih_l{k}"], w[f"rnn.weight_hh_l{k}"]
    bias = w[f"rnn.bias_ih_l{k}"][rows] + w[f"rnn.bias_hh_l{k}"][rows]
    weights = b.const(f"w_i{name}_{k}", w_ih[rows])
    (gi,) = b.op("Gemm", [x, weights, b.const(f"b_{name}_{k}", bias)], [f"gi_{name}_{k}"],
                 transB=1)  # fmt: skip
    (pre,) = b.op("Gemm", [h, b.const(f"w_h{name}_{k}", w_hh[rows]), gi],
                  [f"pre_{name}_{k}"], transB=1)  # fmt: skip
    return pre


def _gru_layer(b: _Builder, w: dict[str, np.ndarray], k: int, h_size: int, x: str, h: str) -> str:
    """One GRU layer's new hidden state."""
    r = b.op("Sigmoid", [_gate(b, w, k, "r", slice(0, h_size), x, h)], [f"r_{k}"])[0]
    z = b.op("Sigmoid", [_gate(b, w, k, "z", slice(h_size, 2 * h_size), x, h)], [f"z_{k}"])[0]
    rows = slice(2 * h_size, 3 * h_size)
    w_ih, w_hh = w[f"rnn.weight_ih_l{k}"], w[f"rnn.weight_hh_l{k}"]
    (gi_n,) = b.op("Gemm", [x, b.const(f"w_in_{k}", w_ih[rows]),
                            b.const(f"b_in_{k}", w[f"rnn.bias_ih_l{k}"][rows])],
                   [f"gi_n_{k}"], transB=1)  # fmt: skip
    (gh_n,) = b.op("Gemm", [h, b.const(f"w_hn_{k}", w_hh[rows]),
                            b.const(f"b_hn_{k}", w[f"rnn.bias_hh_l{k}"][rows])],
                   [f"gh_n_{k}"], transB=1)  # fmt: skip
    (r_gh,) = b.op("Mul", [r, gh_n], [f"r_gh_{k}"])
    (pre_n,) = b.op("Add", [gi_n, r_gh], [f"pre_n_{k}"])
    (n,) = b.op("Tanh", [pre_n], [f"n_{k}"])
    (h_minus_n,) = b.op("Sub", [h, n], [f"h_minus_n_{k}"])
    (z_d,) = b.op("Mul", [z, h_minus_n], [f"z_d_{k}"])
    return b.op("Add", [n, z_d], [f"hn_{k}"])[0]


def _lstm_layer(
    b: _Builder, w: dict[str, np.ndarray], k: int, h_size: int, x: str, h: str, c: str
) -> tuple[str, str]:
    """One LSTM layer's new (hidden, cell) states: [x, h] concatenated once, then one
    Gemm per gate followed by its Sigmoid or Tanh, which onnxruntime fuses into the
    Gemm. Measured against one Gemm for all four gates and Splits, and against a Gemm
    pair per gate: 1.2x the GRU's time per row for 1.33x its arithmetic, the others
    1.25-1.35x (docs/design.md, trap 7)."""
    weights = np.concatenate([w[f"rnn.weight_ih_l{k}"], w[f"rnn.weight_hh_l{k}"]], axis=1)
    bias = w[f"rnn.bias_ih_l{k}"] + w[f"rnn.bias_hh_l{k}"]
    (xh,) = b.op("Concat", [x, h], [f"xh_{k}"], axis=1)
    gates = {}
    for index, (gate, activation) in enumerate(
        (("i", "Sigmoid"), ("f", "Sigmoid"), ("g", "Tanh"), ("o", "Sigmoid"))
    ):  # PyTorch's order of the gates' rows
        rows = slice(index * h_size, (index + 1) * h_size)
        (pre,) = b.op("Gemm", [xh, b.const(f"w_{gate}_{k}", weights[rows]),
                               b.const(f"b_{gate}_{k}", bias[rows])],
                      [f"pre_{gate}_{k}"], transB=1)  # fmt: skip
        gates[gate] = b.op(activation, [pre], [f"{gate}_{k}"])[0]
    (fc,) = b.op("Mul", [gates["f"], c], [f"fc_{k}"])
    (ig,) = b.op("Mul", [gates["i"], gates["g"]], [f"ig_{k}"])
    (c_new,) = b.op("Add", [fc, ig], [f"cn_{k}"])
    (tanh_c,) = b.op("Tanh", [c_new], [f"tanh_c_{k}"])
    (h_new,) = b.op("Mul", [gates["o"], tanh_c], [f"hn_{k}"])
    return h_new, c_new


def encode_pool_graph(model: onnx.ModelProto, cell: str) -> tuple[str, dict[str, Any]]:
    """(metadata value, description) of the pooled one-step graph."""
    data = model.SerializeToString()
    description = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "states": [list(names) for names in pool_state_names(cell)],
    }
    return base64.b64encode(data).decode("ascii"), description


def encode_step_graph(model: onnx.ModelProto, cell: str = "gru") -> tuple[str, dict[str, Any]]:
    """(metadata value, description for the main metadata JSON) of a one-step graph."""
    data = model.SerializeToString()
    states = [("h0", "hn")] if cell == "gru" else [("h0", "hn"), ("c0", "cn")]
    description = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "io": {
            "input": "x",
            "output": "y",
            "batch_axis": 0,
            "time_axis": None,
            "states": [{"input": i, "output": o, "batch_axis": 0} for i, o in states],
        },
    }
    return base64.b64encode(data).decode("ascii"), description
