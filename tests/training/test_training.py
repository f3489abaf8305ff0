"""Training: learning on tiny synthetic data, reproducibility, early stopping, checkpoints."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from stream_gru.data import Recording, SensorDataset  # noqa: E402
from stream_gru.training import (  # noqa: E402
    GRUConfig,
    GRUModel,
    TrainOptions,
    evaluate,
    load_checkpoint,
    train,
)

FAST = TrainOptions(
    epochs=15, batch_size=8, window=10, lr=1e-2, patience=15, progress=False, epoch_lines=False
)


def info(net: GRUModel, name: str) -> Any:
    """A plain attribute that load_checkpoint sets (nn.Module types them as Tensor | Module)."""
    return net.__dict__[name]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def sign_data(n: int = 24, steps: int = 30, seed: int = 0) -> SensorDataset:
    """Class 1 when the first feature's mean is positive; the second feature is noise."""
    rng = np.random.default_rng(seed)
    recs = []
    for i in range(n):
        label = i % 2
        length = steps - (i % 4)  # recordings of different lengths
        x = rng.normal(size=(length, 2)).astype(np.float32)
        x[:, 0] += 1.0 if label else -1.0
        y = np.full(length, label, dtype=np.int64)
        recs.append(Recording(x, y, np.ones(length, dtype=bool), f"r{i}"))
    return SensorDataset(tuple(recs), ("a", "noise"), ("neg", "pos"), "classification", "y")


def sine_data(n: int = 6, steps: int = 60, horizon: int = 3) -> SensorDataset:
    """Forecast a sine ``horizon`` steps ahead from its current value (in user units ~50)."""
    recs = []
    for i in range(n):
        length = steps - 7 * i  # different lengths: padding must be masked too
        s = 50.0 + 10.0 * np.sin(0.3 * np.arange(length) + i)
        x = s[:, None].astype(np.float32)
        y = np.zeros((length, 1), dtype=np.float32)  # as the loaders do it:
        y[:-horizon, 0] = s[horizon:]  # y[t] = s[t + horizon] ...
        mask = np.arange(length) < length - horizon  # ... unknown for the last steps
        recs.append(Recording(x, y, mask, f"s{i}"))
    return SensorDataset(tuple(recs), ("s",), ("s",), "regression", "s", horizon=horizon)


def test_classification_learns(tmp_path: Path) -> None:
    data = sign_data()
    cfg = GRUConfig(input_size=2, hidden_size=8, output_size=2, task="classification")
    result = train(data, cfg, FAST, out_dir=tmp_path)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.6 * losses[0]
    assert result.metrics["accuracy_last"] >= 0.8
    assert result.metrics["accuracy"] > 0.7
    assert set(result.history[0]) >= {"epoch", "train_loss", "val_loss", "val_accuracy"}
    assert not result.model.training
    assert result.plot is not None and result.plot.stat().st_size > 1000
    assert result.plot == tmp_path / "loss_curve.png"
    # held-out data drawn the same way
    test = evaluate(result.model, sign_data(n=10, seed=7))
    assert test["accuracy_last"] >= 0.8


def test_regression_forecast_learns_in_user_units(tmp_path: Path) -> None:
    data = sine_data()
    cfg = GRUConfig(input_size=1, hidden_size=8, output_size=1, task="regression")
    opts = replace(FAST, epochs=25, patience=25)
    result = train(data, cfg, opts, out_dir=tmp_path)
    first, best = result.history[0], result.history[result.best_epoch - 1]
    assert best["val_loss"] < 0.3 * first["val_loss"]
    assert result.metrics["mae"] < 3.0  # predicting the mean gives ~6.4
    # normalization comes from the data: targets around 50
    assert result.model.normalization.target_mean[0] == pytest.approx(50.0, abs=3.0)
    y, _ = result.model(torch.from_numpy(data.recordings[0].x[None]))
    assert float(y.detach().mean()) == pytest.approx(50.0, abs=5.0)


def test_masked_and_padded_steps_do_not_count(tmp_path: Path) -> None:
    data = sine_data()
    garbage = tuple(
        replace(r, y=np.where(r.mask[:, None], r.y, np.float32(1e6))) for r in data.recordings
    )
    data = replace(data, recordings=garbage)
    cfg = GRUConfig(input_size=1, hidden_size=8, output_size=1, task="regression")
    result = train(data, cfg, replace(FAST, epochs=2), out_dir=tmp_path)
    # normalized targets have unit variance: a loss near 1, not the garbage's 1e10,
    # nor the ~50 of zero padding (-7 std from the mean) counted as targets
    assert all(h["train_loss"] < 3.0 and h["val_loss"] < 3.0 for h in result.history)
    assert result.metrics["mae"] < 20.0


def test_same_seed_same_weights_other_seed_differs(tmp_path: Path) -> None:
    data = sign_data(n=10, steps=16)
    cfg = GRUConfig(input_size=2, hidden_size=8, output_size=2, task="classification")
    opts = replace(FAST, epochs=3)
    a = train(data, cfg, opts, out_dir=tmp_path / "a")
    torch.manual_seed(99)  # the global RNG must not matter
    b = train(data, cfg, opts, out_dir=tmp_path / "b")
    c = train(data, cfg, replace(opts, seed=1), out_dir=tmp_path / "c")
    wa = torch.load(a.checkpoint, weights_only=True)["state_dict"]
    wb = torch.load(b.checkpoint, weights_only=True)["state_dict"]
    wc = torch.load(c.checkpoint, weights_only=True)["state_dict"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    assert a.history == b.history


def test_training_leaves_the_global_rng_alone(tmp_path: Path) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(sign_data(n=6, steps=8), None, replace(FAST, epochs=1), out_dir=tmp_path)
    assert torch.equal(torch.rand(3), expected)


def test_early_stopping_restores_best_epoch(tmp_path: Path) -> None:
    data = sign_data(n=10, steps=12)
    cfg = GRUConfig(input_size=2, hidden_size=8, output_size=2, task="classification")
    # a learning rate far too high makes the validation loss stop improving quickly
    opts = replace(FAST, epochs=40, patience=2, lr=0.5)
    result = train(data, cfg, opts, out_dir=tmp_path)
    assert len(result.history) < 40
    assert len(result.history) == result.best_epoch + 2
    best_val = min(h["val_loss"] for h in result.history)
    assert result.history[result.best_epoch - 1]["val_loss"] == best_val
    assert result.metrics["loss"] == pytest.approx(best_val, rel=1e-5)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    data = sign_data(n=8, steps=12)
    opts = replace(FAST, epochs=2)
    result = train(data, None, opts, out_dir=tmp_path)
    assert result.checkpoint == tmp_path / "checkpoint.pt"
    net = load_checkpoint(result.checkpoint)
    assert isinstance(net, GRUModel)
    assert net.config == result.model.config
    assert net.config.hidden_size == 64  # the default config
    assert info(net, "feature_names") == ["a", "noise"]
    assert info(net, "output_names") == ["neg", "pos"]
    assert info(net, "metrics")["best_epoch"] == result.best_epoch
    assert info(net, "metrics")["val_accuracy"] == pytest.approx(result.metrics["accuracy"])
    training = info(net, "training_info")
    assert training["options"]["epochs"] == 2 and training["seed"] == 0
    assert training["train_recordings"] + training["val_recordings"] == 8
    assert len(training["history"]) == len(result.history)
    x = torch.from_numpy(data.recordings[0].x[None])
    torch.testing.assert_close(net(x)[0], result.model(x)[0], rtol=0, atol=0)
    assert net.normalization == result.model.normalization


def test_two_layers_with_dropout_and_explicit_validation(tmp_path: Path) -> None:
    data = sign_data(n=8, steps=12)
    val = sign_data(n=4, steps=12, seed=5)
    cfg = GRUConfig(
        input_size=2, hidden_size=8, num_layers=2, output_size=2, task="classification", dropout=0.3
    )
    result = train(data, cfg, replace(FAST, epochs=3), out_dir=tmp_path, validation=val)
    assert result.model.rnn.dropout == pytest.approx(0.3)
    assert info(load_checkpoint(result.checkpoint), "training_info")["val_recordings"] == 4
    # eval mode: the output is deterministic despite dropout
    x = torch.from_numpy(val.recordings[0].x[None])
    torch.testing.assert_close(result.model(x)[0], result.model(x)[0], rtol=0, atol=0)
    assert evaluate(result.model, val) == result.metrics


def test_mismatched_config_and_bad_options(tmp_path: Path) -> None:
    data = sign_data(n=6, steps=8)
    with pytest.raises(ValueError, match="input_size"):
        train(data, GRUConfig(input_size=3, output_size=2), FAST, out_dir=tmp_path)
    with pytest.raises(ValueError, match="task"):
        train(
            data, GRUConfig(input_size=2, output_size=2, task="regression"), FAST, out_dir=tmp_path
        )
    for field, value in [("epochs", 0), ("window", -1), ("lr", 0.0), ("patience", 1.5)]:
        with pytest.raises(ValueError, match=field):
            TrainOptions(**{field: value})  # type: ignore[arg-type]


def test_epoch_lines_without_the_progress_bar(tmp_path: Path, capsys: Any) -> None:
    data = sign_data(n=6, steps=8)
    result = train(data, None, replace(FAST, epochs=3, epoch_lines=True), out_dir=tmp_path / "a")
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == len(result.history) == 3
    assert all(line.startswith(f"epoch {i + 1:3d}") for i, line in enumerate(lines))
    assert "val_loss" in lines[0] and err == ""
    train(data, None, replace(FAST, epochs=3), out_dir=tmp_path / "b")  # FAST: silent
    assert capsys.readouterr() == ("", "")
    with pytest.raises(ValueError, match="epoch_lines"):
        TrainOptions(epoch_lines=1)  # type: ignore[arg-type]


def test_classification_needs_two_classes(tmp_path: Path) -> None:
    one = replace(
        sign_data(n=6, steps=8), recordings=tuple(
            replace(r, y=np.zeros_like(r.y)) for r in sign_data(n=6, steps=8).recordings
        ), output_names=("x",)
    )  # fmt: skip
    message = "classification needs at least 2 classes; the data has 1: ['x']"
    with pytest.raises(ValueError, match=re.escape(message)):
        train(one, None, FAST, out_dir=tmp_path)
    # two declared classes of which only one occurs teach nothing either
    with pytest.raises(ValueError, match=re.escape("the data has 1: ['neg']")):
        train(replace(one, output_names=("neg", "pos")), None, FAST, out_dir=tmp_path)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_loss_curve_is_replaced_atomically(tmp_path: Path) -> None:
    """The PNG is written beside and renamed over: a hard link to the old file keeps the
    old bytes (writing in place would change them, and a reader could see half a PNG)."""
    out = tmp_path / "run"
    out.mkdir()
    old = tmp_path / "old.png"
    old.write_bytes(b"old")
    os.link(old, out / "loss_curve.png")
    result = train(sign_data(n=6, steps=8), None, replace(FAST, epochs=1), out_dir=out)
    assert result.plot == out / "loss_curve.png"
    assert result.plot.read_bytes().startswith(b"\x89PNG")
    assert old.read_bytes() == b"old"


def test_demo_plot_is_replaced_atomically(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from stream_gru.tools.demo import _plot

    old = tmp_path / "old.png"
    old.write_bytes(b"old")
    path = tmp_path / "streaming.png"
    os.link(old, path)
    p = np.full((2, 5, 2), 0.5)
    assert _plot(p, np.array([0, 1]), np.linspace(0, 1, 5), ("a", "b"), path) == path
    assert path.read_bytes().startswith(b"\x89PNG") and old.read_bytes() == b"old"


def _bad_checkpoint(path: Path, **changes: Any) -> Path:
    net = GRUModel(GRUConfig(input_size=2, hidden_size=8, output_size=2))
    payload = {
        "config": asdict(net.config),
        "state_dict": net.state_dict(),
        "normalization": net.normalization.to_dict(),
        **changes,
    }
    torch.save(payload, path)
    return path


def test_load_checkpoint_names_the_file_and_the_problem(tmp_path: Path) -> None:
    other = GRUModel(GRUConfig(input_size=2, hidden_size=4, output_size=2)).state_dict()
    cases = [
        ({"config": {"input_size": 2, "hidden_units": 8}}, "config is invalid.*hidden_units"),
        ({"config": {"input_size": 0}}, "config is invalid.*input_size"),
        ({"state_dict": other}, "weights do not fit.*size mismatch"),
        ({"normalization": {"feature_mean": [1.0]}}, "normalization is invalid"),
    ]
    for i, (changes, pattern) in enumerate(cases):
        path = _bad_checkpoint(tmp_path / f"bad{i}.pt", **changes)
        with pytest.raises(ValueError, match=pattern) as exc:
            load_checkpoint(path)
        assert str(exc.value).startswith(str(path)) and "\n" not in str(exc.value)
    (tmp_path / "m.onnx").write_bytes(b"\x08\x07\x12\x04onnx")
    with pytest.raises(ValueError, match="is not a stream-gru checkpoint") as exc:
        load_checkpoint(tmp_path / "m.onnx")
    assert "\n" not in str(exc.value)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
