"""benchmarks/scale.py runs end to end and reports every contender and goal. Never
asserts a speed (benchmarks/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")  # the benchmark exports its models on the fly

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "scale.py"


def test_quick_scale_bench_reports_every_contender_and_goal(tmp_path):
    run = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    expected = ("gru-h64", "lstm-h64", "StreamPool", "by hand", "PyTorch eager",
                "GEMM ceiling", "goals (issue 15)", "open_many", "memory per stream",
                "ticked in rotation")  # fmt: skip
    for words in expected:
        assert words in run.stdout, words
    r = json.loads((tmp_path / "scale.json").read_text())
    assert set(r["models"]) == {"gru-h64", "lstm-h64"}
    for m in r["models"].values():
        assert m["ceiling_steps_per_s"] > 0
        for row in m["sizes"]:
            assert set(row["steps_per_s"]) == {"pool", "by hand", "PyTorch eager"}
            assert all(v > 0 for v in row["steps_per_s"].values())
    assert len(r["goals"]) == 9 and r["million"]["open_many_s"] > 0
    assert all(goal["measured"] is not None for goal in r["goals"]), r["goals"]
    assert (tmp_path / "scale.png").exists()
