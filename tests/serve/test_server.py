"""``stream-gru serve`` driven by real clients: tritonclient (binary and JSON), a
WebSocket client, plain HTTP for admin. Every output is checked against the model's own
``Stream`` for the same key, by the agreement rule."""

from __future__ import annotations

import concurrent.futures
import json

import numpy as np
import pytest

import stream_gru as sg
from stream_gru.agreement import assert_agree

from .conftest import Server

httpclient = pytest.importorskip("tritonclient.http")
ws_client = pytest.importorskip("websockets.sync.client")


@pytest.fixture(scope="module")
def server(gru_model):
    with Server(gru_model.onnx) as running:
        yield running


@pytest.fixture(scope="module")
def model(gru_model):
    return sg.load(gru_model.onnx)


def _input(x: np.ndarray, binary: bool):
    tensor = httpclient.InferInput("x", [1, *x.shape], "FP32")
    tensor.set_data_from_numpy(x[None].astype(np.float32), binary_data=binary)
    return tensor


def test_tritonclient_binary_json_and_chunks_under_concurrency_equal_streams(server, model):
    rng = np.random.default_rng(5)
    keys = [f"triton-{i}" for i in range(24)]
    plans = {k: [int(n) for n in rng.integers(1, 4, size=6)] for k in keys}  # step or chunk
    xs = {k: rng.standard_normal((sum(plans[k]), 3)).astype(np.float32) for k in keys}
    before = server.metrics()

    def drive(i: int, key: str) -> np.ndarray:
        client = httpclient.InferenceServerClient(server.url[7:])
        outputs, t = [], 0
        for j, n in enumerate(plans[key]):
            x = xs[key][t : t + n] if n > 1 else xs[key][t]
            binary = (i + j) % 2 == 0
            requested = [httpclient.InferRequestedOutput("y", binary_data=binary)]
            result = client.infer("gru", [_input(x, binary)], sequence_id=key,
                                  sequence_start=(j == 0), outputs=requested)  # fmt: skip
            y = result.as_numpy("y")[0]
            outputs.append(y if n > 1 else y[None])
            assert result.get_response()["parameters"]["steps"] == t + n
            t += n
        client.close()
        return np.concatenate(outputs)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        got = dict(zip(keys, pool.map(drive, range(len(keys)), keys), strict=True))
    for key in keys:
        assert_agree(got[key], model.stream().feed(xs[key]), what=key)
    after = server.metrics()
    stepped = after["stream_gru_stream_steps_total"] - before["stream_gru_stream_steps_total"]
    assert stepped == sum(len(x) for x in xs.values())
    ticks = after["stream_gru_tick_size_count"] - before["stream_gru_tick_size_count"]
    one = (
        after['stream_gru_tick_size_bucket{le="1"}'] - before['stream_gru_tick_size_bucket{le="1"}']
    )
    assert ticks < stepped and one < ticks  # ticks really batched concurrent requests


def test_sequence_flags_and_numeric_ids(server, model):
    client = httpclient.InferenceServerClient(server.url[7:])
    x = np.array([0.5, -1.0, 2.0], np.float32)
    ref = model.stream()
    first = client.infer("gru", [_input(x, True)], sequence_id=987654321, sequence_start=True)
    assert_agree(first.as_numpy("y")[0], ref.step(x))
    assert first.get_response()["parameters"]["sequence_id"] == "987654321"
    again = client.infer("gru", [_input(x, True)], sequence_id=987654321, sequence_end=True)
    assert_agree(again.as_numpy("y")[0], ref.step(x))
    status, _, _ = server.request("GET", "/v1/streams/987654321")
    assert status == 404  # sequence_end closed it
    restarted = client.infer("gru", [_input(x, True)], sequence_id="987654321")
    assert_agree(restarted.as_numpy("y")[0], model.stream().step(x))
    assert restarted.get_response()["parameters"]["stream"] == "opened"
    over = client.infer("gru", [_input(x, True)], sequence_id="987654321", sequence_start=True)
    assert over.get_response()["parameters"]["stream"] == "restarted"
    assert_agree(over.as_numpy("y")[0], model.stream().step(x))
    with pytest.raises(Exception, match="sequence_id is missing"):
        client.infer("gru", [_input(x, True)])
    client.close()


def test_health_metadata_and_unknown_model(server):
    client = httpclient.InferenceServerClient(server.url[7:])
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("gru")
    meta = client.get_model_metadata("gru")
    assert meta["inputs"][0]["name"] == "x" and meta["outputs"][0]["shape"] == [1, -1, 2]
    assert not client.is_model_ready("other")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    client.close()


def test_websocket_frames_equal_streams(server, model):
    rng = np.random.default_rng(6)
    keys = [f"ws-{i}" for i in range(200)]
    xs = rng.standard_normal((5, len(keys), 3)).astype(np.float32)
    replies: dict[str, list] = {k: [] for k in keys}
    with ws_client.connect(server.url.replace("http", "ws") + "/v1/stream") as ws:
        for t in range(5):  # frames sent back to back: replies come in order per key
            ws.send(json.dumps({"samples": {k: xs[t, i].tolist() for i, k in enumerate(keys)}}))
        ws.send(json.dumps({"key": "ws-0", "x": [1.0, 2.0]}))  # bad: the next still right
        ws.send("{not json")
        ws.send(json.dumps({"key": "ws-0", "x": [1.0, 2.0, 3.0]}))
        frames = [json.loads(ws.recv(timeout=30)) for _ in range(5 * len(keys) + 3)]
    errors = [f for f in frames if "error" in f]
    assert [f["code"] for f in errors] == ["bad_sample", "bad_frame"]
    assert "shape (2,)" in errors[0]["error"] and errors[0]["key"] == "ws-0"
    for frame in frames:
        if "y" in frame:
            replies[frame["key"]].append((frame["step"], frame["y"]))
    for i, key in enumerate(keys):
        steps = [s for s, _ in replies[key]]
        ref = model.stream()
        want = ref.feed(xs[:, i])
        if key == "ws-0":
            want = np.concatenate([want, ref.step([1.0, 2.0, 3.0])[None]])
        assert steps == list(range(1, len(want) + 1)), key
        assert_agree(np.array([y for _, y in replies[key]]), want, what=key)


def test_admin_by_key(server, model):
    x = np.array([1.0, 0.0, -1.0], np.float32)
    for _ in range(3):
        assert server.infer_json("admin-1", x)[0] == 200
    status, _, body = server.request("GET", "/v1/streams/admin-1")
    info = json.loads(body)
    assert status == 200 and info["steps"] == 3 and 0 <= info["idle_seconds"] < 60
    status, headers, blob = server.request("GET", "/v1/streams/admin-1/snapshot")
    assert status == 200 and headers["content-type"] == "application/octet-stream"
    restored = model.restore(blob)
    assert restored.steps == 3
    status, _, body = server.request("PUT", "/v1/streams/admin-1/snapshot", blob)
    assert status == 409 and json.loads(body)["code"] == "open"
    assert server.request("DELETE", "/v1/streams/admin-1")[0] == 204
    assert server.request("GET", "/v1/streams/admin-1")[0] == 404
    assert server.request("DELETE", "/v1/streams/admin-1")[0] == 404
    assert server.request("GET", "/v1/streams/admin-1/snapshot")[0] == 404
    for bad in (blob[:-1] + bytes([blob[-1] ^ 1]), b"", b"not a snapshot"):
        status, _, body = server.request("PUT", "/v1/streams/admin-1/snapshot", bad)
        assert status == 400 and json.loads(body)["code"] == "bad_snapshot"
    assert server.request("GET", "/v1/streams/admin-1")[0] == 404  # nothing opened
    assert server.request("PUT", "/v1/streams/admin-1/snapshot", blob)[0] == 204
    status, answer = server.infer_json("admin-1", x)
    assert_agree(np.array(answer["outputs"][0]["data"]), restored.step(x))
    assert answer["parameters"]["steps"] == 4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b"{not json", "not valid JSON"),
        (lambda b: b.replace(b'"FP32"', b'"FP64"'), "datatype 'FP64', expected FP32"),
        (lambda b: b.replace(b'"name": "x"', b'"name": "input"'), "unknown input 'input'"),
        (lambda b: b.replace(b"[1, 3]", b"[1, 4]"), "expected [1, 3] for one step"),
        (lambda b: b.replace(b"0.25", b"NaN"), "finite"),
        (lambda b: b.replace(b"0.25", b'"a"'), "data must be numbers"),
        (lambda b: b.replace(b'"sequence_id": "lim-1"', b'"sequence_id": 0'), "uint64 > 0"),
        (lambda b: b.replace(b'"sequence_id": "lim-1"', b'"sequence_id": 1.5'), "uint64 or"),
        (lambda b: b.replace(b'"sequence_start": false', b'"sequence_start": "yes"'), "true or"),
    ],
)
def test_bad_requests_are_400_and_change_nothing(server, model, change, message):
    good = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [0.25, 1, 2]}],
            "parameters": {"sequence_id": "lim-1", "sequence_start": False}}  # fmt: skip
    server.request("DELETE", "/v1/streams/lim-1")
    ref = model.stream()
    assert server.infer_json("lim-1", [0.25, 1, 2])[0] == 200
    ref.step([0.25, 1, 2])
    status, _, body = server.request(
        "POST", "/v2/models/gru/infer", change(json.dumps(good).encode())
    )
    assert status == 400, body
    assert message in json.loads(body)["error"]
    status, answer = server.infer_json("lim-1", [0.25, 1, 2])  # the stream did not move
    assert status == 200 and answer["parameters"]["steps"] == 2
    assert_agree(np.array(answer["outputs"][0]["data"]), ref.step([0.25, 1, 2]))


def test_metrics_have_their_names(server):
    names = set(server.metrics())
    expected = (
        "stream_gru_stream_steps_total", "stream_gru_open_streams",
        "stream_gru_tick_size_count", "stream_gru_queue_duration_seconds_count",
        'stream_gru_request_duration_seconds_count{protocol="http"}',
        'stream_gru_rejected_samples_total{reason="bad_sample"}',
        "stream_gru_expired_streams_total", "stream_gru_resumed_streams_total",
    )  # fmt: skip
    for name in expected:
        assert name in names, name
    assert not any("key" in n for n in names)  # no per-key labels


def test_binary_gateway_frames_equal_streams(server, model):
    from stream_gru.serve.gateway import decode_reply, encode_request

    rng = np.random.default_rng(9)
    keys = [f"gw-{i}" for i in range(300)]
    xs = rng.standard_normal((4, len(keys), 3)).astype(np.float32)
    with ws_client.connect(server.url.replace("http", "ws") + "/v1/stream") as ws:
        for t in range(4):
            ws.send(encode_request(keys, xs[t]))
        bad = xs[0, :3].copy()
        bad[1, 2] = np.nan
        ws.send(encode_request(["gw-0", "gw-1", "gw-0"], bad))  # NaN, and a key twice
        ws.send(b"SGB1" + b"\xff" * 8)  # unreadable: a text error, the connection stays
        ws.send(encode_request(["gw-1"], xs[0, :1]))
        replies = [ws.recv(timeout=30) for _ in range(7)]
    decoded = [decode_reply(r) for r in replies[:5]]
    outputs = np.stack([d.outputs for d in decoded[:4]])  # (t, key, out)
    assert all(d.status == ["ok"] * len(keys) for d in decoded[:4])
    assert decoded[0].streams == dict.fromkeys(range(len(keys)), "opened")
    assert decoded[1].streams == {}
    for i, key in enumerate(keys):
        assert_agree(outputs[:, i], model.stream().feed(xs[:, i]), what=key)
        assert [int(d.steps[i]) for d in decoded[:4]] == [1, 2, 3, 4]
    mixed = decoded[4]
    assert mixed.status == ["ok", "bad_sample", "bad_key"] and mixed.steps[0] == 5
    assert "named twice" in mixed.errors[2] and "finite" in mixed.errors[1]
    assert json.loads(replies[5])["code"] == "bad_frame"
    last = decode_reply(replies[6])
    ref = model.stream()
    ref.feed(xs[:, 1])
    assert last.steps[0] == 5 and last.status == ["ok"]  # gw-1's bad sample changed nothing
    assert_agree(last.outputs[0], ref.step(xs[0, 0]))
