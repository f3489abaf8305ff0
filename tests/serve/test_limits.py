"""The server's limits, security and lifetime, each on its own ``stream-gru serve``
process: every refusal answers its status and changes no state (a good request on the
same stream afterwards still gets the right output)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import stream_gru as sg
from stream_gru.agreement import assert_agree

from .conftest import Server

ws_client = pytest.importorskip("websockets.sync.client")
ws_exceptions = pytest.importorskip("websockets.exceptions")
X = [0.5, -1.0, 2.0]


@pytest.fixture(scope="module")
def model(gru_model):
    return sg.load(gru_model.onnx)


def _y(answer) -> np.ndarray:
    return np.array(answer["outputs"][0]["data"])


def test_a_body_over_the_limit_is_413(gru_model, model):
    with Server(gru_model.onnx, "--max-body-bytes", "2048") as server:
        assert server.infer_json("a", X)[0] == 200
        status, answer = server.infer_json("a", np.ones((300, 3)))
        assert status == 413 and answer["code"] == "too_large" and "2,048" in answer["error"]
        body = json.dumps({"inputs": [], "pad": "x" * 5000}).encode()
        status, _, _ = server.request("POST", "/v2/models/gru/infer", body,
                                      {"Transfer-Encoding": "chunked"})  # fmt: skip
        assert status in (400, 413)
        ref = model.stream()
        ref.step(X)
        status, answer = server.infer_json("a", X)
        assert status == 200 and answer["parameters"]["steps"] == 2
        assert_agree(_y(answer), ref.step(X))
        with ws_client.connect(server.url.replace("http", "ws") + "/v1/stream") as ws:
            ws.send(json.dumps({"key": "a", "x": X, "pad": "x" * 5000}))
            with pytest.raises(ws_exceptions.ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # too big
        assert server.infer_json("a", X)[1]["parameters"]["steps"] == 3


def test_a_new_key_beyond_max_streams_is_429(gru_model, model):
    with Server(gru_model.onnx, "--max-streams", "2") as server:
        assert server.infer_json("a", X)[0] == 200 and server.infer_json("b", X)[0] == 200
        status, answer = server.infer_json("c", X)
        assert status == 429 and answer["code"] == "too_many_streams"
        assert server.request("GET", "/v1/streams/c")[0] == 404
        with ws_client.connect(server.url.replace("http", "ws") + "/v1/stream") as ws:
            ws.send(json.dumps({"samples": {"c": X, "a": X}}))
            frames = [json.loads(ws.recv(timeout=10)) for _ in range(2)]
        assert frames[0]["code"] == "too_many_streams" and frames[1]["step"] == 2
        ref = model.stream()
        for _ in range(2):
            ref.step(X)
        status, answer = server.infer_json("a", X)
        assert_agree(_y(answer), ref.step(X))
        assert server.request("DELETE", "/v1/streams/b")[0] == 204
        assert server.infer_json("c", X)[0] == 200
        metrics = server.metrics()
        assert metrics['stream_gru_rejected_samples_total{reason="too_many_streams"}'] == 2


def test_a_full_queue_is_503_with_retry_after(gru_model, model):
    with Server(gru_model.onnx, "--max-queue", "1", "--max-delay-ms", "400") as server:
        first: list = []
        waiting = threading.Thread(target=lambda: first.append(server.infer_json("a", X)))
        waiting.start()
        time.sleep(0.15)  # "a" waits for its deadline, holding the queue's one place
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": X}],
                "parameters": {"sequence_id": "b"}}  # fmt: skip
        status, headers, content = server.request(
            "POST", "/v2/models/gru/infer", json.dumps(body).encode()
        )
        waiting.join(30)
        assert status == 503 and headers["retry-after"] == "1"
        assert json.loads(content)["code"] == "queue_full"
        assert first[0][0] == 200
        assert server.request("GET", "/v1/streams/b")[0] == 404  # refused: nothing opened
        status, answer = server.infer_json("b", X)
        assert status == 200 and answer["parameters"] == {
            "sequence_id": "b",
            "steps": 1,
            "stream": "opened",
        }
        assert_agree(_y(answer), model.stream().step(X))


def test_a_token_guards_everything_but_health(gru_model, tmp_path):
    token = "s3cret-token-of-some-length"
    (tmp_path / "token").write_text(token + "\n")
    with Server(gru_model.onnx, "--token-file", tmp_path / "token", token=token) as server:
        for path in ("/v2/models/gru", "/metrics", "/v1/streams/a"):
            status, headers, _ = server.request("GET", path, headers={"Authorization": "x"})
            assert status == 401 and headers["www-authenticate"] == "Bearer", path
        status, _, _ = server.request("GET", "/v2/health/ready", headers={"Authorization": ""})
        assert status == 200
        assert server.infer_json("a", X)[0] == 200
        url = server.url.replace("http", "ws") + "/v1/stream"
        with pytest.raises(ws_exceptions.InvalidStatus, match="403"):  # at the handshake
            ws_client.connect(url)
        with ws_client.connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            ws.send(json.dumps({"key": "a", "x": X}))
            assert json.loads(ws.recv(timeout=10))["step"] == 2
    assert token not in server.output()


def test_a_public_address_without_a_token_refuses_to_start(gru_model, tmp_path):
    command = [sys.executable, "-m", "stream_gru", "serve", str(gru_model.onnx),
               "--host", "0.0.0.0", "--port", "0"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "refusing to serve on 0.0.0.0 without --token-file" in result.stderr
    assert "Traceback" not in result.stderr
    (tmp_path / "short").write_text("abc")
    result = subprocess.run([*command, "--token-file", str(tmp_path / "short")],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 1 and "at least 16 characters" in result.stderr


def test_require_start_refuses_a_new_key_without_it(gru_model):
    with Server(gru_model.onnx, "--require-start") as server:
        status, answer = server.infer_json("a", X)
        assert status == 400 and answer["code"] == "not_started"
        assert server.infer_json("a", X, start=True)[0] == 200
        assert server.infer_json("a", X)[1]["parameters"]["steps"] == 2


def _wait_for(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("the condition did not hold in time")


def test_an_expired_stream_resumes_from_the_archive(gru_model, model, tmp_path):
    archive = tmp_path / "archive"
    with Server(gru_model.onnx, "--idle-timeout", "0.5", "--archive", archive) as server:
        ref = model.stream()
        for _ in range(3):
            server.infer_json("dev/1", X)
            ref.step(X)
        _wait_for(lambda: server.metrics()["stream_gru_expired_streams_total"] >= 1)
        assert server.request("GET", "/v1/streams/dev/1")[0] == 404
        assert [p.name for p in archive.iterdir()] == ["k-" + b"dev/1".hex() + ".snapshot"]
        status, answer = server.infer_json("dev/1", X)
        assert status == 200 and answer["parameters"]["stream"] == "resumed"
        assert answer["parameters"]["steps"] == 4
        assert_agree(_y(answer), ref.step(X))  # as if it had never paused
        assert list(archive.iterdir()) == []
        assert server.metrics()["stream_gru_resumed_streams_total"] == 1


def test_without_an_archive_an_expired_key_starts_afresh_and_is_told(gru_model, model):
    with Server(gru_model.onnx, "--idle-timeout", "0.5") as server:
        server.infer_json("a", X)
        _wait_for(lambda: server.metrics()["stream_gru_expired_streams_total"] >= 1)
        _, answer = server.infer_json("a", X)
        assert answer["parameters"]["stream"] == "expired" and answer["parameters"]["steps"] == 1
        assert_agree(_y(answer), model.stream().step(X))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_drains_saves_and_a_restart_continues_exactly(gru_model, model, tmp_path, sig):
    state = tmp_path / "fleet.sgpool"
    rng = np.random.default_rng(8)
    xs = rng.standard_normal((6, 3)).astype(np.float32)
    server = Server(gru_model.onnx, "--state", state, "--drain-timeout", "10").start()
    try:
        for x in xs[:3]:
            server.infer_json("a", x)
        server.infer_json("b", xs[0])
    finally:
        assert server.stop(sig) == 0
    assert state.exists()
    with Server(gru_model.onnx, "--state", state) as again:
        ref = model.stream()
        ref.feed(xs[:3])
        for x in xs[3:]:
            status, answer = again.infer_json("a", x)
            assert status == 200 and "stream" not in answer["parameters"]
            assert_agree(_y(answer), ref.step(x))
        assert json.loads(again.request("GET", "/v1/streams/b")[2])["steps"] == 1
