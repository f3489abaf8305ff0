"""The `run` line protocol: outputs per line, bad lines reported and harmless."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np

import stream_gru as sg
from stream_gru.tools.pipe import serve_lines


def _serve(model, text):
    out, err = io.StringIO(), io.StringIO()
    stats = serve_lines(model, io.StringIO(text), out, err, pool=model.pool(graph="sequence"))
    return out.getvalue().splitlines(), err.getvalue().splitlines(), stats


def test_lines_for_many_keys_match_their_own_streams(gru_model, rng):
    model = sg.load(gru_model.onnx)
    keys = ["a", "b", "sensor-7", "a", "b", "a"]
    xs = rng.standard_normal((len(keys), 3)).astype(np.float32)
    text = "".join(
        f"{k},{','.join(f'{v:.9g}' for v in x)}\n" for k, x in zip(keys, xs, strict=True)
    )
    out, err, stats = _serve(model, text)
    assert err == [] and stats.streams == 3 and stats.outputs == 6
    refs = {k: model.stream() for k in set(keys)}
    for line, k, x in zip(out, keys, xs, strict=True):
        key, *fields = line.split(",")
        assert key == k
        got = np.array([float(f) for f in fields], np.float32)
        np.testing.assert_array_equal(got, refs[k].step(x))  # %.9g round-trips float32


def test_bad_lines_are_reported_and_change_nothing(gru_model):
    model = sg.load(gru_model.onnx)
    text = "\n".join(
        [
            "a,1,2,3",  # 1 ok
            "a,1,2",  # 2 too few fields
            "",  # 3 blank: skipped
            "a,1,x,3",  # 4 not a number
            "a,1,nan,3",  # 5 NaN
            ",1,2,3",  # 6 empty key
            "b,1,2,3,4",  # 7 too many (b must not be opened)
            "a,4,5,6",  # 8 ok
            "   ",  # 9 blank
            "a,inf,0,0",  # 10 Inf
        ]
    )
    out, err, stats = _serve(model, text)
    assert [line.split(",")[0] for line in out] == ["a", "a"]
    assert err[0] == "line 2: expected a key and 3 features, got 2 feature fields"
    assert err[1] == "line 4: feature 'ay' (column 3) is not a number: 'x'"
    assert err[2] == "line 5: feature 'ay' (column 3) is nan, expected a finite number"
    assert err[3].startswith("line 6: the key")
    assert err[4] == "line 7: expected a key and 3 features, got 4 feature fields"
    assert err[5] == "line 10: feature 'ax' (column 2) is inf, expected a finite number"
    assert stats.rejected == 6 and stats.streams == 1 and stats.lines == 10
    ref = model.stream()
    ref.step([1, 2, 3])
    expected = ref.step([4, 5, 6])
    np.testing.assert_array_equal(np.array(out[1].split(",")[1:], np.float32), expected)


def test_run_command_streams_stdin_with_flushed_lines(gru_model):
    """A real pipe: each output line arrives before the next input line is sent."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream_gru.cli", "run", str(gru_model.onnx)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    assert proc.stdin and proc.stdout and proc.stderr
    try:
        for i in range(3):
            proc.stdin.write(f"k{i % 2},{i},0.5,-1\n")
            proc.stdin.flush()
            line = proc.stdout.readline()  # blocks unless the pipe flushes per line
            assert line.startswith(f"k{i % 2},") and len(line.split(",")) == 3
        proc.stdin.write("k0,oops\n")
        proc.stdin.flush()
        assert proc.stderr.readline().startswith("line 4: expected a key and 3 features")
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    assert proc.returncode == 0


def test_lines_arriving_together_are_batched_in_input_order(gru_model, rng, tmp_path):
    model = sg.load(gru_model.onnx)
    keys = ["a", "b", "c", "a", "b", "a", "d"]  # 'a' three times: three ticks, in order
    xs = rng.standard_normal((len(keys), 3)).astype(np.float32)
    path = tmp_path / "in.csv"
    path.write_text(
        "".join(f"{k},{','.join(f'{v:.9g}' for v in x)}\n" for k, x in zip(keys, xs, strict=True))
    )
    out, err = io.StringIO(), io.StringIO()
    with open(path, encoding="utf-8") as f:  # a real file: read by arrival with os.read
        stats = serve_lines(model, f, out, err, pool=model.pool(graph="sequence"))
    assert stats.ticks == 3 and stats.outputs == 7 and stats.streams == 4
    lines = out.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == keys
    refs = {k: model.stream() for k in set(keys)}
    for line, k, x in zip(lines, keys, xs, strict=True):
        np.testing.assert_array_equal(np.array(line.split(",")[1:], np.float32), refs[k].step(x))


def test_read_arrivals_groups_what_is_available(tmp_path):
    import os

    from stream_gru.tools.pipe import read_arrivals

    r, w = os.pipe()
    os.write(w, b"a,1\nb,2\nc,")
    with os.fdopen(r, "r") as reader:
        arrivals = read_arrivals(reader)
        assert next(arrivals) == [b"a,1", b"b,2"]  # the partial third line waits
        os.write(w, b"3\n")
        assert next(arrivals) == [b"c,3"]
        os.close(w)
        assert list(arrivals) == []


def test_overflow_and_undecodable_bytes_are_bad_lines(gru_model, tmp_path):
    model = sg.load(gru_model.onnx)
    path = tmp_path / "in.csv"
    path.write_bytes(b"a,1,2,3\nb,1e39,0,0\nc,\xff\xfe,0,0\na,4,5,6\n")
    out, err = io.StringIO(), io.StringIO()
    with open(path, encoding="utf-8") as f:
        stats = serve_lines(model, f, out, err, pool=model.pool(graph="sequence"))
    assert err.getvalue().splitlines() == [
        "line 2: feature 'ax' (column 2) is '1e39', which overflows float32 (largest 3.4028235e38)",
        "line 3: feature 'ax' (column 2) is not a number: '\\xff\\xfe'",
    ]
    assert [line.split(",")[0] for line in out.getvalue().splitlines()] == ["a", "a"]
    assert stats.rejected == 2 and stats.streams == 1
