"""The one-step graphs pools run (GRU and LSTM): agree with the sequence graph by the
agreement rule, batch-independent, refused when tampered with; a model without them
pools on its own graph."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

import stream_gru as sg
from stream_gru.agreement import assert_agree


@pytest.mark.parametrize("name", ["gru_model", "fleet_model", "lstm_model"])
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
        assert_agree(step_pool.state(k)[s], seq_pool.state(k)[s], what=s).max_abs
        for k in keys
        for s in seq_pool.state(0)
    )
    assert worst_y > 0 or worst_h > 0  # two different graphs: not the same numbers by accident


def test_lstm_pools_run_their_one_step_graph_and_agree_with_their_streams(lstm_model):
    model = sg.load(lstm_model.onnx)
    assert model.pool().graph == "step"
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((300, 6, 3)) * 2).astype(np.float32)
    for pool in (model.pool(), model.pool(state_on_device=True)):
        pool.open_many(range(6))
        ys = np.stack([pool.step_batch(np.arange(6), x[t]) for t in range(300)], axis=1)
        for k in range(6):
            stream = model.stream()
            assert_agree(ys[k], stream.feed(x[:, k]), what=f"stream {k}")
            for name, value in stream.state.items():
                assert_agree(pool.state(k)[name], value, what=name)
    with pytest.raises(ValueError, match="graph must be 'auto', 'step' or 'sequence'"):
        model.pool(graph="fast")


def test_a_model_without_a_one_step_graph_pools_on_its_sequence_graph(lstm_model, tmp_path):
    """A file without the embedded graphs (a model from elsewhere, or one stripped of
    them) still pools, on its own graph."""
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(lstm_model.onnx))
    meta_entry = next(p for p in proto.metadata_props if p.key == "stream_gru")
    meta = json.loads(meta_entry.value)
    del meta["step_graph"], meta["pool_graph"]
    meta_entry.value = json.dumps(meta)
    keep = [p for p in proto.metadata_props if p.key == "stream_gru"]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    onnx.save(proto, str(tmp_path / "plain.onnx"))
    model = sg.load(tmp_path / "plain.onnx")
    assert model.spec.step_graph is None and model.pool().graph == "sequence"
    with pytest.raises(ValueError, match="carries no one-step graph"):
        model.pool(graph="step")
    with pytest.raises(ValueError, match="state_on_device needs the pooled one-step graph"):
        model.pool(state_on_device=True)


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
    assert sg.load(lstm_model.onnx).pool(state_on_device=True).state_on_device
    with pytest.raises(ValueError, match="state_on_device needs the pooled one-step graph"):
        model.pool(graph="sequence", state_on_device=True)


def test_a_tampered_pooled_graph_is_refused(gru_model, tmp_path):
    path = _tamper(gru_model.onnx, "stream_gru.pool", tmp_path / "tampered.onnx")
    model = sg.load(path)
    assert model.pool().graph == "step"  # the host path does not need the pooled graph
    with pytest.raises(sg.ModelError, match=r"pooled one-step graph.*does not match its sha256"):
        model.pool(state_on_device=True)
