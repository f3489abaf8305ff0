"""The one-step graph pools run: agrees with the sequence graph by the agreement rule,
batch-independent, present only where it should be, refused when tampered with."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

import stream_gru as sg
from stream_gru.agreement import assert_agree


@pytest.mark.parametrize("name", ["gru_model", "fleet_model"])
def test_step_graph_agrees_with_the_sequence_graph_over_10000_chained_steps(name, request):
    tiny = request.getfixturevalue(name)
    model = sg.load(tiny.onnx)
    step_pool, seq_pool = model.pool(graph="step"), model.pool(graph="sequence")
    assert (step_pool.graph, seq_pool.graph, model.pool().graph) == ("step", "sequence", "step")
    keys = list(range(4))
    for k in keys:
        step_pool.open(k)
        seq_pool.open(k)
    rng = np.random.default_rng(3)
    worst_y = 0.0
    for t in range(10_000):
        x = (rng.standard_normal((4, tiny.input_size)) * 2).astype(np.float32)
        y_step, y_seq = step_pool.step_batch(keys, x), seq_pool.step_batch(keys, x)
        worst_y = max(worst_y, assert_agree(y_step, y_seq, what=f"outputs at step {t}").max_abs)
    worst_h = max(
        assert_agree(step_pool.state(k)["h0"], seq_pool.state(k)["h0"], what="states").max_abs
        for k in keys
    )
    assert worst_y > 0 or worst_h > 0  # two different graphs: not the same numbers by accident


def test_pools_of_an_lstm_run_the_sequence_graph(lstm_model):
    model = sg.load(lstm_model.onnx)
    assert model.spec.step_graph is None
    assert model.pool().graph == "sequence"
    with pytest.raises(ValueError, match="carries no one-step graph"):
        model.pool(graph="step")
    with pytest.raises(ValueError, match="graph must be 'auto', 'step' or 'sequence'"):
        model.pool(graph="fast")


def _tamper(model_path, key, out):
    """A copy of the model with one byte of an embedded graph flipped."""
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(model_path))
    entry = next(p for p in proto.metadata_props if p.key == key)
    data = bytearray(base64.b64decode(entry.value))
    data[-10] ^= 0xFF
    entry.value = base64.b64encode(bytes(data)).decode()
    onnx.save(proto, str(out))
    return out


def test_a_tampered_step_graph_is_refused(gru_model, tmp_path):
    path = _tamper(gru_model.onnx, "stream_gru.step", tmp_path / "tampered.onnx")
    model = sg.load(path)  # the sequence graph is intact: streams still run
    model.stream().step(np.zeros(3))
    with pytest.raises(sg.ModelError, match="does not match its sha256"):
        model.pool()
    assert model.pool(graph="sequence").graph == "sequence"


def test_the_step_graph_is_described_in_the_metadata(gru_model):
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(gru_model.onnx))
    meta = json.loads(next(p.value for p in proto.metadata_props if p.key == "stream_gru"))
    assert meta["step_graph"]["io"]["states"] == [{"input": "h0", "output": "hn", "batch_axis": 0}]
    step = onnx.load_from_string(
        base64.b64decode(next(p.value for p in proto.metadata_props if p.key == "stream_gru.step"))
    )
    ops = {n.op_type for n in step.graph.node}
    assert "GRU" not in ops and {"Gemm", "Sigmoid", "Tanh"} <= ops


def test_device_resident_states_where_asked(gru_model, lstm_model):
    model = sg.load(gru_model.onnx)
    assert not model.pool().state_on_device  # on the CPU the host arrays are the default
    assert model.pool(state_on_device=True).state_on_device
    with pytest.raises(ValueError, match="state_on_device needs the pooled one-step graph"):
        model.pool(graph="sequence", state_on_device=True)
    with pytest.raises(ValueError, match="state_on_device needs the pooled one-step graph"):
        sg.load(lstm_model.onnx).pool(state_on_device=True)


def test_a_tampered_pooled_graph_is_refused(gru_model, tmp_path):
    path = _tamper(gru_model.onnx, "stream_gru.pool", tmp_path / "tampered.onnx")
    model = sg.load(path)
    assert model.pool().graph == "step"  # the host path does not need the pooled graph
    with pytest.raises(sg.ModelError, match=r"pooled one-step graph.*does not match its sha256"):
        model.pool(state_on_device=True)
