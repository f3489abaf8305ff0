"""`stream-gru compare`: two model versions on recorded data (exit 0 / 1 / 2), and GRU vs
LSTM on a small dataset."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import stream_gru as sg
from stream_gru.tools.cli.main import build_parser, main
from stream_gru.tools.compare.models import CompareError, compare_models

MEAN, STD = np.array([1.0, -2.0, 0.5]), np.array([2.0, 0.5, 3.0])  # the fixtures' scale


def _recordings(rng: np.random.Generator, n: int = 5, steps: int = 40) -> list[np.ndarray]:
    return [(MEAN + STD * rng.standard_normal((steps, 3))).astype(np.float32) for _ in range(n)]


def _label(r: int) -> str:
    return "walk" if r % 2 else "rest"


def _write_csv(path: Path, recs: list[np.ndarray], *, label: bool = True, drop: str = "") -> Path:
    """Columns in another order than the models' features (ax, ay, az), on purpose."""
    names = [c for c in ("run", "az", "ax", "ay") if c != drop] + (["label"] if label else [])
    rows = [",".join(names)]
    for r, x in enumerate(recs):
        for ax, ay, az in x.tolist():
            cells = {"run": f"r{r}", "ax": f"{ax:.9g}", "ay": f"{ay:.9g}", "az": f"{az:.9g}"}
            cells["label"] = _label(r)
            rows.append(",".join(cells[c] for c in names))
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture
def data_csv(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, list[np.ndarray]]:
    recs = _recordings(rng)
    return _write_csv(tmp_path / "recorded.csv", recs), recs


def _compare(*args: object) -> int:
    """``stream-gru compare models OLD NEW ...`` or ``compare cells DATA ...``, by the args."""
    mode = "models" if str(args[0]).endswith(".onnx") else "cells"
    return main(["compare", mode, *(str(a) for a in args), "--quiet"])


# -- two models ------------------------------------------------------------------------
def test_a_model_against_itself_is_the_same(gru_model, data_csv, tmp_path, capsys):
    path, _ = data_csv
    report = tmp_path / "same.json"
    code = _compare(gru_model.onnx, gru_model.onnx, "--data", path, "--sequence-column", "run",
                    "--json", report)  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "SAME within atol 1e-05 + rtol 1e-05" in out and "(same weights)" in out
    d = json.loads(report.read_text())
    assert d["within"] is True and d["max_abs"] == 0.0 and d["beyond_steps"] == 0
    assert (d["recordings"], d["steps"]) == (5, 5 * 40)
    assert d["first_beyond"] is None and d["argmax_agreement"] == 1.0
    assert d["old"]["metrics"] == d["new"]["metrics"]


def test_other_weights_diverge_with_exit_1(gru_model, gru_twin, data_csv, tmp_path, capsys):
    path, _ = data_csv
    report = tmp_path / "diff.json"
    code = _compare(gru_model.onnx, gru_twin.onnx, "--data", path, "--sequence-column", "run",
                    "--json", report)  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1, out
    assert "DIFFERENT beyond" in out and "first beyond      recording 'r0' step 0" in out
    d = json.loads(report.read_text())
    assert d["within"] is False and d["max_abs"] > 1e-3 and d["max_rel"] > 0
    assert d["beyond_steps"] > 0 and d["beyond_recordings"] >= 1
    worst = d["worst"]
    assert abs(worst["new"] - worst["old"]) == pytest.approx(d["max_abs"], rel=1e-6)
    assert worst["output"] in ("walk", "rest")
    # A tolerance wide enough for the whole difference makes them "the same".
    assert _compare(gru_model.onnx, gru_twin.onnx, "--data", path, "--atol", "2") == 0


def test_metrics_are_those_of_the_streamed_outputs(gru_model, data_csv):
    path, recs = data_csv
    result = compare_models(gru_model.onnx, gru_model.onnx, path, sequence_column="run")
    model = sg.load(gru_model.onnx, provider="cpu")
    classes = model.spec.output_names
    correct = last = 0
    for r, x in enumerate(recs):
        predicted = model.stream().feed(x).argmax(axis=1)
        truth = classes.index(_label(r))
        correct += int((predicted == truth).sum())
        last += int(predicted[-1] == truth)
    assert result.old.metrics == pytest.approx(
        {"accuracy": correct / (5 * 40), "accuracy_last": last / 5}
    )
    assert result.metric_column == "label"


def test_no_target_column_no_metrics(gru_model, rng, tmp_path, capsys):
    path = _write_csv(tmp_path / "nolabel.csv", _recordings(rng, n=2), label=False)
    assert _compare(gru_model.onnx, gru_model.onnx, "--data", path, "--sequence-column", "run") == 0
    out = capsys.readouterr().out
    assert "no column 'label'" in out and "accuracy" not in out
    # Without --sequence-column the file is one recording.
    result = compare_models(gru_model.onnx, gru_model.onnx, path)
    assert (result.recordings, result.steps, result.old.metrics) == (1, 80, None)


def test_npz_data(gru_model, gru_twin, rng, tmp_path):
    recs = _recordings(rng, n=3, steps=20)
    x = np.stack(recs)[:, :, [2, 0, 1]]  # az, ax, ay
    path = tmp_path / "recorded.npz"
    np.savez(path, x=x, y=np.asarray(["rest", "walk", "rest"]),
             feature_names=np.asarray(["az", "ax", "ay"]))  # fmt: skip
    same = compare_models(gru_model.onnx, gru_model.onnx, path)
    assert same.within and (same.recordings, same.steps) == (3, 60)
    assert same.old.metrics is not None and set(same.old.metrics) == {"accuracy", "accuracy_last"}
    other = compare_models(gru_model.onnx, gru_twin.onnx, path)
    assert not other.within and other.exit_code == 1


def test_models_with_other_features_cannot_be_compared(gru_model, fleet_model, data_csv, capsys):
    path, _ = data_csv
    assert _compare(gru_model.onnx, fleet_model.onnx, "--data", path) == 2
    err = capsys.readouterr().err
    assert err.startswith("stream-gru compare: cannot compare: the models take other features")
    assert "only OLD (gru.onnx) takes ax, ay, az; only NEW (fleet.onnx) takes f0, f1" in err
    assert "other outputs: OLD (gru.onnx) 2 (walk, rest), NEW (fleet.onnx) 4 (a, b, c, d)" in err
    assert len(err.splitlines()) == 1


def test_models_with_other_outputs_or_task_cannot_be_compared(gru_model, lstm_model, data_csv):
    path, _ = data_csv
    with pytest.raises(CompareError) as exc:
        compare_models(gru_model.onnx, lstm_model.onnx, path)
    message = str(exc.value)
    assert "other outputs" in message and "(walk, rest)" in message and "(t1, t2)" in message
    assert "is a classification model" in message and "a regression model" in message


def test_a_missing_feature_column_is_exit_2(gru_model, rng, tmp_path, capsys):
    path = _write_csv(tmp_path / "no_az.csv", _recordings(rng, n=2), drop="az")
    assert _compare(gru_model.onnx, gru_model.onnx, "--data", path) == 2
    err = capsys.readouterr().err
    assert (
        "has no column(s) az that the models need as features; its columns: run, ax, ay, label"
        in err
    )
    assert _compare(gru_model.onnx, gru_model.onnx, "--data", tmp_path / "nope.csv") == 2
    assert "No such file" in capsys.readouterr().err


def test_regression_model_mae(lstm_model, rng, tmp_path):
    recs = _recordings(rng, n=2, steps=30)
    lines = ["ax,ay,az,t,seq"]
    for r, x in enumerate(recs):
        lines += [f"{a},{b},{c},{a + b},{r}" for a, b, c in x.tolist()]
    path = tmp_path / "reg.csv"
    path.write_text("\n".join(lines) + "\n")
    # The fixture's outputs are named t1, t2: one target column 't' does not fit them.
    result = compare_models(lstm_model.onnx, lstm_model.onnx, path, sequence_column="seq")
    assert result.within and result.old.metrics is None and "target" in result.metric_note


# -- the command line ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["models", "a.onnx", "b", "c", "--data", "d"], "unrecognized arguments: c"),
        (["models", "a.onnx", "b.onnx"], "the following arguments are required: --data"),
        (["models", "a.onnx", "b.onnx", "--data", "d.csv", "--epochs", "5"], "--epochs 5"),
        (["models", "a.onnx", "b.onnx", "--data", "d.csv", "--out", "o"], "--out o"),
        (["cells", "d.csv", "--target", "y", "--atol", "1"], "unrecognized arguments: --atol"),
        (["models", "a.onnx", "b.onnx", "--data", "d.csv", "--rtol", "-1"], "--rtol: expected"),
        ([], "the following arguments are required: MODE"),
    ],
)
def test_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["compare", *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_help_describes_both_modes(capsys):
    parser = build_parser()
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["compare", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "stream-gru compare cells DATA" in text and "stream-gru compare models OLD NEW" in text
    assert "exit status: 0" in text
    for mode, option in (("cells", "--fleet-streams"), ("models", "--atol")):
        with pytest.raises(SystemExit):
            parser.parse_args(["compare", mode, "--help"])
        text = capsys.readouterr().out
        assert option in text and "exit status: 0" in text
        assert "--cell {" not in text and "(default: None)" not in text


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (["compare", "d.csv", "--target", "y"], ["compare", "cells", "d.csv", "--target", "y"]),
        (["compare", "a.onnx", "b.onnx", "--data", "d.csv"],
         ["compare", "models", "a.onnx", "b.onnx", "--data", "d.csv"]),
        (["compare", "a.onnx", "b.onnx", "--data=d.csv"],
         ["compare", "models", "a.onnx", "b.onnx", "--data=d.csv"]),
    ],
)  # fmt: skip
def test_the_old_spellings_still_work_and_say_so(old, new):
    from stream_gru.tools.cli.compare import legacy_argv

    rewritten, note = legacy_argv(old)
    assert rewritten == new and note is not None and "old spelling still works" in note
    assert legacy_argv(new) == (new, None)
    assert legacy_argv(["compare", "--help"]) == (["compare", "--help"], None)


def test_the_old_two_model_spelling_runs(gru_model, data_csv, capsys):
    path, _ = data_csv
    argv = ["compare", str(gru_model.onnx), str(gru_model.onnx), "--data", str(path), "--quiet"]
    assert main([*argv, "--sequence-column", "run"]) == 0
    captured = capsys.readouterr()
    assert "is now spelled `compare models ...`" in captured.err
    assert "SAME within" in captured.out


def test_tolerances_default_to_verify_s():
    from stream_gru.tools.compare.models import DEFAULT_ATOL, DEFAULT_RTOL

    args = ["compare", "models", "a.onnx", "b.onnx", "--data", "d.csv"]
    compare = build_parser().parse_args(args)
    verify = build_parser().parse_args(["verify", "m.onnx", "--checkpoint", "c.pt"])
    assert (compare.atol, compare.rtol) == (verify.atol, verify.rtol)
    assert (verify.atol, verify.rtol) == (DEFAULT_ATOL, DEFAULT_RTOL)


def test_parsing_compare_imports_neither_torch_nor_onnxruntime():
    code = (
        "import sys; from stream_gru.tools.cli.main import build_parser; p = build_parser();"
        "p.parse_args(['compare', 'models', 'a.onnx', 'b.onnx', '--data', 'd.csv']);"
        "p.parse_args(['compare', 'cells', 'd.csv', '--target', 'y']);"
        "print('torch' in sys.modules, 'onnxruntime' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False"]


# -- GRU vs LSTM -----------------------------------------------------------------------
def _motion_csv(path: Path, rng: np.random.Generator) -> Path:
    rows = ["run,ax,ay,label"]
    for r in range(10):
        label = "shake" if r % 2 else "still"
        for i in range(24):
            amp = 2.0 if label == "shake" else 0.1
            ax = amp * np.sin(i * 1.3) + 0.1 * rng.standard_normal()
            rows.append(f"{r},{ax:.5f},{0.5 + 0.1 * rng.standard_normal():.5f},{label}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_gru_vs_lstm_table(tmp_path, rng, capsys):
    pytest.importorskip("torch")
    data = _motion_csv(tmp_path / "motion.csv", rng)
    out_dir, extra = tmp_path / "cmp", tmp_path / "extra.json"
    code = _compare(data, "--target", "label", "--sequence-column", "run", "--hidden", "4",
                    "--epochs", "2", "--verify-steps", "50", "--fleet-streams", "16",
                    "--out", out_dir, "--json", extra)  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    table = out[out.index("GRU vs LSTM on") :]
    assert "val acc" in table and "steps/s" in table and "verify: GRU PASSED" in table
    lines = table.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("cell ")))
    rows = [line.split() for line in lines[header + 2 : header + 4]]
    assert [r[0] for r in rows] == ["GRU", "LSTM"] and lines[header + 4] == ""
    d = json.loads((out_dir / "compare.json").read_text())
    assert json.loads(extra.read_text()) == d
    gru, lstm = d["rows"]
    assert (gru["cell"], lstm["cell"], d["task"]) == ("gru", "lstm", "classification")
    assert d["passed"] is True
    # I=2, H=4, O=2: gates x (input + hidden weights + 2 biases), plus the head
    per_gate = 4 * 2 + 4 * 4 + 2 * 4
    assert gru["parameters"] == 3 * per_gate + 4 * 2 + 2
    assert lstm["parameters"] == 4 * per_gate + 4 * 2 + 2
    assert (rows[0][1], rows[1][1]) == (str(gru["parameters"]), str(lstm["parameters"]))
    for row in (gru, lstm):
        assert row["train_seconds"] > 0 and 1 <= row["best_epoch"] <= row["epochs_run"] <= 2
        assert 0 <= row["val_metrics"]["accuracy"] <= 1 and row["test_metrics"] is None
        assert row["onnx_bytes"] == Path(row["onnx"]).stat().st_size
        assert Path(row["onnx"]).parent == out_dir / row["cell"]
        assert (out_dir / row["cell"] / "verify.json").exists()
        assert 0 < row["step_us"] < 1e5 and row["step_p99_us"] > 0
        assert row["fleet_steps_per_s"] > 0 and row["pool_graph"] in ("step", "sequence")
    assert d["settings"]["fleet_streams"] == 16 and d["settings"]["hidden"] == 4


def test_gru_vs_lstm_on_basicmotions_scores_the_test_split(tmp_path, capsys):
    pytest.importorskip("torch")
    code = _compare("basicmotions", "--hidden", "4", "--epochs", "1", "--verify-steps", "20",
                    "--fleet-streams", "8", "--out", tmp_path)  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "test acc" in out and "40 test recordings" in out
    rows = json.loads((tmp_path / "compare.json").read_text())["rows"]
    assert all(0 <= r["test_metrics"]["accuracy_last"] <= 1 for r in rows)


def test_gru_vs_lstm_data_errors_are_exit_2(tmp_path, rng, capsys):
    data = _motion_csv(tmp_path / "motion.csv", rng)
    assert _compare(data, "--out", tmp_path / "o") == 2
    assert "a CSV needs --target" in capsys.readouterr().err
    assert _compare("basicmotions", "--target", "y", "--out", tmp_path / "o") == 2
    assert "--target do(es) not apply to basicmotions" in capsys.readouterr().err
    assert _compare(tmp_path / "nope.csv", "--target", "y", "--out", tmp_path / "o") == 2
    assert "No such file" in capsys.readouterr().err


def test_two_models_need_only_the_runtime(gru_model, gru_twin, data_csv):
    """torch, onnx and tqdm blocked: comparing two model files still works."""
    path, _ = data_csv
    code = (
        "import sys\n"
        "for name in ('torch', 'onnx', 'tqdm'): sys.modules[name] = None\n"
        "from stream_gru.cli import main\n"
        f"sys.exit(main(['compare', 'models', {str(gru_model.onnx)!r}, {str(gru_twin.onnx)!r},"
        f" '--data', {str(path)!r}, '--sequence-column', 'run']))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "DIFFERENT beyond" in r.stdout and "accuracy" in r.stdout


def test_gru_vs_lstm_without_torch_says_how_to_install():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from stream_gru.cli import main\n"
        "sys.exit(main(['compare', 'cells', 'basicmotions']))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.startswith("stream-gru compare: ") and "train extra" in r.stderr
    assert "make install, or pip install torch==" in r.stderr  # run from this checkout
