"""The benchmark runs end to end and reports every contender. Never asserts a speed:
timings on shared machines are reported, not tested (benchmarks/README.md)."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

from stream_gru.cli import main


def _positive(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def test_quick_bench_reports_every_contender(gru_model, tmp_path: Path, capsys) -> None:
    out = tmp_path / "results"
    args = ["bench", str(gru_model.onnx), "--checkpoint", str(gru_model.checkpoint)]
    assert main([*args, "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("Stream.step", "session.run by hand", "PyTorch eager", "StreamPool", "by hand"):
        assert name in printed
    r = json.loads((out / "bench.json").read_text())
    assert r["quick"] is True and r["machine"]["cpu"] and r["date"]
    assert r["versions"]["onnxruntime"] and r["settings"]["pool_sizes"]
    (m,) = r["models"]
    assert set(m["latency"]) == {"step", "session_run", "torch"}
    for v in m["latency"].values():
        assert _positive(v["p50_us"]) and _positive(v["p99_us"])
    assert _positive(m["chunks"]["feed_us_per_step"]) and _positive(m["chunks"]["step_us_per_step"])
    sizes = r["settings"]["pool_sizes"]
    full = [f for f in m["fleets"] if f["active"] == f["streams"]]
    partial = [f for f in m["fleets"] if f["active"] < f["streams"]]
    assert [f["streams"] for f in full] == sizes and len(partial) == 1
    for f in m["fleets"]:
        assert set(f["contenders"]) == {"pool", "by_hand", "torch"}
        for c in f["contenders"].values():
            for key in ("steps_per_s", "tick_ms_p50", "tick_ms_p99", "ceiling_fraction"):
                assert _positive(c[key]), (f["streams"], key, c)
    assert m["contenders_excess"] <= 1  # they computed the same thing, by the agreement rule
    ceiling = m["ceiling"]
    assert _positive(ceiling["gemm_flops_per_s"]) and _positive(ceiling["steps_per_s"])
    h, i, o = gru_model.hidden_size, gru_model.input_size, gru_model.output_size
    assert ceiling["flops_per_step"] == 2 * 3 * h * (i + h) + 2 * 3 * h * (2 * h) + 2 * h * o
    for run in ("stream", "pool"):
        assert r["memory"][run]["count"] > 0 and _finite(r["memory"][run]["growth_mb"])
    for key in ("threads=1", "threads=2"):
        assert (
            _finite(r["idle_cpu"][key]["core_percent"]) and r["idle_cpu"][key]["core_percent"] >= 0
        )
    assert r["goals"] and all(_finite(g["measured"]) for g in r["goals"])
    assert (out / "bench.txt").read_text().strip() in printed
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_without_checkpoint_skips_pytorch(gru_model, tmp_path: Path) -> None:
    from stream_gru.tools.bench.run import run_benchmark

    outcome = run_benchmark(gru_model.onnx, quick=True, out_dir=tmp_path, log=lambda _: None)
    (m,) = outcome.results["models"]
    assert set(m["latency"]) == {"step", "session_run"}
    assert all(set(f["contenders"]) == {"pool", "by_hand"} for f in m["fleets"])
    assert "skipped" in outcome.table


def test_runtime_does_not_import_the_benchmark() -> None:
    code = "import stream_gru, sys; print(sorted(m for m in sys.modules if 'bench' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_quick_soak_passes_its_checks(tmp_path: Path) -> None:
    """The soak (benchmarks/soak.py) at its quick size: every check passes, and each
    figure the README quotes is in its JSON."""
    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "soak.json"
    run = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "soak.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    r = json.loads(out.read_text())
    assert r["one_stream"]["ok"] and r["pool"]["ok"] and not r["pool"]["problems"]
    assert r["pool"]["rejected"] > 0 and r["pool"]["expired"] > 0 and r["pool"]["restored"] > 0
    assert r["pool"]["stream_steps_checked"] > 0
    assert r["one_stream"]["max_abs_diff"] > 0 and r["one_stream"]["excess"] <= 1


def test_the_soak_notices_a_stream_that_lost_its_state(tmp_path: Path, monkeypatch) -> None:
    """A pool whose restore forgets the snapshot's state must fail the soak's checks."""
    import importlib.util as iu

    import stream_gru as sg

    root = Path(__file__).resolve().parents[2]
    spec = iu.spec_from_file_location("soak", root / "benchmarks" / "soak.py")
    soak = iu.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "soak", soak)  # dataclasses look their module up
    spec.loader.exec_module(soak)
    model, net64 = soak.make_model(tmp_path, 0)
    assert soak.soak_pool(model, net64, soak.QUICK)["ok"]
    restore = sg.StreamPool.restore

    def forgetful(self, key, blob):
        restore(self, key, self.model.stream().snapshot())

    monkeypatch.setattr(sg.StreamPool, "restore", forgetful)
    assert not soak.soak_pool(model, net64, soak.QUICK)["ok"]
