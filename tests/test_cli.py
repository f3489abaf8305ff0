"""The command line end to end: train -> export -> verify -> info -> run, on a tiny CSV."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from stream_gru.cli import build_parser, main


def _write_csv(path: Path, rng: np.random.Generator) -> Path:
    """Recordings of two activities: 'shake' has a large oscillation, 'still' is noise."""
    rows = ["timestamp,run,ax,ay,label"]  # timestamps are text: ignored unless named
    for r in range(12):
        label = "shake" if r % 2 else "still"
        n = 30 + 5 * (r % 3)  # recordings of different lengths
        for i in range(n):
            amp = 2.0 if label == "shake" else 0.1
            ax = amp * np.sin(i * 1.3) + 0.1 * rng.standard_normal()
            ay = 0.5 + 0.1 * rng.standard_normal()
            rows.append(f"2024-01-01T00:00:{i:02d},{r},{ax:.5f},{ay:.5f},{label}")
    path.write_text("\n".join(rows) + "\n")
    return path


def _cli(*args: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream_gru.cli", *args],
        capture_output=True,
        text=True,
        input=input_text,
        timeout=300,
    )


def test_train_export_verify_info_run(tmp_path, rng):
    data = _write_csv(tmp_path / "motion.csv", rng)
    run_dir = tmp_path / "run"
    r = _cli(
        "train", str(data), "--target", "label", "--sequence-column", "run",
        "--hidden", "8", "--epochs", "15", "--seed", "3", "--out", str(run_dir), "--quiet",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (run_dir / "checkpoint.pt").exists() and (run_dir / "loss_curve.png").exists()
    assert "best epoch" in r.stdout

    model = tmp_path / "model.onnx"
    r = _cli("export", str(run_dir / "checkpoint.pt"), "--out", str(model))
    assert r.returncode == 0, r.stderr
    assert "structural checks passed" in r.stdout

    report = tmp_path / "verify.json"
    r = _cli(
        "verify", str(model), "--checkpoint", str(run_dir / "checkpoint.pt"),
        "--report", str(report), "--quiet",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "verify PASSED" in r.stdout
    assert json.loads(report.read_text())["passed"] is True

    r = _cli("info", str(model))
    assert r.returncode == 0, r.stderr
    assert "GRU classification" in r.stdout and "(ax, ay)" in r.stdout and "still" in r.stdout

    lines = "dev1,0.1,0.5\ndev2,1.9,0.4\nbad,1\ndev1,-0.2,0.6\n"
    r = _cli("run", str(model), input_text=lines)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert [line.split(",")[0] for line in out] == ["dev1", "dev2", "dev1"]
    assert all(abs(sum(map(float, line.split(",")[1:])) - 1) < 1e-5 for line in out)
    assert r.stderr.startswith("line 3: expected a key and 2 features")


def test_verify_exit_code_is_1_on_mismatch(gru_model, gru_twin):
    r = _cli("verify", str(gru_model.onnx), "--checkpoint", str(gru_twin.checkpoint),
             "--steps", "100", "--quiet")  # fmt: skip
    assert r.returncode == 1
    assert "verify FAILED" in r.stdout


def test_user_errors_are_one_line_messages(tmp_path, capsys):
    with pytest.raises(SystemExit, match=r"stream-gru: .*is empty"):
        (tmp_path / "empty.onnx").write_bytes(b"")
        main(["info", str(tmp_path / "empty.onnx")])
    csv = tmp_path / "a.csv"
    csv.write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(SystemExit, match=r"zzz"):
        main(["train", str(csv), "--target", "zzz", "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="needs --target"):
        main(["train", str(csv), "--out", str(tmp_path / "o")])


@pytest.mark.parametrize("command", ["train", "export", "verify", "info", "run", "demo"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert f"usage: stream-gru {command}" in text and len(text) > 300
