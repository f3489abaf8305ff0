"""The command line end to end: train -> export -> verify -> info -> run, on a tiny CSV."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from stream_gru.tools.cli.main import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


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
    # --quiet drops the progress bar but keeps one line of metrics per epoch
    epoch_lines = [line for line in r.stdout.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) >= 1 and "val_loss" in epoch_lines[0]
    assert "epoch/s" not in r.stderr

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


# -- user errors: one line, a non-zero exit, never a traceback -----------------------
def _checkpoint(path: Path, hidden: int) -> Path:
    """A checkpoint shaped like ``gru_model`` (I=3, 2 layers, O=2) but of ``hidden`` units."""
    from stream_gru.training.network import GRUConfig, GRUModel, save_checkpoint

    net = GRUModel(GRUConfig(input_size=3, hidden_size=hidden, num_layers=2, output_size=2))
    return save_checkpoint(path, net, feature_names=["ax", "ay", "az"], output_names=["a", "b"])


def test_an_onnx_file_given_as_checkpoint(gru_model, tmp_path):
    onnx = str(gru_model.onnx)
    with pytest.raises(SystemExit) as exc:
        main(["export", onnx, "--out", str(tmp_path / "x.onnx")])
    message = str(exc.value.code)
    assert message.startswith("stream-gru: ") and "\n" not in message
    assert "is not a stream-gru checkpoint: it looks like an ONNX model" in message
    assert not (tmp_path / "x.onnx").exists()
    with pytest.raises(SystemExit, match="is not a stream-gru checkpoint"):
        main(["verify", onnx, "--checkpoint", onnx, "--quiet"])


def test_verify_against_a_checkpoint_of_another_hidden_size(gru_model, tmp_path, capsys):
    other = _checkpoint(tmp_path / "h4.pt", hidden=4)
    report = tmp_path / "report.json"
    code = main(["verify", str(gru_model.onnx), "--checkpoint", str(other), "--quiet",
                 "--report", str(report)])  # fmt: skip
    assert code == 1
    out = capsys.readouterr().out
    assert "hidden_size: model 8, checkpoint 4" in out and "verify FAILED" in out
    checks = json.loads(report.read_text())["checks"]
    assert [c["passed"] for c in checks] == [False]


def test_missing_and_unreadable_files(tmp_path, rng):
    with pytest.raises(SystemExit, match=r"^stream-gru: .*No such file.*nope\.pt"):
        main(["export", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "x.onnx")])
    with pytest.raises(SystemExit, match=r"^stream-gru: .*is a directory"):
        main(["info", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"^stream-gru: .*No such file"):
        main(["run", str(tmp_path / "nope.onnx")])
    data = _write_csv(tmp_path / "motion.csv", rng)  # any OSError: here NotADirectoryError
    with pytest.raises(SystemExit, match=r"^stream-gru: .*Not a directory"):
        main(["train", str(data), "--target", "label", "--out", str(data / "sub"), "--quiet"])


def test_train_out_is_an_existing_file(tmp_path, rng):
    data = _write_csv(tmp_path / "motion.csv", rng)
    (tmp_path / "taken").write_text("")
    with pytest.raises(SystemExit, match=r"--out .*taken is a file, expected a directory"):
        main(["train", str(data), "--target", "label", "--out", str(tmp_path / "taken")])


def test_train_on_one_class_is_a_one_line_error(tmp_path):
    csv = tmp_path / "one.csv"
    csv.write_text("a,b,label\n" + "".join(f"{i},{-i},x\n" for i in range(20)))
    with pytest.raises(SystemExit) as exc:
        main(["train", str(csv), "--target", "label", "--out", str(tmp_path / "o"), "--quiet"])
    assert exc.value.code == (
        "stream-gru: classification needs at least 2 classes; the data has 1: ['x']"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "m.onnx", "--threads", "-1"], "--threads: expected a non-negative integer"),
        (["train", "d.csv", "--out", "o", "--dropout", "1.5"], "--dropout: expected a number in"),
        (["train", "d.csv", "--out", "o", "--lr", "-1"], "--lr: expected a positive number"),
        (["train", "d.csv", "--out", "o", "--lr", "nan"], "--lr: expected a positive number"),
        (["train", "d.csv", "--out", "o", "--epochs", "0"], "--epochs: expected a positive"),
        (["train", "d.csv", "--out", "o", "--seed", "-1"], "--seed: expected a non-negative"),
        (["verify", "m.onnx", "--checkpoint", "c", "--atol", "-1"], "--atol: expected a non-neg"),
        (["verify", "m.onnx", "--checkpoint", "c", "--steps", "0"], "--steps: expected a positive"),
        (["demo", "--epochs", "x"], "--epochs: expected a positive integer, got 'x'"),
    ],
)
def test_bad_values_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"error: argument {message}" in err and "Traceback" not in err


def test_run_stops_quietly_when_the_reader_goes_away(gru_model, tmp_path):
    """`stream-gru run m.onnx < big | head -1`: exit 141 (as on SIGPIPE), nothing on stderr."""
    big = tmp_path / "big.csv"
    big.write_text("".join(f"k{i % 3},{i % 7},0.5,-1\n" for i in range(30_000)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream_gru.cli", "run", str(gru_model.onnx), "--input", str(big)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout and proc.stderr
    first = proc.stdout.readline()
    proc.stdout.close()  # what `head -1` does after its line
    err = proc.stderr.read()
    proc.wait(timeout=120)
    assert first.startswith("k0,")
    assert err == ""
    assert proc.returncode == 141


# -- defaults ------------------------------------------------------------------------
def test_train_and_demo_defaults_come_from_the_library(capsys):
    from stream_gru.training import GRUConfig, TrainOptions

    options, config = TrainOptions(), GRUConfig(input_size=1)
    args = build_parser().parse_args(["train", "d.csv", "--out", "o"])
    assert (args.epochs, args.batch_size, args.window, args.lr, args.patience, args.seed) == (
        options.epochs, options.batch_size, options.window, options.lr, options.patience,
        options.seed,
    )  # fmt: skip
    assert (args.hidden, args.layers, args.cell, args.dropout) == (
        config.hidden_size, config.num_layers, config.cell, config.dropout,
    )  # fmt: skip
    args = build_parser().parse_args(["demo"])
    assert (args.epochs, args.hidden, args.seed) == (
        options.epochs, config.hidden_size, options.seed,
    )  # fmt: skip
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"truncated-BPTT window (default: {options.window})" in text
    assert "(default: None)" not in text and "(default: False)" not in text
    assert build_parser().parse_args(["run", "m.onnx"]).provider == "auto"


def test_parsing_any_command_does_not_import_torch():
    code = (
        "import sys; from stream_gru.tools.cli.main import build_parser; p = build_parser();"
        "p.parse_args(['run', 'm.onnx']); p.parse_args(['info', 'm.onnx']); p.format_help();"
        "p.parse_args(['train', 'd.csv', '--out', 'o']); p.parse_args(['demo']);"
        "print('torch' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


# -- export/export_and_verify.py -----------------------------------------------------
def _script() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(
        "export_and_verify", ROOT / "export" / "export_and_verify.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_export_and_verify_script_user_errors(tmp_path, capsys):
    run = _script().main
    with pytest.raises(SystemExit) as exc:
        run([str(tmp_path / "nope.pt"), "--out", str(tmp_path / "m.onnx")])
    message = str(exc.value.code)
    assert "No such file" in message and "nope.pt" in message and "\n" not in message
    with pytest.raises(SystemExit) as exc:
        run([str(tmp_path / "nope.pt"), "--out", str(tmp_path / "m.onnx"), "--steps", "0"])
    assert exc.value.code == 2
    assert "argument --steps: expected a positive integer" in capsys.readouterr().err


def test_export_and_verify_script_missing_checkpoint_subprocess(tmp_path):
    r = subprocess.run(
        [sys.executable, str(ROOT / "export" / "export_and_verify.py"), "nope.pt",
         "--out", "m.onnx"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 1
    assert r.stderr.startswith("export_and_verify.py: ") and len(r.stderr.splitlines()) == 1
