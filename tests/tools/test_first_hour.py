"""A new user's first hour with their own CSV: what train says about the data, missing
values and delimiters, `run` on the CSV as it is, compare finding the recordings, a
wrong file named for what it is, files written only into folders that exist."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import stream_gru as sg
from stream_gru.agreement import assert_agree
from stream_gru.cli import main

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]


def pump_csv(path: Path, machines: int = 8, steps: int = 40, delimiter: str = ",") -> Path:
    """A pump fleet as a user records it: a timestamp, a machine id, three vibration
    channels, a temperature, a text status (the target) and the RPM."""
    rng = np.random.default_rng(5)
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(["timestamp", "machine_id", "vib_x", "vib_y", "vib_z", "temp", "status", "rpm"])
        for m in range(machines):
            for t in range(steps):
                status = ("ok", "warn", "fail")[m % 3] if t > 10 else "ok"
                w.writerow([
                    f"2026-01-01T00:00:{t:02d}", f"PUMP-{m:02d}",
                    *np.round(rng.normal(0, 1 + m % 3, 3), 3), round(60 + rng.normal(), 2),
                    status, round(1200 + 100 * m + rng.normal(0, 5), 1),
                ])  # fmt: skip
    return path


def _cli(*args: object) -> tuple[int, str, str]:
    r = subprocess.run(
        [sys.executable, "-m", "stream_gru.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, r.stdout, r.stderr


@pytest.fixture(scope="module")
def pump(tmp_path_factory):
    """The CSV, a classifier trained on it with its machines as recordings, exported."""
    root = tmp_path_factory.mktemp("pump")
    data = pump_csv(root / "pump.csv")
    code = main([
        "train", str(data), "--target", "status", "--sequence-column", "machine_id",
        "--hidden", "8", "--epochs", "2", "--quiet", "--out", str(root / "run"),
    ])  # fmt: skip
    assert code == 0
    assert main(["export", str(root / "run/checkpoint.pt"), "--out", str(root / "m.onnx")]) == 0
    return data, root / "run/checkpoint.pt", root / "m.onnx"


# -- train tells what it read ----------------------------------------------------------
def test_train_prints_features_classes_and_ignored_columns(pump, capsys, tmp_path):
    data, _, _ = pump
    main(["train", str(data), "--target", "status", "--sequence-column", "machine_id",
          "--hidden", "4", "--epochs", "1", "--quiet", "--out", str(tmp_path / "r")])  # fmt: skip
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"data      {data}: 320 rows, 8 recordings by 'machine_id', 40 steps")
    assert out[1] == "features  vib_x, vib_y, vib_z, temp, rpm (5)"
    assert out[2] == "target    status: classification into 3 classes: fail, ok, warn"
    assert out[3] == "ignored   timestamp (text)"
    assert any(line.startswith("warning   only 320 steps") for line in out)


def test_train_suggests_the_sequence_column_it_was_not_given(pump, capsys, tmp_path):
    data, _, _ = pump
    main(["train", str(data), "--target", "status", "--hidden", "4", "--epochs", "1", "--quiet",
          "--out", str(tmp_path / "r")])  # fmt: skip
    out = capsys.readouterr().out
    assert "320 rows, 1 recording (the whole file), 320 steps\n" in out
    assert (
        "warning   column 'machine_id' has 8 distinct values, each in one block of rows: "
        "if each is a device or a run, pass --sequence-column machine_id" in out
    )
    assert "ignored   timestamp (text), machine_id (text)\n" in out


def test_an_interleaved_fleet_log_gets_the_hint_too(tmp_path):
    """A log sorted by time (each machine takes its turn) is one recording without
    --sequence-column: the machine column is named, whatever the layout."""
    from stream_gru.data import load_training_data

    rows = ["time,machine,vib,label"]
    rows += [f"{t},M{m},{t * m % 7},{m % 2}" for t in range(30) for m in range(4)]
    p = tmp_path / "log.csv"
    p.write_text("\n".join(rows) + "\n")
    (warning,) = load_training_data(p, target="label").reading.warnings
    assert warning.startswith("column 'machine' has 4 distinct values, taking turns row by row")


def test_missing_values_in_the_sequence_column(tmp_path):
    from stream_gru.data import load_training_data

    p = tmp_path / "s.csv"
    p.write_text("run,a,y\nr1,1,0\nNA,2,1\nr2,3,0\n,4,1\nr2,5,1\n")
    with pytest.raises(ValueError, match=r"sequence column 'run' has a missing value at line 3"):
        load_training_data(p, target="y", sequence_column="run")
    dropped = load_training_data(p, target="y", sequence_column="run", missing="drop")
    assert {r.name: r.x[:, 0].tolist() for r in dropped.recordings} == {
        "r1": [1],
        "r2": [3, 5],
    }  # "NA" is no recording's name
    filled = load_training_data(p, target="y", sequence_column="run", missing="ffill")
    assert {r.name: r.x[:, 0].tolist() for r in filled.recordings} == {
        "r1": [1, 2],
        "r2": [3, 4, 5],
    }


def test_a_dropped_row_is_not_bridged_by_a_horizon(tmp_path):
    """With --missing drop and --horizon 1, a target is never taken from across a gap."""
    from stream_gru.data import load_training_data

    p = tmp_path / "h.csv"
    p.write_text("a,y\n1,10\n2,20\n,30\n4,40\n5,50\n")
    ds = load_training_data(p, target="y", horizon=1, missing="drop")
    (r,) = ds.recordings
    assert r.x[:, 0].tolist() == [1, 2, 4, 5]
    assert r.mask.tolist() == [True, False, True, False]  # 2 -> 4 crosses the dropped row
    assert r.y[r.mask][:, 0].tolist() == [20, 50]


def test_a_csv_that_is_not_utf8_says_so(tmp_path):
    from stream_gru.data import load_training_data

    p = tmp_path / "excel.csv"
    p.write_bytes("a,temp \u00b0C,y\n1,2,3\n".encode("cp1252"))
    with pytest.raises(ValueError, match=r"is not UTF-8 text \(byte 8 is b'\\xb0'\); save it"):
        load_training_data(p, target="y")
    p.write_bytes("a,temp \u00b0C,y\n1,2,3\n4,5,6\n".encode("utf-16"))  # Excel's Unicode text
    assert load_training_data(p, target="y").num_valid_steps == 2


def test_compare_two_models_takes_missing_values_too(pump, tmp_path, capsys):
    data, _, model = pump
    lines = data.read_text().splitlines()
    lines[5] = ",".join(c if i != 2 else "" for i, c in enumerate(lines[5].split(",")))
    holes = tmp_path / "holes.csv"
    holes.write_text("\n".join(lines) + "\n")
    assert main(["compare", str(model), str(model), "--data", str(holes), "--quiet"]) == 2
    assert "--missing drop" in capsys.readouterr().err
    code = main(["compare", str(model), str(model), "--data", str(holes), "--missing", "ffill",
                 "--quiet"])  # fmt: skip
    assert code == 0 and "320 steps" in capsys.readouterr().out


def test_dropout_with_one_layer_is_refused(pump, tmp_path):
    code, _, err = _cli("train", pump[0], "--target", "status", "--dropout", "0.3",
                        "--out", tmp_path / "r")  # fmt: skip
    assert code == 1 and "--dropout 0.3 applies between stacked layers" in err
    assert "--layers 2" in err and not (tmp_path / "r").exists()


@pytest.mark.parametrize("policy", ["error", "drop", "ffill"])
def test_missing_values_are_refused_dropped_or_filled(tmp_path, policy):
    from stream_gru.data import load_training_data

    p = tmp_path / "m.csv"
    p.write_text("run,a,b,y\nr1,1,10,0\nr1,,11,1\nr1,3,NA,0\nr2,,20,1\nr2,5,21,1\nr2,6,null,0\n")
    if policy == "error":
        with pytest.raises(
            ValueError,
            match=r"column 'a' has a missing value at line 3 \(an "
            r"empty cell; 4 missing cells.*--missing drop.*--missing ffill",
        ):
            load_training_data(p, target="y", sequence_column="run")
        return
    ds = load_training_data(p, target="y", sequence_column="run", missing=policy)
    x = {r.name: r.x.tolist() for r in ds.recordings}
    assert ds.reading is not None
    if policy == "drop":
        assert x == {"r1": [[1, 10]], "r2": [[5, 21]]}
        assert ds.reading.dropped_rows == 4 and ds.reading.filled_cells == 0
    else:  # each recording's last value carried forward; r2's first row has none
        assert x == {"r1": [[1, 10], [1, 11], [3, 11]], "r2": [[5, 21], [6, 21]]}
        assert ds.reading.dropped_rows == 1 and ds.reading.filled_cells == 3


def test_a_semicolon_txt_file_is_read_as_csv(tmp_path, capsys):
    data = pump_csv(tmp_path / "pump export.txt", delimiter=";")
    args = ["--sequence-column", "machine_id", "--hidden", "4", "--epochs", "1", "--quiet"]
    code = main(["train", str(data), "--target", "status", *args, "--out", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert code == 0 and "format    columns separated by semicolons" in out
    assert "8 recordings by 'machine_id'" in out


def test_a_decimal_comma_gets_a_hint(tmp_path):
    from stream_gru.data import load_training_data

    p = tmp_path / "eu.csv"
    p.write_text("a;b;y\n1,5;2;0\n2,5;3;1\n")
    with pytest.raises(
        ValueError,
        match=r"column 'a' holds numbers written with a decimal "
        r"comma \(line 2 has '1,5'\)",
    ):
        load_training_data(p, target="y")
    with pytest.raises(
        ValueError,
        match=r"line 2 has '1,5' \(a decimal comma\? numbers need a "
        r"decimal point\)",
    ):
        load_training_data(p, target="y", features=["a", "b"])


def test_one_column_header_hints_at_the_delimiter(tmp_path):
    from stream_gru.data import load_training_data

    p = tmp_path / "x.csv"
    p.write_text("a;b;y\n1;2;0\n")
    with pytest.raises(ValueError, match=r"is the file semicolon-separated\?"):
        load_training_data(p, target="y", delimiter=",")


def test_the_validation_fraction_the_message_names_has_an_option(tmp_path):
    p = tmp_path / "short.csv"
    p.write_text("a,y\n1,0.5\n")
    code, _, err = _cli("train", p, "--target", "y", "--validation-fraction", "0.5",
                        "--out", tmp_path / "r")  # fmt: skip
    assert code == 1 and "--validation-fraction" in err
    code, _, err = _cli("train", p, "--target", "y", "--validation-fraction", "1.5",
                        "--out", tmp_path / "r")  # fmt: skip
    assert code == 2 and "expected a number in (0, 1)" in err


def test_train_into_a_closed_pipe_ends_quietly(pump, tmp_path):
    """`train ... | head -1`: the reader goes away after one line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream_gru.cli", "train", str(pump[0]), "--target", "status",
         "--hidden", "4", "--epochs", "3", "--quiet", "--out", str(tmp_path / "r")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # what `head -1` does after its line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141
    assert first.startswith(b"data ") and "Broken pipe" not in err and "Traceback" not in err


# -- verify with the wrong checkpoint ----------------------------------------------------
def test_verify_with_a_checkpoint_of_other_features_fails_at_the_metadata(pump, tmp_path):
    data, _, model = pump
    assert (
        main(
            [
                "train",
                str(data),
                "--target",
                "status",
                "--features",
                "vib_x,vib_y,rpm",
                "--hidden",
                "8",
                "--epochs",
                "1",
                "--quiet",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
    code, out, err = _cli("verify", model, "--checkpoint", tmp_path / "o/checkpoint.pt", "--quiet")
    assert code == 1 and "broadcast" not in out + err
    assert "input_size: model 5, checkpoint 3" in out and "verify FAILED: 0/1 checks" in out


# -- run on the user's own CSV ----------------------------------------------------------
def test_run_reads_the_csv_by_its_header(pump):
    data, _, model = pump
    code, out, err = _cli("run", model, "--input", data, "--label")
    lines = out.splitlines()
    assert code == 0 and err == ""
    assert lines[0] == "machine_id,fail,ok,warn,label"  # the key: the training's sequence column
    assert len(lines) == 1 + 320 and lines[1].startswith("PUMP-00,")
    assert all(line.rsplit(",", 1)[1] in ("fail", "ok", "warn") for line in lines[1:])
    # The same numbers as streams fed the feature columns, machine by machine.
    m = sg.load(model)
    with open(data) as f:
        rows = list(csv.DictReader(f))
    streams: dict[str, sg.Stream] = {}
    for row, line in zip(rows, lines[1:], strict=True):
        x = [float(row[n]) for n in m.spec.feature_names]
        y = streams.setdefault(row["machine_id"], m.stream()).step(x)
        assert_agree(np.array(line.split(",")[1:4], np.float32), y)  # a pool, another graph


def test_run_key_and_columns_by_name_and_quoted_keys(pump, tmp_path):
    _, _, model = pump
    p = tmp_path / "mine.csv"
    p.write_text(
        'site,rpm,temp,vib_z,vib_y,vib_x,extra\n"PUMP,03",1300,61,0.1,0.2,0.3,x\n'
        '"say ""hi""",1300,61,0.1,0.2,0.3,y\nPUMP,1300,61,0.1,0.2,0.3,z\n'
    )
    code, out, _ = _cli("run", model, "--input", p, "--key-column", "site")
    lines = out.splitlines()
    assert code == 0 and lines[0] == "site,fail,ok,warn"
    assert [next(csv.reader([line]))[0] for line in lines[1:]] == ["PUMP,03", 'say "hi"', "PUMP"]
    # columns found by name, whatever their order: the same output as the model's order
    assert lines[1].split(",", 2)[2] == lines[3].split(",", 1)[1]


def test_run_exits_nonzero_when_every_line_is_refused(pump, tmp_path):
    _, _, model = pump
    p = tmp_path / "bad.csv"
    p.write_text("a,1,2\nb,x,y,z,w,v\n")
    code, out, err = _cli("run", model, "--input", p)
    assert code == 1 and out == "" and "every one of the 2 data lines was refused" in err
    p.write_text("machine_id,vib_x\nPUMP-1,1\n")
    code, _, err = _cli("run", model, "--input", p, "--header", "yes")
    assert code == 1 and "the header has no column(s) 'vib_y', 'vib_z', 'temp', 'rpm'" in err


# -- compare finds the recordings ---------------------------------------------------------
def test_compare_defaults_to_the_training_sequence_column(pump, capsys, tmp_path):
    data, _, model = pump
    assert main(["compare", str(model), str(model), "--data", str(data), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "8 recording(s), 320 steps" in out
    assert "recordings by column 'machine_id' (the models' training sequence column)" in out
    other = tmp_path / "no_id.csv"
    with open(data) as f, open(other, "w") as g:
        for line in f:
            g.write(line.split(",", 2)[0] + "," + line.split(",", 2)[2])
    assert main(["compare", str(model), str(model), "--data", str(other), "--quiet"]) == 0
    assert "which this file lacks" in capsys.readouterr().out


# -- the wrong file, named for what it is -------------------------------------------------
def test_wrong_files_are_named_for_what_they_look_like(pump, tmp_path):
    data, checkpoint, model = pump
    for path, seems in [
        (checkpoint, "it looks like a PyTorch checkpoint"),
        (data, "it looks like text: 'timestamp,machine_id,"),
    ]:
        code, _, err = _cli("info", path)
        assert code == 1 and seems in err and "field number" not in err and "wire type" not in err
        assert "expected the .onnx file that `stream-gru export` writes" in err
    code, _, err = _cli("verify", model, "--checkpoint", model)
    assert code == 1 and "is not a stream-gru checkpoint: it looks like an ONNX model" in err
    m = sg.load(model)
    with pytest.raises(sg.SnapshotError) as e:
        m.load_pool(model)
    assert str(e.value).count(str(model)) == 1 and "it looks like an ONNX model" in str(e.value)
    pool = m.pool()
    pool.open("a")
    with pytest.raises(sg.SnapshotError, match=r"is a stream-gru pool file .* model\.load_pool"):
        m.restore(pool.to_bytes())


# -- files go only into folders that exist --------------------------------------------------
def test_files_are_written_only_into_folders_that_exist(pump, tmp_path):
    _, checkpoint, model = pump
    m = sg.load(model)
    pool = m.pool()
    with pytest.raises(FileNotFoundError, match=r"the folder .*nowhere/deeper does not exist"):
        pool.save(tmp_path / "nowhere/deeper/fleet.pool")
    assert not (tmp_path / "nowhere").exists()
    code, _, err = _cli("export", checkpoint, "--out", tmp_path / "a/b/c.onnx")
    assert code == 1 and "the folder" in err and not (tmp_path / "a").exists()
    code, _, _ = _cli("verify", model, "--checkpoint", checkpoint, "--steps", "10", "--quiet",
                      "--report", tmp_path / "x/report.json")  # fmt: skip
    assert code == 1 and not (tmp_path / "x").exists()
    # An output *directory* is made, parents and all, as mkdir -p makes it.
    assert main(["train", str(pump[0]), "--target", "status", "--hidden", "4", "--epochs", "1",
                 "--quiet", "--out", str(tmp_path / "runs/new/dir")]) == 0  # fmt: skip
    assert (tmp_path / "runs/new/dir/checkpoint.pt").is_file()
