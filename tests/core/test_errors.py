"""Bad input raises a specific, readable error, and no stream's state changes."""

from __future__ import annotations

import json

import numpy as np
import pytest

import stream_gru as sg
from stream_gru.formats.snapshot import encode


@pytest.fixture
def stepped(gru_model):
    """A model and a stream with some history, plus the next input and its output."""
    model = sg.load(gru_model.onnx)
    rng = np.random.default_rng(5)
    s = model.stream()
    s.feed(rng.standard_normal((10, 3)).astype(np.float32))
    x_next = rng.standard_normal(3).astype(np.float32)
    twin = model.restore(s.snapshot())
    expected = twin.step(x_next)
    return model, s, x_next, expected


def _assert_unchanged(s, x_next, expected, steps=10):
    assert s.steps == steps
    np.testing.assert_array_equal(s.step(x_next), expected)


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (np.zeros(4, np.float32), ValueError, r"x has shape \(4,\), expected \(3\)"),
        (np.zeros((1, 3), np.float32), ValueError, r"shape \(1, 3\).*use feed\(\)"),
        (np.float32(1.0), ValueError, r"shape \(\), expected \(3\)"),
        ([1.0, 2.0], ValueError, r"shape \(2,\)"),
        (np.array([1.0, np.nan, 0.0]), ValueError, r"finite, found nan at feature 1 \('ay'\)"),
        (np.array([np.inf, 0.0, 0.0]), ValueError, r"finite, found inf at feature 0 \('ax'\)"),
        (np.array([1e39, 0.0, 0.0]), ValueError, r"must fit float32, found 1e\+39 at feature 0"),
        (np.array([True, False, True]), TypeError, r"dtype bool"),
        (np.array([1 + 2j, 0, 0]), TypeError, r"dtype complex128 \(complex\)"),
        (np.array(["1", "2", "3"]), TypeError, r"dtype <U1 \(str\)"),
        ("1,2,3", TypeError, r"got str"),
        ([1.0, "a", None], TypeError, r"dtype object"),
        (None, TypeError, r"dtype object"),
    ],
)
def test_bad_step_input(stepped, bad, error, message):
    _, s, x_next, expected = stepped
    with pytest.raises(error, match=message):
        s.step(bad)
    _assert_unchanged(s, x_next, expected)


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (np.zeros((5, 4)), ValueError, r"X has shape \(5, 4\), expected \(step, 3\)"),
        (np.zeros(3), ValueError, r"X has shape \(3,\), expected \(step, 3\)"),
        (np.zeros((2, 5, 3)), ValueError, r"expected \(step, 3\)"),
        (np.zeros((5, 3), dtype=bool), TypeError, r"dtype bool"),
    ],
)
def test_bad_chunk(stepped, bad, error, message):
    _, s, x_next, expected = stepped
    with pytest.raises(error, match=message):
        s.feed(bad)
    _assert_unchanged(s, x_next, expected)


def test_nan_late_in_a_chunk_rejects_the_whole_chunk(stepped):
    _, s, x_next, expected = stepped
    chunk = np.ones((50, 3), np.float32)
    chunk[37, 2] = np.nan
    with pytest.raises(ValueError, match=r"nan at step 37, feature 2 \('az'\)"):
        s.feed(chunk)
    _assert_unchanged(s, x_next, expected)


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        ({}, ValueError, r"state has keys \[\], expected \['h0'\]"),
        ({"h0": np.zeros((2, 8)), "c0": np.zeros((2, 8))}, ValueError, r"expected \['h0'\]"),
        (
            {"h0": np.zeros((2, 1, 8))},
            ValueError,
            r"state 'h0' has shape \(2, 1, 8\), expected \(2, 8\)",
        ),
        ({"h0": np.full((2, 8), np.nan)}, ValueError, r"state 'h0' must be finite"),
        ({"h0": np.zeros((2, 8), dtype=bool)}, TypeError, r"dtype bool"),
        (np.zeros((2, 8)), TypeError, r"state must be a mapping"),
    ],
)
def test_bad_state_assignment(stepped, bad, error, message):
    _, s, x_next, expected = stepped
    with pytest.raises(error, match=message):
        s.state = bad
    _assert_unchanged(s, x_next, expected)


def test_snapshot_from_another_model_of_the_same_shapes(stepped, gru_twin):
    model, s, x_next, expected = stepped
    twin = sg.load(gru_twin.onnx)
    assert twin.spec.state_shapes == model.spec.state_shapes
    with pytest.raises(sg.SnapshotError, match="made by another model"):
        twin.restore(s.snapshot())
    with pytest.raises(sg.SnapshotError, match="made by another model"):
        model.restore(twin.stream().snapshot())
    _assert_unchanged(s, x_next, expected)


def test_snapshot_from_a_model_of_other_shapes(stepped, lstm_model):
    _, s, *_ = stepped
    with pytest.raises(sg.SnapshotError, match="another model"):
        sg.load(lstm_model.onnx).restore(s.snapshot())


def test_corrupted_snapshots_every_byte(stepped):
    model, s, x_next, expected = stepped
    blob = s.snapshot()
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x41
        with pytest.raises(sg.SnapshotError):
            model.restore(bytes(bad))
    _assert_unchanged(s, x_next, expected)


def test_truncated_snapshots_every_length(stepped):
    model, s, *_ = stepped
    blob = s.snapshot()
    for n in range(len(blob)):
        with pytest.raises(sg.SnapshotError, match=r"truncated|corrupt|not a stream-gru"):
            model.restore(blob[:n])
    with pytest.raises(sg.SnapshotError):
        model.restore(blob + b"\x00")


def test_snapshot_with_a_valid_checksum_but_wrong_state_shape(stepped):
    model, *_ = stepped
    blob = encode(b"STRM", model.spec.fingerprint, {"h0": np.zeros((3, 8), np.float32)})
    with pytest.raises(sg.SnapshotError, match=r"state 'h0' has shape \(3, 8\), expected \(2, 8\)"):
        model.restore(blob)
    blob = encode(b"STRM", model.spec.fingerprint, {"hx": np.zeros((2, 8), np.float32)})
    with pytest.raises(sg.SnapshotError, match=r"expected \['h0'\]"):
        model.restore(blob)


def test_snapshot_of_the_wrong_type(stepped):
    model, *_ = stepped
    with pytest.raises(TypeError, match="snapshot must be bytes, got str"):
        model.restore("not bytes")


# -- model files -----------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        sg.load(tmp_path / "nope.onnx")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"is empty \(0 bytes\)"),
        (b"hello, this is a text file\n" * 10, "not an ONNX model|cannot load"),
        (bytes(range(256)) * 8, "not an ONNX model|cannot load"),
    ],
)
def test_files_that_are_not_models(tmp_path, content, message):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(sg.ModelError, match=message):
        sg.load(path)


def test_a_directory(tmp_path):
    with pytest.raises(sg.ModelError, match="is a directory"):
        sg.load(tmp_path)


def test_truncated_model_files(gru_model, tmp_path):
    data = gru_model.onnx.read_bytes()
    path = tmp_path / "cut.onnx"
    for n in sorted({1, 7, 64, 500, len(data) // 3, len(data) // 2, len(data) - 1}):
        path.write_bytes(data[:n])
        with pytest.raises(sg.ModelError, match=str(path)):
            sg.load(path)


def _edit(model_path, tmp_path, change):
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(model_path))
    change(proto)
    out = tmp_path / "edited.onnx"
    onnx.save(proto, str(out))
    return out


def _edit_metadata(model_path, tmp_path, change):
    def apply(proto):
        entry = next(p for p in proto.metadata_props if p.key == "stream_gru")
        meta = json.loads(entry.value)
        change(meta)
        entry.value = json.dumps(meta)

    return _edit(model_path, tmp_path, apply)


def test_onnx_model_without_metadata(gru_model, tmp_path):
    path = _edit(gru_model.onnx, tmp_path, lambda p: p.ClearField("metadata_props"))
    with pytest.raises(
        sg.ModelError,
        match=r"no stream-gru metadata.*x: tensor\(float\)\[batch, time, 3\].*ModelIO",
    ):
        sg.load(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(hidden_size=16), r"metadata says num_layers 2, hidden_size 16"),
        (lambda m: m.update(input_size=4), r"input_size is 4 but the graph's x"),
        (lambda m: m.update(output_size=5), r"output_size 5 but the graph's y"),
        (lambda m: m.update(feature_names=["a"]), r"1 feature_names for input_size 3"),
        (
            lambda m: m["io"].update(input="features"),
            r"input 'features' named by the metadata is not in the graph",
        ),
        (
            lambda m: m["io"]["states"][0].update(input="h"),
            r"state pair h -> hn is not in the graph",
        ),
        (lambda m: m.update(format_version=99), r"format_version 99 is not supported"),
        (lambda m: m.pop("cell"), r"missing or has a bad field"),
        (lambda m: m.update(fingerprint="0" * 64), r"fingerprint .* does not match"),
    ],
)
def test_metadata_that_does_not_match_the_graph(gru_model, tmp_path, change, message):
    path = _edit_metadata(gru_model.onnx, tmp_path, change)
    with pytest.raises(sg.ModelError, match=message):
        sg.load(path)


def test_weights_changed_after_export(gru_model, tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    def perturb(proto):
        init = next(i for i in proto.graph.initializer if i.name.startswith("onnx::GRU"))
        arr = numpy_helper.to_array(init).copy()
        arr.flat[0] += 0.5
        init.CopyFrom(numpy_helper.from_array(arr, init.name))

    path = _edit(gru_model.onnx, tmp_path, perturb)
    assert onnx.load(str(path)).metadata_props  # the metadata is still there
    with pytest.raises(sg.ModelError, match="changed after export"):
        sg.load(path)


def test_metadata_not_json(gru_model, tmp_path):
    def garble(proto):
        next(p for p in proto.metadata_props if p.key == "stream_gru").value = "{not json"

    with pytest.raises(sg.ModelError, match="not valid JSON"):
        sg.load(_edit(gru_model.onnx, tmp_path, garble))


def test_errors_share_one_base():
    assert issubclass(sg.ModelError, sg.StreamGRUError)
    assert issubclass(sg.SnapshotError, sg.StreamGRUError)


def test_assigned_state_is_copied_not_aliased(stepped):
    _, s, *_ = stepped
    h = np.full((2, 8), 0.25, np.float32)
    s.state = {"h0": h}
    h[:] = np.nan  # the caller's array changes afterwards: the stream must not see it
    np.testing.assert_array_equal(s.state["h0"], np.full((2, 8), 0.25, np.float32))
    assert np.isfinite(s.step(np.ones(3))).all()


def test_metadata_normalization_of_the_wrong_type(gru_model, tmp_path):
    path = _edit_metadata(gru_model.onnx, tmp_path, lambda m: m.update(normalization=[1, 2]))
    with pytest.raises(sg.ModelError, match="missing or has a bad field"):
        sg.load(path)


def test_model_io_naming_constants_the_graph_lacks(gru_model):
    io = sg.ModelIO(
        input="x",
        output="y",
        batch_axis=0,
        time_axis=1,
        states=(sg.StatePair("h0", "hn", batch_axis=1),),
        constants={"sr": np.array(16000, np.int64)},
    )
    with pytest.raises(sg.ModelError, match=r"constants names \['sr'\], which are not inputs"):
        sg.load(gru_model.onnx, io=io)


def test_a_model_without_a_time_axis_feeds_chunks_of_any_length(tmp_path):
    """A stateful model that takes one step per call (ModelIO time_axis=None)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w_in = numpy_helper.from_array(np.full((3, 4), 0.1, np.float32), "w_in")
    w_out = numpy_helper.from_array(np.full((4, 1), 0.5, np.float32), "w_out")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w_in"], ["xw"]),
            helper.make_node("Add", ["xw", "state"], ["pre"]),
            helper.make_node("Tanh", ["pre"], ["stateN"]),
            helper.make_node("MatMul", ["stateN", "w_out"], ["out"]),
        ],
        "cell",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, ["N", 4]),
        ],
        [
            helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 1]),
            helper.make_tensor_value_info("stateN", TensorProto.FLOAT, ["N", 4]),
        ],
        [w_in, w_out],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    path = tmp_path / "cell.onnx"
    onnx.save(model, str(path))
    io = sg.ModelIO(input="x", output="out", states=(sg.StatePair("state", "stateN"),))
    m = sg.load(path, io=io)
    s = m.stream()
    assert s.feed(np.zeros((0, 3))).shape == (0, 1)
    x = np.random.default_rng(0).standard_normal((5, 3))
    fed = s.feed(x)
    assert fed.shape == (5, 1)
    ref = m.stream()
    np.testing.assert_array_equal(fed, np.stack([ref.step(xi) for xi in x]))
    pool = m.pool()
    assert pool.graph == "sequence"
    pool.open("a")
    np.testing.assert_array_equal(pool.step_batch(["a"], x[:1])[0], m.stream().step(x[0]))
