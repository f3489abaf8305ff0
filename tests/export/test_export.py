"""Export writes the ONNX contract and refuses graphs that break it; verify catches mismatches."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

import stream_gru as sg  # noqa: E402
from stream_gru.agreement import assert_agree  # noqa: E402
from stream_gru.errors import ExportError  # noqa: E402
from stream_gru.export import check_structure, export_onnx, model_io, verify  # noqa: E402
from stream_gru.export import onnx_export as sg_export  # noqa: E402
from stream_gru.formats.fingerprint import fingerprint_model_bytes  # noqa: E402
from stream_gru.training.network import GRUConfig, GRUModel, load_checkpoint  # noqa: E402


def _dims(value):
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_exported_graph_follows_the_contract(gru_model):
    proto = onnx.load(str(gru_model.onnx))
    shapes = {v.name: _dims(v) for v in [*proto.graph.input, *proto.graph.output]}
    assert shapes == {
        "x": ["batch", "time", 3],
        "h0": [2, "batch", 8],
        "y": ["batch", "time", 2],
        "hn": [2, "batch", 8],
    }
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("GRU") == 2 and "Dropout" not in ops and "Softmax" in ops
    assert check_structure(proto, model_io("gru")) == []
    meta = json.loads(next(p.value for p in proto.metadata_props if p.key == "stream_gru"))
    assert meta["fingerprint"] == fingerprint_model_bytes(gru_model.onnx.read_bytes())
    assert meta["normalization"]["feature_mean"] == [1.0, -2.0, 0.5]
    assert meta["io"]["states"] == [{"input": "h0", "output": "hn", "batch_axis": 1}]
    assert not list(gru_model.onnx.parent.glob("*.onnx.data"))  # one self-contained file


def test_onnx_equals_pytorch_over_10000_chained_steps(any_model, rng):
    """A fresh export against live PyTorch float64, by the agreement rule, in normalized
    units (a regressor's outputs are compared before the target de-normalization, where
    they are near 1, so the rule's rtol cannot hide a difference behind the target's
    scale)."""
    net = load_checkpoint(any_model.checkpoint).double()
    model = sg.load(any_model.onnx)
    x = (rng.standard_normal((10_000, 3)) * 2 + 1).astype(np.float32)
    s = model.stream()
    ys = np.stack([s.step(xi) for xi in x]).astype(np.float64)
    with torch.inference_mode():
        y_ref, h_ref = net(torch.from_numpy(x[None]).double())
    y_ref = y_ref[0].numpy()
    if any_model.task == "regression":
        mean, std = net.target_mean.numpy(), net.target_std.numpy()
        ys, y_ref = (ys - mean) / std, (y_ref - mean) / std
    assert_agree(ys, y_ref, what="outputs")
    h_ref = [h_ref] if any_model.cell == "gru" else list(h_ref)
    for pair, ref in zip(model.spec.states, h_ref, strict=True):
        assert_agree(s.state[pair.input], ref[:, 0].numpy(), what=f"state {pair.input}")


def test_normalization_is_inside_the_graph(lstm_model, rng):
    net = load_checkpoint(lstm_model.checkpoint)
    x = rng.standard_normal((1, 30, 3)).astype(np.float32) * 3 + 2
    y = sg.load(lstm_model.onnx).stream().feed(x[0])
    with torch.inference_mode():
        ref, _ = net(torch.from_numpy(x))
    assert_agree(y, ref[0].numpy(), what="outputs")
    assert abs(float(np.mean(y[:, 0]))) > 10  # target de-normalized to user units (mean 100)


def test_the_default_dynamo_export_is_caught(tmp_path):
    """Trap 1: torch.onnx.export's default (dynamo) fixes the time dimension."""
    net = GRUModel(GRUConfig(input_size=3, hidden_size=8, output_size=2)).eval()
    x, h = torch.zeros(2, 5, 3), torch.zeros(1, 2, 8)
    batch, time = torch.export.Dim("batch"), torch.export.Dim("time")
    path = tmp_path / "dynamo.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (x, h),
            str(path),
            input_names=["x", "h0"],
            output_names=["y", "hn"],
            dynamic_shapes={"x": {0: batch, 1: time}, "h0": {1: batch}},
            external_data=False,
            verbose=False,
        )
    problems = check_structure(onnx.load(str(path)), model_io("gru"))
    assert any("'y' has a fixed time dimension 5" in p for p in problems), problems


def test_linear_before_reset_zero_and_dropout_are_caught(gru_model):
    proto = onnx.load(str(gru_model.onnx))
    gru = next(n for n in proto.graph.node if n.op_type == "GRU")
    next(a for a in gru.attribute if a.name == "linear_before_reset").i = 0
    proto.graph.node.append(onnx.helper.make_node("Dropout", ["y"], ["y_drop"], name="drop"))
    problems = check_structure(proto, model_io("gru"))
    assert any("linear_before_reset=0" in p for p in problems), problems
    assert any("Dropout node 'drop'" in p for p in problems), problems


def test_export_refuses_to_write_a_broken_graph(gru_model, tmp_path, monkeypatch):
    real_export = sg_export._torch_export

    def fixed_batch(net, io):
        proto = real_export(net, io)
        proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 4
        return proto

    monkeypatch.setattr(sg_export, "_torch_export", fixed_batch)
    out = tmp_path / "broken.onnx"
    with pytest.raises(ExportError, match=r"'x' has a fixed batch dimension 4"):
        export_onnx(gru_model.checkpoint, out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_export_keeps_the_old_file_when_it_fails(gru_model, tmp_path, monkeypatch):
    out = tmp_path / "model.onnx"
    export_onnx(gru_model.checkpoint, out)
    before = out.read_bytes()
    monkeypatch.setattr(sg_export, "check_structure", lambda proto, io: ["a planted problem"])
    with pytest.raises(ExportError, match="a planted problem"):
        export_onnx(gru_model.checkpoint, out)
    assert out.read_bytes() == before


def test_verify_passes_and_reports(gru_model, tmp_path):
    report = verify(gru_model.onnx, gru_model.checkpoint, steps=10_000)
    assert report.passed, report.format()
    names = [c.name for c in report.checks]
    assert "10000 chained steps" in names
    assert sum(n.startswith("full sequence") for n in names) == 3
    assert sum(n.startswith("feed in") for n in names) == 3
    assert all(c.excess <= 1 for c in report.checks)  # within the plain rule, no allowance
    path = report.write_json(tmp_path / "r.json")
    data = json.loads(path.read_text())
    assert data["passed"] is True and len(data["checks"]) == len(report.checks)
    assert "verify PASSED" in report.format()


def test_verify_fails_for_other_weights_of_the_same_shapes(gru_model, gru_twin):
    report = verify(gru_model.onnx, gru_twin.checkpoint, steps=200)
    assert not report.passed
    failed = [c.name for c in report.checks if not c.passed]
    assert failed == [c.name for c in report.checks[1:]]  # every numeric check
    assert "200 chained steps" in failed
    assert "verify FAILED" in report.format()


def test_verify_fails_when_metadata_disagrees_with_the_checkpoint(gru_model, tmp_path):
    net = load_checkpoint(gru_model.checkpoint)
    net.feature_names = ["p", "q", "r"]
    report = verify(gru_model.onnx, net, steps=50)
    meta = report.checks[0]
    assert not meta.passed and "feature_names" in meta.detail


def test_verify_tolerances_are_allclose_semantics(lstm_model):
    # Outputs near 100 differ from the exact result by a few float32 ulps: atol=0
    # passes thanks to rtol, and no tolerance at all fails.
    assert verify(lstm_model.onnx, lstm_model.checkpoint, steps=500, atol=0.0, rtol=1e-5).passed
    assert not verify(lstm_model.onnx, lstm_model.checkpoint, steps=500, atol=0.0, rtol=0.0).passed


def test_pass_rule_is_the_agreement_rule_with_the_float32_allowance():
    """|onnx - exact| <= limit at each step, the limit widened to FLOAT32_ALLOWANCE times
    the distance PyTorch float32 has reached by that step."""
    from stream_gru.agreement import FLOAT32_ALLOWANCE as K
    from stream_gru.export.verification import _compare, _Reference

    y64 = np.full((1, 4, 2), 100.0)
    limit = 1e-5 + 1e-5 * 100.0  # atol + rtol * |reference|
    # PyTorch float32 well within the rule: the plain rule.
    ref = _Reference(y64 + 0.1 / K * limit, [], y64, [])
    assert _compare("c", y64 + 0.99 * limit, [], ref, 1e-5, 1e-5).passed
    bad = _compare("c", y64 + 1.01 * limit, [], ref, 1e-5, 1e-5)
    assert not bad.passed and "outputs differ by up to 0.00102" in bad.detail
    assert bad.excess == pytest.approx(1.01) and bad.allowed == 1.0

    # PyTorch float32 drifts: 0, 0.01, 1 and 3 limits at steps 0..3.
    drift = np.array([0.0, 0.01, 1.0, 3.0])[None, :, None] * limit
    ref = _Reference(y64 + drift, [], y64, [])
    within = np.array([0.5, 0.9, 0.99 * K, 0.99 * 3 * K])[None, :, None] * limit
    ok = _compare("c", y64 + within, [], ref, 1e-5, 1e-5)
    assert ok.passed and ok.allowed == pytest.approx(3 * K, rel=1e-6)
    assert ok.float32_excess == pytest.approx(3, rel=1e-6)
    early = within.copy()
    early[0, 1] = 1.5 * limit  # float32 has not drifted yet at step 1: the plain rule
    bad = _compare("c", y64 + early, [], ref, 1e-5, 1e-5)
    assert not bad.passed and "at step 1" in bad.detail
    late = within.copy()
    late[0, 3] = 1.01 * 3 * K * limit
    assert not _compare("c", y64 + late, [], ref, 1e-5, 1e-5).passed
    assert not _compare("c", y64 * np.nan, [], ref, 1e-5, 1e-5).passed


def test_verify_stops_at_the_metadata_when_the_shapes_differ(gru_model, tmp_path):
    from stream_gru.training.network import save_checkpoint

    net = GRUModel(GRUConfig(input_size=3, hidden_size=16, num_layers=2, output_size=2))
    other = save_checkpoint(
        tmp_path / "h16.pt", net, feature_names=["ax", "ay", "az"], output_names=["walk", "rest"]
    )
    report = verify(gru_model.onnx, other, steps=50)
    assert not report.passed and len(report.checks) == 1
    assert "hidden_size: model 8, checkpoint 16" in report.checks[0].detail
