"""Loading recorded data (CSV, NPZ, .ts), splits and normalization. numpy only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stream_gru.data import (
    Recording,
    SensorDataset,
    compute_normalization,
    load_csv,
    load_dataset,
    load_npz,
    split_dataset,
)
from stream_gru.data.basic_motions import load_basic_motions, read_ts


def write(path: Path, text: str) -> Path:
    path.write_text(text.lstrip("\n"), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- CSV


def test_csv_timestamp_ignored_and_string_labels(tmp_path: Path) -> None:
    p = write(
        tmp_path / "a.csv",
        """
time,a,b,label
2024-01-01T00:00:00,1.0,10,walk
2024-01-01T00:00:01,2.0,20,run
2024-01-01T00:00:02,3.0,30,walk
2024-01-01T00:00:03,4.0,40,idle
""",
    )
    ds = load_csv(p, target="label")
    assert ds.task == "classification"
    assert ds.feature_names == ("a", "b")
    assert ds.output_names == ("idle", "run", "walk")
    assert len(ds.recordings) == 1
    rec = ds.recordings[0]
    assert rec.x.dtype == np.float32 and rec.x.shape == (4, 2)
    np.testing.assert_array_equal(rec.x[:, 1], [10, 20, 30, 40])
    np.testing.assert_array_equal(rec.y, [2, 1, 2, 0])
    assert rec.y.dtype == np.int64
    assert rec.mask.all()
    assert ds.input_size == 2 and ds.output_size == 3
    assert ds.source == str(p)


def test_csv_int_labels_sorted_numerically(tmp_path: Path) -> None:
    p = write(tmp_path / "a.csv", "x,label\n0.1,10\n0.2,2\n0.3,1\n0.4,2\n")
    ds = load_csv(p, target="label", task="classification")
    assert ds.output_names == ("1", "2", "10")
    np.testing.assert_array_equal(ds.recordings[0].y, [2, 1, 0, 1])


def test_csv_numeric_target_defaults_to_regression(tmp_path: Path) -> None:
    p = write(tmp_path / "a.csv", "x,t\n1,0.5\n2,1.5\n")
    ds = load_csv(p, target="t")
    assert ds.task == "regression"
    assert ds.output_names == ("t",)
    assert ds.recordings[0].y.shape == (2, 1)
    assert ds.recordings[0].y.dtype == np.float32


def test_csv_sequence_column_recordings_of_different_length(tmp_path: Path) -> None:
    p = write(
        tmp_path / "a.csv",
        "run,x,label\nB,1,a\nA,2,b\nB,3,a\nB,4,b\nA,5,a\nC,6,b\n",
    )
    ds = load_csv(p, target="label", sequence_column="run")
    assert ds.feature_names == ("x",)  # the sequence column is not a feature
    assert [r.name for r in ds.recordings] == ["B", "A", "C"]
    assert [len(r) for r in ds.recordings] == [3, 2, 1]
    np.testing.assert_array_equal(ds.recordings[0].x[:, 0], [1, 3, 4])
    np.testing.assert_array_equal(ds.recordings[1].x[:, 0], [2, 5])
    np.testing.assert_array_equal(ds.recordings[0].y, [0, 0, 1])


def test_csv_horizon_shifts_within_each_recording(tmp_path: Path) -> None:
    rows = (
        ["s,x,t"] + [f"r1,{i},{i * 10}" for i in range(5)] + [f"r2,{i},{i * 100}" for i in range(4)]
    )
    p = write(tmp_path / "a.csv", "\n".join(rows) + "\n")
    ds = load_csv(p, target="t", features=["x"], sequence_column="s", horizon=2)
    r1, r2 = ds.recordings
    np.testing.assert_array_equal(r1.mask, [True, True, True, False, False])
    np.testing.assert_array_equal(r1.y[r1.mask, 0], [20, 30, 40])
    np.testing.assert_array_equal(r2.mask, [True, True, False, False])
    np.testing.assert_array_equal(r2.y[r2.mask, 0], [200, 300])  # never reaches into r1
    assert ds.horizon == 2


def test_csv_target_can_also_be_a_feature(tmp_path: Path) -> None:
    p = write(tmp_path / "a.csv", "t,u\n1,5\n2,6\n3,7\n")
    ds = load_csv(p, target="t", features=["t", "u"], horizon=1)
    rec = ds.recordings[0]
    np.testing.assert_array_equal(rec.x[:, 0], [1, 2, 3])
    np.testing.assert_array_equal(rec.y[:2, 0], [2, 3])
    assert ds.feature_names == ("t", "u")


def test_csv_horizon_needs_regression(tmp_path: Path) -> None:
    p = write(tmp_path / "a.csv", "x,label\n1,a\n2,b\n")
    with pytest.raises(ValueError, match="horizon"):
        load_csv(p, target="label", horizon=1)


def test_csv_named_non_numeric_feature_names_column_and_line(tmp_path: Path) -> None:
    p = write(tmp_path / "a.csv", "time,x,label\n1,0.5,a\n2,oops,b\n")
    with pytest.raises(ValueError, match=r"'x'.*line 3.*'oops'"):
        load_csv(p, target="label", features=["x"])
    # by default the bad column is not numeric, so it is left out rather than an error
    assert load_csv(p, target="label").feature_names == ("time",)


def test_csv_missing_values_name_column_and_line(tmp_path: Path) -> None:
    p = write(tmp_path / "a.csv", "x,t\n1,2\n\n2,\n3,4\n")
    with pytest.raises(ValueError, match=r"'t'.*line 4.*missing"):
        load_csv(p, target="t")
    p2 = write(tmp_path / "b.csv", "x,t\n1,2\nnan,3\n")
    with pytest.raises(ValueError, match=r"'x'.*line 3"):
        load_csv(p2, target="t")


def test_csv_unknown_columns_list_the_available_ones(tmp_path: Path) -> None:
    p = write(tmp_path / "a.csv", "x,y,label\n1,2,a\n")
    with pytest.raises(ValueError, match=r"'nope'.*available columns: x, y, label"):
        load_csv(p, target="nope")
    with pytest.raises(ValueError, match=r"'z'.*available columns"):
        load_csv(p, target="label", features=["x", "z"])
    with pytest.raises(ValueError, match=r"'id'.*available columns"):
        load_csv(p, target="label", sequence_column="id")


def test_csv_ragged_row_and_bad_task(tmp_path: Path) -> None:
    p = write(tmp_path / "a.csv", "x,label\n1,a\n2,b,extra\n")
    with pytest.raises(ValueError, match="line 3"):
        load_csv(p, target="label")
    p2 = write(tmp_path / "b.csv", "x,label\n1,a\n")
    with pytest.raises(ValueError, match="task"):
        load_csv(p2, target="label", task="ranking")
    with pytest.raises(ValueError, match=r"'label'.*line 2"):
        load_csv(p2, target="label", task="regression")


# --------------------------------------------------------------------------- NPZ


def test_npz_per_recording_string_labels_broadcast(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(3, 5, 2))
    p = tmp_path / "d.npz"
    np.savez(p, x=x, y=np.array(["b", "a", "b"]), feature_names=np.array(["u", "v"]))
    ds = load_npz(p)
    assert ds.task == "classification"
    assert ds.output_names == ("a", "b")
    assert ds.feature_names == ("u", "v")
    np.testing.assert_array_equal(ds.recordings[0].y, [1] * 5)
    np.testing.assert_array_equal(ds.recordings[1].y, [0] * 5)
    np.testing.assert_allclose(ds.recordings[2].x, x[2].astype(np.float32))


def test_npz_int_labels_with_output_names_and_lengths(tmp_path: Path) -> None:
    x = np.zeros((2, 6, 1), dtype=np.float32)
    x[0, 4:] = np.nan  # padding may hold anything
    y = np.array([[0, 1, 1, 2, 9, 9], [2, 2, 0, 0, 1, 1]])
    p = tmp_path / "d.npz"
    np.savez(p, x=x, y=y, lengths=np.array([4, 6]), output_names=np.array(["lo", "mid", "hi"]))
    ds = load_npz(p)
    assert ds.output_names == ("lo", "mid", "hi")
    assert [len(r) for r in ds.recordings] == [4, 6]
    np.testing.assert_array_equal(ds.recordings[0].y, [0, 1, 1, 2])
    np.testing.assert_array_equal(ds.recordings[1].y, y[1])


def test_npz_regression_shapes_and_horizon(tmp_path: Path) -> None:
    x = np.arange(2 * 5 * 1, dtype=np.float64).reshape(2, 5, 1)
    p = tmp_path / "d.npz"
    np.savez(p, x=x, y=x[:, :, 0] * 2.0)
    ds = load_npz(p, horizon=1)
    assert ds.task == "regression" and ds.output_names == ("y",)
    r = ds.recordings[0]
    np.testing.assert_array_equal(r.mask, [True, True, True, True, False])
    np.testing.assert_array_equal(r.y[:4, 0], [2, 4, 6, 8])

    y3 = np.stack([x[:, :, 0], -x[:, :, 0]], axis=-1)
    np.savez(p, x=x, y=y3, lengths=np.array([5, 3]))
    ds3 = load_npz(p)
    assert ds3.output_names == ("y0", "y1") and ds3.output_size == 2
    assert ds3.recordings[1].y.shape == (3, 2)


def test_npz_errors(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    np.savez(p, x=np.zeros((2, 3, 1)))
    with pytest.raises(ValueError, match="'y'"):
        load_npz(p)
    np.savez(p, x=np.zeros((2, 3, 1)), y=np.zeros(3))
    with pytest.raises(ValueError, match="y must be"):
        load_npz(p)
    x = np.zeros((2, 3, 1))
    x[1, 2, 0] = np.inf
    np.savez(p, x=x, y=np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match=r"x\[1, 2, 0\]"):
        load_npz(p)
    np.savez(p, x=np.zeros((2, 3, 1)), y=np.zeros(2, dtype=int), lengths=np.array([3, 4]))
    with pytest.raises(ValueError, match=r"lengths\[1\]"):
        load_npz(p)


def test_load_dataset_dispatch(tmp_path: Path) -> None:
    """By content: text is CSV whatever its suffix, an .npz is an .npz; anything else
    is named for what it looks like, without talk of formats it is not."""
    p = write(tmp_path / "a.CSV", "x,t\n1,2\n")
    assert load_dataset(p, target="t").task == "regression"
    txt = write(tmp_path / "export.txt", "x;t\n1;2\n3;4\n")
    ds = load_dataset(txt, target="t")
    assert ds.reading is not None and ds.reading.delimiter == ";" and ds.num_valid_steps == 2
    (tmp_path / "a.parquet").write_bytes(b"PAR1\x15\x04\x15\x10\x00\x01\x02\xff\xfe")
    with pytest.raises(
        ValueError,
        match=r"a\.parquet: cannot read it as data: it looks like "
        r"binary data",
    ):
        load_dataset(tmp_path / "a.parquet")
    with pytest.raises(FileNotFoundError):
        load_dataset(tmp_path / "missing.csv")


# --------------------------------------------------------------------------- splits


def _classification(n: int, steps: int = 10, classes: int = 2) -> SensorDataset:
    rng = np.random.default_rng(1)
    recs = tuple(
        Recording(
            rng.normal(size=(steps + i, 2)).astype(np.float32),
            np.full(steps + i, i % classes, dtype=np.int64),
            np.ones(steps + i, dtype=bool),
            f"r{i}",
        )
        for i in range(n)
    )
    return SensorDataset(
        recs, ("a", "b"), tuple(str(c) for c in range(classes)), "classification", "y"
    )


def test_split_by_recording_is_disjoint_and_seeded() -> None:
    ds = _classification(10)
    tr, va = split_dataset(ds, validation_fraction=0.2, seed=3)
    train_names = {r.name for r in tr.recordings}
    val_names = {r.name for r in va.recordings}
    assert len(val_names) == 2 and len(train_names) == 8
    assert not train_names & val_names
    assert train_names | val_names == {r.name for r in ds.recordings}
    # stratified: one validation recording of each class
    assert sorted(int(r.y[0]) for r in va.recordings) == [0, 1]
    again = split_dataset(ds, validation_fraction=0.2, seed=3)[1]
    assert [r.name for r in again.recordings] == [r.name for r in va.recordings]
    choices = {tuple(r.name for r in split_dataset(ds, seed=s)[1].recordings) for s in range(10)}
    assert len(choices) > 1


def test_split_keeps_a_training_recording_per_class() -> None:
    ds = _classification(6, classes=3)  # two recordings per class
    tr, va = split_dataset(ds, validation_fraction=0.5, seed=0)
    assert sorted({int(r.y[0]) for r in tr.recordings}) == [0, 1, 2]
    assert len(va.recordings) == 3


def test_split_by_time_with_few_recordings(tmp_path: Path) -> None:
    rows = ["x,t"] + [f"{i},{i}" for i in range(20)]
    ds = load_csv(write(tmp_path / "a.csv", "\n".join(rows) + "\n"), target="t", horizon=2)
    tr, va = split_dataset(ds, validation_fraction=0.2)
    (a,), (b,) = tr.recordings, va.recordings
    np.testing.assert_array_equal(a.x[:, 0], np.arange(16))
    np.testing.assert_array_equal(b.x[:, 0], np.arange(16, 20))
    # training targets stay before the cut: no target lies in both splits
    train_targets = set(a.y[a.mask, 0].tolist())
    val_targets = set(b.y[b.mask, 0].tolist())
    assert max(train_targets) < 16 and not train_targets & val_targets
    assert val_targets == {18, 19}


def test_normalization_on_the_training_split_only(tmp_path: Path) -> None:
    rows = ["x,t"] + [f"{i},{i * 2}" for i in range(10)]
    ds = load_csv(write(tmp_path / "a.csv", "\n".join(rows) + "\n"), target="t", horizon=1)
    tr, _ = split_dataset(ds, validation_fraction=0.2)
    norm = compute_normalization(tr)
    # training rows x = 0..7 with a valid target: x 0..6, targets 2..14
    assert norm["feature_mean"] == pytest.approx([3.0])
    assert norm["feature_std"] == pytest.approx([np.std(np.arange(7))])
    assert norm["target_mean"] == pytest.approx([8.0])
    cls = compute_normalization(_classification(3))
    assert cls["target_mean"] == [] and cls["target_std"] == []
    assert len(cls["feature_mean"]) == 2


def test_constant_feature_gets_unit_std() -> None:
    recs = (Recording(np.ones((4, 1), np.float32), np.zeros(4, np.int64), np.ones(4, bool), "r"),)
    ds = SensorDataset(recs, ("c",), ("a",), "classification", "y")
    assert compute_normalization(ds)["feature_std"] == [1.0]


# --------------------------------------------------------------------------- .ts


TS = """
# a comment
@problemName Tiny
@timeStamps false
@univariate false
@dimensions 2
@equalLength true
@seriesLength 3
@classLabel true up down
@data
1,2,3:4,5,6:up
7,8,9:1.5,-2,0:down
"""


def test_read_ts(tmp_path: Path) -> None:
    x, y = read_ts(write(tmp_path / "t.ts", TS))
    assert x.shape == (2, 3, 2) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0], [[1, 4], [2, 5], [3, 6]])
    np.testing.assert_array_equal(y, ["up", "down"])


@pytest.mark.parametrize(
    ("bad_line", "match"),
    [
        ("1,2,3:4,5:up", "line 12"),
        ("1,2,x:4,5,6:up", "line 12"),
        ("1,2,3:4,5,6:sideways", "line 12"),
        ("1,2,3,4:5,6,7,8:up", "line 12"),
    ],
)
def test_read_ts_malformed(tmp_path: Path, bad_line: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        read_ts(write(tmp_path / "t.ts", TS + bad_line + "\n"))


def test_basic_motions_shipped() -> None:
    train = load_basic_motions("train")
    test = load_basic_motions("test")
    for ds in (train, test):
        assert len(ds.recordings) == 40
        assert {r.x.shape for r in ds.recordings} == {(100, 6)}
        assert ds.output_names == ("Badminton", "Running", "Standing", "Walking")
        assert ds.feature_names[0] == "accel_x" and ds.input_size == 6
        labels = [int(r.y[0]) for r in ds.recordings]
        assert all((r.y == r.y[0]).all() for r in ds.recordings)
        assert np.bincount(labels).tolist() == [10, 10, 10, 10]
    assert not np.array_equal(train.recordings[0].x, test.recordings[0].x)
    with pytest.raises(ValueError, match="split"):
        load_basic_motions("valid")  # type: ignore[arg-type]
