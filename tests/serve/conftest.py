"""A real ``stream-gru serve`` process on 127.0.0.1 for the tests, with bounded waits."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``python -m stream_gru serve MODEL ARGS`` on a free port, ready when started."""

    def __init__(self, model: Path, *args: str, token: str | None = None) -> None:
        self.model = model
        self.args = [str(a) for a in args]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = token
        self.process: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 60.0) -> Server:
        command = [sys.executable, "-m", "stream_gru", "serve", str(self.model),
                   "--port", str(self.port), "--log-level", "warning", *self.args]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited: {self.process.stdout.read()}")  # type: ignore[union-attr]
            try:
                with urllib.request.urlopen(self.url + "/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError("the server did not become ready in time")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Send ``sig``; the exit status (the process is killed after ``timeout``)."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return int(self.process.returncode)

    def output(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        return self.process.stdout.read()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- plain HTTP, for admin and limits -------------------------------------------------
    def request(
        self, method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
        headers = dict(headers or {})
        if self.token is not None:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        request = urllib.request.Request(self.url + path, body, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def infer_json(self, key: str | int, x, *, start=False, end=False, name="gru", extra=None):
        """A JSON infer request: (status, decoded answer)."""
        import numpy as np

        x = np.asarray(x, np.float32)
        shape = [1, *x.shape]
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": shape,
                            "data": x.ravel().tolist()}],
                "parameters": {"sequence_id": key, "sequence_start": start,
                               "sequence_end": end}}  # fmt: skip
        body.update(extra or {})
        status, _, content = self.request(
            "POST", f"/v2/models/{name}/infer", json.dumps(body).encode(),
            {"Content-Type": "application/json"},
        )  # fmt: skip
        return status, json.loads(content)

    def metrics(self) -> dict[str, float]:
        """The metrics' samples, by their full name with labels."""
        status, _, content = self.request("GET", "/metrics")
        assert status == 200
        out = {}
        for line in content.decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out
