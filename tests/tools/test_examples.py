"""The examples run, on small settings, against models made here."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import wave
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def motions_model(models_dir: Path) -> Path:
    """An untrained GRU shaped for BasicMotions (6 features, 4 activities)."""
    torch = pytest.importorskip("torch")
    from stream_gru.data.basic_motions import load_basic_motions
    from stream_gru.export import export_onnx
    from stream_gru.training.network import GRUConfig, GRUModel, save_checkpoint

    ds = load_basic_motions("train")
    torch.manual_seed(0)
    net = GRUModel(GRUConfig(input_size=6, hidden_size=16, output_size=4))
    ckpt = save_checkpoint(
        models_dir / "motions.pt", net, feature_names=ds.feature_names, output_names=ds.output_names
    )
    return export_onnx(ckpt, models_dir / "motions.onnx").path


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def test_quickstart(motions_model):
    r = _run("quickstart.py", "--model", str(motions_model))
    assert r.returncode == 0, r.stderr
    assert "after 100 samples:" in r.stdout and "truth:" in r.stdout


def test_sensor_fleet(fleet_model):
    r = _run("sensor_fleet.py", "--model", str(fleet_model.onnx), "--sensors", "300",
             "--ticks", "120", "--garbage", "0.05", "--idle", "3", "--dropout", "0.02")  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "fleet of 300 sensors, 120 ticks" in out
    rejected = int(out.split("samples rejected")[1].split()[0].replace(",", ""))
    expired = int(out.split("streams expired")[1].split()[0].replace(",", ""))
    assert rejected > 0 and expired > 0


def test_realtime_pipe(motions_model):
    r = _run("realtime_pipe.py", "--model", str(motions_model), "--watches", "3", "--hz", "2000")
    assert r.returncode == 0, r.stderr
    assert "300 outputs from 3 watches" in r.stdout


@pytest.mark.parametrize("script", ["quickstart.py", "realtime_pipe.py"])
def test_a_model_that_does_not_fit_the_example_is_refused_with_what_it_needs(
    script, fleet_model, lstm_model
):
    """The BasicMotions examples refuse another classifier (8 features, other classes)
    and a regressor, saying what they need, instead of made-up answers or a traceback."""
    for model, why in [
        (fleet_model.onnx, "it takes 8 features (f0, f1"),
        (lstm_model.onnx, "it is a regression model, not a classifier"),
    ]:
        r = _run(script, "--model", str(model))
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert "does not fit this example" in r.stderr and why in r.stderr
        assert "accel_x, accel_y, accel_z, gyro_x, gyro_y, gyro_z" in r.stderr
    r = _run(script, "--model", str(ROOT / "README.md"))
    assert r.returncode == 1 and "needs a model made by stream-gru" in r.stderr


def test_a_missing_model_says_what_to_do(tmp_path):
    r = _run("sensor_fleet.py", "--model", str(tmp_path / "none.onnx"))
    assert r.returncode != 0 and "run `make demo` first" in r.stderr


def test_silero_vad(tmp_path):
    try:
        importlib.metadata.distribution("silero-vad")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the silero-vad wheel is not installed (make install adds it)")
    r = _run("silero_vad.py", "--streams", "4")
    assert r.returncode == 0, r.stderr
    segments = [line.split() for line in r.stdout.splitlines() if line.startswith("speech ")]
    # The clip speaks from 1.0 s to 4.55 s, with a pause after "Hello." (1.5 s to 1.8 s).
    bounds = [float(t) for s in segments for t in (s[1], s[4])]
    assert bounds == pytest.approx([1.06, 1.47, 1.86, 4.58], abs=0.1)
    assert "pool of 4 streams: 688 chunks" in r.stdout
    assert "same probabilities as the single stream: yes" in r.stdout

    stereo = tmp_path / "stereo.wav"
    with wave.open(str(stereo), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44_100)
        w.writeframes(bytes(4 * 2048))
    r = _run("silero_vad.py", "--wav", str(stereo))
    assert r.returncode != 0 and "16 kHz mono 16-bit" in r.stderr


def test_ray_fleet(motions_model):
    pytest.importorskip("ray")
    r = _run(
        "ray_fleet.py", "--model", str(motions_model), "--sensors", "600", "--ticks", "24",
        "--checkpoint-every", "5",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "tick 8: added shard 2" in r.stdout and "all of them to shard 2" in r.stdout
    assert "tick 16: killed shard 0's actor" in r.stdout
    assert "shard 0 restarted from its checkpoint" in r.stdout and "replayed" in r.stdout
    assert "bit for bit: yes" in r.stdout
