"""benchmarks/serve.py runs end to end against a real server and reports every part.
Never asserts a speed (benchmarks/README.md)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tritonclient.http")
pytest.importorskip("starlette")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "serve.py"


def test_quick_serve_bench_reports_requests_and_the_gateway(fleet_model, tmp_path):
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--model", str(fleet_model.onnx),
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    for words in ("tritonclient.http", "--max-batch 1", "per-request overhead", "Triton",
                  "WebSocket", "binary", "json", "local StreamPool"):  # fmt: skip
        assert words in run.stdout, words
    r = json.loads((tmp_path / "serve.json").read_text())
    assert {row["server"] for row in r["requests"]} == {"batching (2 ms)", "--max-batch 1"}
    for row in r["requests"]:
        assert row["requests_per_s"] > 0 and row["p99_us"] >= row["p50_us"] > 0
        assert math.isfinite(row["overhead_us"]) and row["tick_size"] >= 1
    levels = r["gateway"]["levels"]
    assert {lv["format"] for lv in levels} == {"json", "binary"}
    for lv in levels:
        assert lv["answered"] == lv["expected"]  # every sample came back
    assert (tmp_path / "serve.txt").exists() and (tmp_path / "serve.png").exists()
