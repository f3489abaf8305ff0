"""The one-step graph: a GRU cell written out in plain ONNX ops (``train`` extra).

For a pool, every tick is one time step of many streams. The ONNX GRU op is built for
sequences; for one step at large batch a graph of plain Gemm/Sigmoid/Tanh nodes is
1.3-1.6x faster on the CPU (docs/design.md, trap 7), while at batch 1 the GRU op wins (fewer
nodes). So export writes both: the sequence graph is the model file's graph (the ONNX
contract), and the one-step graph travels inside the same file, serialized in the
metadata key ``stream_gru.step``. Streams use the first, pools the second; a stream's
result never depends on what else is in its tick, because the graph is chosen per
pool, not per call.

The one-step graph is batch-major: ``x`` [batch, input_size], ``h0`` [batch,
num_layers, hidden_size] -> ``y`` [batch, output_size], ``hn`` [batch, num_layers,
hidden_size], so a pool feeds its slot-major state arrays without transposing them.
It computes PyTorch's GRU (``linear_before_reset=1``):

    r, z = sigmoid(W_ir x + b_ir + W_hr h + b_hr), sigmoid(W_iz x + b_iz + W_hz h + b_hz)
       (each as two Gemm nodes, the second adding the first through its C input)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = n + z * (h - n)              # = (1 - z) * n + z * h
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


def build_step_graph(net: GRUModel, *, pooled: bool = False) -> onnx.ModelProto | None:
    """The one-step graph of a GRU network (``None`` for an LSTM: not written yet).

    ``pooled``: the variant that keeps a whole pool's state in one tensor, for state
    that stays on a device between ticks: ``states`` [capacity, num_layers,
    hidden_size], ``slots`` int64 [batch] and ``x`` in; ``y`` and ``states_out`` (the
    states with the ticked slots replaced: Gather, the cell, ScatterND) out.
    """
    cfg = net.config
    if cfg.cell != "gru":
        return None
    h_size, layers = cfg.hidden_size, cfg.num_layers
    w = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
    b = _Builder()
    if pooled:
        b.op("Gather", ["states", "slots"], ["h0"], axis=0)
    (xc,) = b.op("Sub", ["x", b.const("feature_mean", w["feature_mean"])], ["x_centered"])
    (xin,) = b.op("Div", [xc, b.const("feature_std", w["feature_std"])], ["x_normalized"])
    axis1 = b.const("axis_1", np.array([1], np.int64))
    if layers == 1:  # a view, not a copy
        layer_inputs = b.op("Squeeze", ["h0", axis1], ["h_0"])
    else:
        splits = b.const("split_layers", np.ones(layers, np.int64))
        parts = b.op("Split", ["h0", splits], [f"h_{k}_3d" for k in range(layers)], axis=1)
        layer_inputs = [b.op("Squeeze", [p, axis1], [f"h_{k}"])[0] for k, p in enumerate(parts)]
    layer_states = []
    for k in range(layers):
        h = layer_inputs[k]
        w_ih, w_hh = w[f"rnn.weight_ih_l{k}"], w[f"rnn.weight_hh_l{k}"]
        b_ih, b_hh = w[f"rnn.bias_ih_l{k}"], w[f"rnn.bias_hh_l{k}"]
        gate = {}
        for g, rows in (("r", slice(0, h_size)), ("z", slice(h_size, 2 * h_size))):
            # Gemm's C input adds the input half to the hidden half in the same node.
            (gi,) = b.op(
                "Gemm",
                [
                    xin,
                    b.const(f"w_i{g}_{k}", w_ih[rows]),
                    b.const(f"b_{g}_{k}", b_ih[rows] + b_hh[rows]),
                ],
                [f"gi_{g}_{k}"],
                transB=1,
            )
            (pre,) = b.op(
                "Gemm", [h, b.const(f"w_h{g}_{k}", w_hh[rows]), gi], [f"pre_{g}_{k}"], transB=1
            )
            gate[g] = b.op("Sigmoid", [pre], [f"{g}_{k}"])[0]
        rows = slice(2 * h_size, 3 * h_size)
        (gi_n,) = b.op(
            "Gemm",
            [xin, b.const(f"w_in_{k}", w_ih[rows]), b.const(f"b_in_{k}", b_ih[rows])],
            [f"gi_n_{k}"],
            transB=1,
        )
        (gh_n,) = b.op(
            "Gemm",
            [h, b.const(f"w_hn_{k}", w_hh[rows]), b.const(f"b_hn_{k}", b_hh[rows])],
            [f"gh_n_{k}"],
            transB=1,
        )
        (r_gh,) = b.op("Mul", [gate["r"], gh_n], [f"r_gh_{k}"])
        (pre_n,) = b.op("Add", [gi_n, r_gh], [f"pre_n_{k}"])
        (n,) = b.op("Tanh", [pre_n], [f"n_{k}"])
        (h_minus_n,) = b.op("Sub", [h, n], [f"h_minus_n_{k}"])
        (z_d,) = b.op("Mul", [gate["z"], h_minus_n], [f"z_d_{k}"])
        (xin,) = b.op("Add", [n, z_d], [f"hn_{k}"])
        layer_states.append(b.op("Unsqueeze", [xin, axis1], [f"hn_{k}_3d"])[0])
    if layers == 1:
        b.nodes[-1].output[0] = "hn"
    else:
        b.op("Concat", layer_states, ["hn"], axis=1)
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
        b.op("ScatterND", ["states", index, "hn"], ["states_out"])
        states: list[str | int | None] = ["capacity", layers, h_size]
        inputs = [
            helper.make_tensor_value_info("states", f32, states),
            helper.make_tensor_value_info("slots", TensorProto.INT64, ["batch"]),
            x_info,
        ]
        outputs = [y_info, helper.make_tensor_value_info("states_out", f32, states)]
    else:
        inputs = [x_info, helper.make_tensor_value_info("h0", f32, ["batch", layers, h_size])]
        outputs = [y_info, helper.make_tensor_value_info("hn", f32, ["batch", layers, h_size])]
    name = "stream_gru_pool_step" if pooled else "stream_gru_step"
    graph = helper.make_graph(b.nodes, name, inputs, outputs, b.initializers)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", _OPSET)], producer_name="stream-gru"
    )
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def encode_pool_graph(model: onnx.ModelProto) -> tuple[str, dict[str, Any]]:
    """(metadata value, description) of the pooled one-step graph."""
    data = model.SerializeToString()
    return base64.b64encode(data).decode("ascii"), {"sha256": hashlib.sha256(data).hexdigest()}


def encode_step_graph(model: onnx.ModelProto) -> tuple[str, dict[str, Any]]:
    """(metadata value, description for the main metadata JSON) of a one-step graph."""
    data = model.SerializeToString()
    description = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "io": {
            "input": "x",
            "output": "y",
            "batch_axis": 0,
            "time_axis": None,
            "states": [{"input": "h0", "output": "hn", "batch_axis": 0}],
        },
    }
    return base64.b64encode(data).decode("ascii"), description
