"""A new user's own data at the scales sensors report: raw accelerometer counts near
1,000, machine readings near 1e6 and 1e-3 with a target near 5e4, and a pump fleet's
status classifier. Each trains, exports and verifies at three seeds, and a pool of 16
streams agrees with 16 ``Stream``s over 1,500 chained steps by the agreement rule.

Before the agreement rule scaled with the values, every one of these exports failed
(a float32 step of 2.4e-4 near 3,000 against an absolute limit of 1e-5)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import stream_gru as sg  # noqa: E402
from stream_gru.agreement import DEFAULT_RULE, assert_agree  # noqa: E402
from stream_gru.data import load_dataset  # noqa: E402
from stream_gru.export import export_onnx, verify  # noqa: E402
from stream_gru.training import GRUConfig, TrainOptions, train  # noqa: E402


def _write(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def accelerometer_counts(path: Path, runs: int = 8, steps: int = 120) -> Path:
    """Raw 10-bit accelerometer counts near 1,000; the target is az one step ahead."""
    rng = np.random.default_rng(1)
    rows: list[list[object]] = []
    for r in range(runs):
        fast = r % 2
        for t in range(steps):
            base = np.array([1000, 980, 1020]) + (40 if fast else 6) * np.sin(
                t / (3 if fast else 9) + np.arange(3)
            )
            rows.append([f"run{r}", *np.round(base + rng.normal(0, 8, 3)).astype(int)])
    return _write(path, ["run", "ax", "ay", "az"], rows)


def machine_readings(path: Path, runs: int = 8, steps: int = 120) -> Path:
    """Pressure near 1e6 Pa, flow near 1e-3 m3/s; the target, power, near 5e4 W."""
    rng = np.random.default_rng(2)
    rows: list[list[object]] = []
    for r in range(runs):
        p0 = 1e6 + rng.normal(0, 2e4)
        for t in range(steps):
            p = p0 + 5e3 * np.sin(t / 11 + r) + rng.normal(0, 500)
            q = 1e-3 * (1 + 0.2 * np.sin(t / 5 + r)) + rng.normal(0, 1e-5)
            power = 5e4 + 0.01 * (p - 1e6) + 2e6 * (q - 1e-3) + rng.normal(0, 50)
            rows.append([f"r{r}", f"{p:.2f}", f"{q:.6g}", f"{power:.2f}"])
    return _write(path, ["run", "pressure_pa", "flow_m3s", "power_w"], rows)


def pump_fleet(path: Path, machines: int = 12, steps: int = 100) -> Path:
    """A timestamp, a machine id, vibration and temperature, a text status, RPM near
    1,200-3,400: the status is the target."""
    rng = np.random.default_rng(3)
    rows: list[list[object]] = []
    for m in range(machines):
        fault = m % 3
        rpm0 = rng.uniform(1200, 3400)
        for t in range(steps):
            on = t > 30
            status = ("ok", "warn", "fail")[fault] if on else "ok"
            vib = rng.normal(0, 1 + (fault if on else 0), 3) + np.sin(t * (1 + fault) / 3)
            rows.append([
                f"2026-01-01T00:{t // 60:02d}:{t % 60:02d}", f"PUMP-{m:02d}",
                *np.round(vib, 4), round(60 + 5 * fault * on + rng.normal(0, 0.5), 3),
                status, round(rpm0 + 50 * np.sin(t / 7) + rng.normal(0, 10), 2),
            ])  # fmt: skip
    header = ["timestamp", "machine_id", "vib_x", "vib_y", "vib_z", "temperature", "status", "rpm"]
    return _write(path, header, rows)


DATASETS = {
    "counts": (accelerometer_counts, {"target": "az", "horizon": 1, "sequence_column": "run"}),
    "machine": (machine_readings, {"target": "power_w", "sequence_column": "run"}),
    "pump": (pump_fleet, {"target": "status", "sequence_column": "machine_id"}),
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Every dataset at seeds 0 (the default), 1 and 2: (data, checkpoint, model)."""
    root = tmp_path_factory.mktemp("user_data")
    out = {}
    for name, (make, options) in DATASETS.items():
        data = load_dataset(make(root / f"{name}.csv"), **options)
        for seed in (0, 1, 2):
            run = root / f"{name}-{seed}"
            result = train(
                data,
                GRUConfig.for_data(data, hidden_size=32),
                TrainOptions(epochs=12, seed=seed, progress=False, epoch_lines=False),
                out_dir=run,
            )
            model = export_onnx(result.checkpoint, run / "model.onnx").path
            out[name, seed] = (data, result.checkpoint, model)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", list(DATASETS))
def test_exports_and_verifies_at_every_scale_and_seed(trained, name, seed):
    _, checkpoint, model = trained[name, seed]
    report = verify(model, checkpoint, steps=2000)
    assert report.passed, report.format()
    scale = max(abs(v) for v in sg.load(model).spec.normalization["feature_mean"])
    assert scale > 50  # the data is far from unit scale: these are the user's own units


@pytest.mark.parametrize("name", list(DATASETS))
def test_other_weights_still_fail_every_check(trained, name):
    """The rule scales with the values and allows float32's drift, yet a checkpoint of
    the same shapes with other weights fails every numeric check."""
    from stream_gru.training.network import load_checkpoint

    _, checkpoint, model = trained[name, 0]
    twin = load_checkpoint(checkpoint)
    other = load_checkpoint(trained[name, 1][1])
    twin.rnn.load_state_dict(other.rnn.state_dict())
    twin.head.load_state_dict(other.head.state_dict())
    report = verify(model, twin, steps=500)
    assert report.checks[0].passed  # the same metadata and normalization
    assert not any(c.passed for c in report.checks[1:]), report.format()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", list(DATASETS))
def test_a_pool_of_16_agrees_with_16_streams_over_1500_chained_steps(trained, name, seed):
    data, _, path = trained[name, seed]
    model = sg.load(path)
    pool = model.pool()
    assert pool.graph == "step"  # the one-step graph: another graph than the streams'
    streams = [model.stream() for _ in range(16)]
    for k in range(16):
        pool.open(k)
    # Each stream replays the recorded data from its own offset, 1,500 steps long.
    x = np.concatenate([r.x for r in data.recordings])
    rows = (np.arange(1500)[None, :] + 97 * np.arange(16)[:, None]) % len(x)
    worst = 0.0
    for t in range(1500):
        xt = x[rows[:, t]]
        y_pool = pool.step_batch(np.arange(16), xt)
        y_streams = np.stack([s.step(xi) for s, xi in zip(streams, xt, strict=True)])
        worst = max(worst, assert_agree(y_pool, y_streams, what=f"outputs at step {t}").excess)
    for k, s in enumerate(streams):
        assert_agree(pool.state(k)["h0"], s.state["h0"], what=f"stream {k}'s state")
    assert 0 < worst <= 1  # two graphs: close, and not equal by accident
    assert DEFAULT_RULE.holds(y_pool, y_streams)
