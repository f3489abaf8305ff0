"""benchmarks/sharded.py runs end to end and reports every contender. Never asserts a
speed (benchmarks/README.md). It runs in a subprocess: it starts and stops its own Ray
runtime, which must not meet the one tests/distributed/test_sharded.py keeps in this process."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray")
pytest.importorskip("torch")  # the benchmark exports its model on the fly

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "sharded.py"


def _positive(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def test_quick_sharded_bench_reports_every_contender(tmp_path: Path) -> None:
    out = tmp_path / "sharded.json"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    for words in ("sharded pool", "local", "sharded-4", "overhead", "recovery", "cores"):
        assert words in run.stdout
    r = json.loads(out.read_text())
    assert r["quick"] is True and r["machine"]["cpu"] and r["date"] and r["versions"]["ray"]
    shards = r["settings"]["shards"]
    assert shards == [1, 2, 4]
    assert [s["streams"] for s in r["sizes"]] == r["settings"]["streams"]
    for size in r["sizes"]:
        assert set(size["contenders"]) == {"local", *(f"sharded-{k}" for k in shards)}
        assert size["max_abs_diff_first_tick"] == 0.0  # bit for bit a local pool
        for name, c in size["contenders"].items():
            for key in ("steps_per_s", "tick_ms_p50", "tick_ms_p99", "ratio_to_local"):
                assert _positive(c[key]), (size["streams"], name, key, c)
            if c["shards"]:
                for key in ("busiest_shard_ms_p50", "checks_ms_p50", "checkpoint_ms_p50"):
                    assert _positive(c[key]), (size["streams"], name, key, c)
                for key in ("overhead_ms_p50", "overhead_ms_p99"):  # a difference of timings
                    assert _finite(c[key]), (size["streams"], name, key, c)
    rec = r["recovery"]
    assert rec["recovered"] is True and rec["shards"] == max(shards)
    assert rec["streams"] == r["settings"]["streams"][-1]
    assert _positive(rec["recovery_seconds"]) and _positive(rec["tick_seconds"])
    # killed after a checkpoint and recovery_ticks ticks: those ticks replay, and the
    # tick that found the shard dead (or, if the kill landed late, a few more)
    assert rec["replayed_ops"] >= r["settings"]["recovery_ticks"] + 1
    assert rec["replayed_stream_steps"] > 0 and rec["checkpoint_streams"] > 0


def test_sharded_bench_refuses_bad_counts() -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--shards", "2,zero"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2 and "--shards must be whole numbers" in run.stderr
