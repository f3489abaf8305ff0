"""Hostile and careless input: the pipe, crafted files, odd arrays. Each promise of the
README holds: a clear, specific error naming the bad value, in bounded time and memory,
and no stream changes (slots and counts included)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import stream_gru as sg
from stream_gru.core.checks import MAX_STEPS
from stream_gru.formats import snapshot as sg_snapshot
from stream_gru.tools.pipe import PipeError, parse_number, serve_lines

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model(gru_model):
    return sg.load(gru_model.onnx)


def _serve(model, data, **options):
    """Serve ``data`` (bytes, or chunks of it: a list or a generator)."""
    out, err = io.BytesIO(), io.BytesIO()
    source = io.BytesIO(data) if isinstance(data, bytes) else iter(data)
    pool = options.pop("pool", None)
    pool = model.pool(graph="sequence") if pool is None else pool  # (an empty pool is falsy)
    stats = serve_lines(model, source, out, err, pool=pool, **options)
    return out.getvalue().split(b"\n")[:-1], err.getvalue().decode().splitlines(), stats, pool


# -- the pipe: keys byte for byte -------------------------------------------------------
def test_keys_are_taken_byte_for_byte(model):
    data = b"\xff,1,2,3\n\xfe,1,2,3\n a,1,2,3\na ,1,2,3\na,1,2,3\n\xff,4,5,6\n"
    out, err, stats, pool = _serve(model, data)
    assert err == [] and stats.streams == 5 and len(pool) == 5  # never merged
    assert [line.split(b",")[0] for line in out] == [b"\xff", b"\xfe", b" a", b"a ", b"a", b"\xff"]
    ref = model.stream()
    ref.step([1, 2, 3])
    assert out[-1] == b"\xff," + ",".join(f"{v:.9g}" for v in ref.step([4, 5, 6])).encode()


def test_a_key_with_a_control_character_is_refused(model):
    out, err, stats, _ = _serve(model, b"a\x1c,1,2,3\na,1,2,3\nb\x00c,1,2,3\n")
    assert err[0] == (
        "line 1: the key 'a\\x1c' (column 1) holds the control character '\\x1c'; keys are "
        "taken byte for byte, so it is refused rather than guessed at"
    )
    assert err[1].startswith("line 3: the key 'b\\x00c'")
    assert [line.split(b",")[0] for line in out] == [b"a"] and stats.streams == 1


def test_the_pipe_does_not_depend_on_the_locale(gru_model, tmp_path):
    """With an ASCII locale a non-ASCII key is answered like any other, as UTF-8 bytes."""
    data = "caf\u00e9,1,2,3\nplain,1,2,3\n\u6f22\u5b57,1,2,3\n".encode()
    env = {**os.environ, "PYTHONIOENCODING": "ascii", "LC_ALL": "C", "LANG": "C"}
    r = subprocess.run(
        [sys.executable, "-m", "stream_gru.cli", "run", str(gru_model.onnx)],
        input=data, capture_output=True, env=env, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 0 and r.stderr == b""
    keys = [line.split(b",")[0] for line in r.stdout.splitlines()]
    assert keys == ["caf\u00e9".encode(), b"plain", "\u6f22\u5b57".encode()]


# -- the pipe: long lines, many keys ----------------------------------------------------
def test_an_overlong_line_is_skipped_in_linear_time(model):
    big = b"k," + b"1" * 20_000_000  # 20 MB: minutes when reading was quadratic
    data = [b"a,1,2,3\n", *(big[i : i + 65536] for i in range(0, len(big), 65536)),
            b"\nb,1,2,3\n"]  # fmt: skip
    start = time.perf_counter()
    out, err, stats, _ = _serve(model, data)
    assert time.perf_counter() - start < 5
    assert err == ["line 2: longer than 1,048,576 bytes (20,000,002): skipped unread"]
    assert [line.split(b",")[0] for line in out] == [b"a", b"b"] and stats.rejected == 1


def test_max_streams_refuses_new_keys_and_idle_ones_make_room(model):
    now = [0.0]
    pool = model.pool(graph="sequence", clock=lambda: now[0])

    def chunks():
        yield b"a,1,2,3\nb,1,2,3\nc,1,2,3\n"  # c: over the limit
        now[0] = 100.0  # a and b go idle
        yield b"b,1,2,3\n"
        now[0] = 130.0  # a idle 130 s, b 30 s
        yield b"d,1,2,3\n"  # full: a is closed (idle past 60 s), d opens

    out, err, stats, _ = _serve(model, chunks(), pool=pool, max_streams=2, idle_timeout=60)
    assert err == [
        "line 3: key 'c' would open stream 3, over --max-streams 2: refused (streams idle for "
        "--idle-timeout are closed to make room)"
    ]
    assert [line.split(b",")[0] for line in out] == [b"a", b"b", b"b", b"d"]
    assert set(pool) == {"b", "d"} and pool.steps("b") == 2 and stats.expired == 1


def test_a_run_is_bounded_by_default(model):
    from stream_gru.tools.pipe import DEFAULT_MAX_STREAMS, PipeOptions

    assert PipeOptions().max_streams == DEFAULT_MAX_STREAMS == 1_000_000
    _, err, _, _ = _serve(model, b"a,1,2,3\nb,1,2,3\n", max_streams=1)
    assert len(err) == 1 and "over --max-streams 1" in err[0]


# -- the pipe: one number grammar -------------------------------------------------------
@pytest.mark.parametrize(
    "field, value",
    [("1", 1.0), ("-1.5", -1.5), ("+.5", 0.5), ("7.", 7.0), (" 2e-3 ", 0.002),
     ("3.4028235e38", 3.4028235e38), ("-3.4028235e38", -3.4028235e38), ("1E5", 1e5)],
)  # fmt: skip
def test_numbers_in_the_grammar(field, value):
    assert parse_number(field) == value


@pytest.mark.parametrize(
    "field, message",
    [
        ("1_000", "is not a number: '1_000' (ASCII digits only, no separators)"),
        ("\u0663", "is not a number: '\u0663' (ASCII digits only, no separators)"),
        ("\uff13", "is not a number: '\uff13' (ASCII digits only, no separators)"),
        ("1,5", "(a decimal comma? numbers need a decimal point)"),
        ("nan", "is nan, expected a finite number"),
        ("-Infinity", "is -Infinity, expected a finite number"),
        ("3.5e38", "is '3.5e38', which overflows float32 (largest 3.4028235e38)"),
        ("0x10", "is not a number: '0x10'"),
        ("1e", "is not a number: '1e'"),
        ("--1", "is not a number: '--1'"),
        ("", "is not a number: ''"),
    ],
)
def test_numbers_outside_the_grammar_are_refused_by_name(field, message):
    with pytest.raises(ValueError) as e:
        parse_number(field)
    assert message in str(e.value)


def test_float32s_largest_goes_through_the_pipe_as_step_accepts_it(model):
    out, err, _, _ = _serve(model, b"a,3.4028235e38,0,0\n")
    assert err == [] and len(out) == 1
    np.testing.assert_array_equal(
        np.array(out[0].split(b",")[1:], np.float32),
        model.stream().step(np.array([3.4028235e38, 0, 0], np.float32)),
    )


# -- the pipe: a user's CSV, as it is -----------------------------------------------------
def test_a_header_with_a_byte_order_mark_spaces_and_semicolons(model):
    data = "\ufeffsite; ax; ay; az\nP1; 1; 2; 3\n".encode()
    out, err, _, _ = _serve(model, data)
    assert err == [] and out[0] == b"site;walk;rest" and out[1].startswith(b"P1;")


def test_columns_name_the_header_with_header_auto(model):
    """--columns are what the header is recognized by, and read by name."""
    data = b"dev,e,d,c\nP1,3,2,1\n"
    out, err, _, _ = _serve(model, data, columns=("c", "d", "e"))
    want = model.stream().step([1, 2, 3])
    assert err == [] and out[0] == b"dev,walk,rest"
    np.testing.assert_array_equal(np.array(out[1].split(b",")[1:], np.float32), want)
    with pytest.raises(PipeError, match="not with --header no"):
        _serve(model, data, columns=("c", "d", "e"), header="no")


def test_a_quoted_key_cut_by_a_line_break_makes_no_stream(model):
    data = b'"PUMP\n03",1,2,3\nok,1,2,3\n'
    out, err, stats, pool = _serve(model, data)
    assert err == [
        "line 1: column 1: a quoted field is not closed",
        "line 2: column 1: a quote inside a field that does not start with one (a field "
        "with a quote, the delimiter or a line break is written in quotes)",
    ]
    assert list(pool) == ["ok"] and stats.streams == 1 and len(out) == 1


def test_output_fields_are_quoted_as_csv_quotes_them(model):
    out, _, _, _ = _serve(model, b'"a,b",1,2,3\n"say ""hi""",1,2,3\n', label=True)
    assert out[0].startswith(b'"a,b",') and out[1].startswith(b'"say ""hi""",')


# -- crafted pool files and snapshots -------------------------------------------------------
def _pool_file(model, **arrays):
    """A checksummed pool file of one stream 'k', arrays replaced as given."""
    spec = model.spec
    base = {
        **{
            f"state:{s.input}": np.zeros((1, *spec.state_shapes[s.input]), np.float32)
            for s in spec.states
        },
        "idle": np.zeros(1),
        "steps": np.zeros(1, np.int64),
    }
    base.update(arrays)
    return sg_snapshot.encode(b"POOL", spec.fingerprint, base, {"keys": [["s", "k"]]})


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"state:h0": np.full((1, 2, 8), 1e300)}, "stores state:h0 float64"),
        ({"steps": np.array([2**64 - 1], np.uint64)}, "stores steps uint64"),
        ({"steps": np.array([1e300])}, "stores steps float64"),
        ({"steps": np.array([2.7])}, "stores steps float64"),
        ({"steps": np.array([-1], np.int64)}, "step counts outside"),
        ({"idle": np.array([np.inf])}, "non-finite ['idle']"),
        ({"state:h0": np.full((1, 2, 8), np.nan, np.float32)}, "non-finite ['state:h0']"),
    ],
    ids=[
        "state-1e300-float64",
        "steps-2**64-1",
        "steps-1e300",
        "steps-2.7",
        "steps-negative",
        "idle-inf",
        "state-nan",
    ],
)
def test_crafted_pool_files_are_refused_by_what_the_pool_would_hold(model, arrays, message):
    with pytest.raises(sg.SnapshotError) as e:
        sg.StreamPool.from_bytes(model, _pool_file(model, **arrays))
    assert message in str(e.value)


def _stream_snapshot(model, steps):
    state = {s.input: np.zeros(model.spec.state_shapes[s.input], np.float32)
             for s in model.spec.states}  # fmt: skip
    return sg_snapshot.encode(b"STRM", model.spec.fingerprint, state, {"steps": steps})


def test_a_step_count_beyond_its_range_is_refused_and_costs_no_slot(model):
    blob = _stream_snapshot(model, 2**63)
    with pytest.raises(sg.SnapshotError, match=r"bad step count.*\[0, 9223372036854775807\]"):
        model.restore(blob)
    pool = model.pool()
    pool.open("k")
    capacity = pool.stats().capacity
    for i in range(1000):
        with pytest.raises(sg.SnapshotError):
            pool.restore(f"r{i}", blob)
    assert pool.stats().capacity == capacity and len(pool) == 1 and "r0" not in pool


def test_a_stream_at_the_largest_step_count_refuses_to_step(model, tmp_path):
    blob = _stream_snapshot(model, MAX_STEPS)
    stream = model.restore(blob)
    with pytest.raises(ValueError, match="the most a step count holds"):
        stream.step([1, 2, 3])
    with pytest.raises(ValueError, match="the most a step count holds"):
        stream.feed(np.ones((2, 3)))
    assert stream.steps == MAX_STEPS
    pool = model.pool()
    pool.open("fresh")
    pool.restore("old", blob)
    before = pool.state("fresh")
    with pytest.raises(ValueError, match=r"streams \['old'\] have run 9,223,372,036,854,775,807"):
        pool.step_batch(["fresh", "old"], np.ones((2, 3)))
    assert pool.steps("old") == MAX_STEPS and pool.steps("fresh") == 0  # nothing stepped
    np.testing.assert_array_equal(pool.state("fresh")["h0"], before["h0"])
    pool.save(tmp_path / "p.pool")  # its own save loads
    assert model.load_pool(tmp_path / "p.pool").steps("old") == MAX_STEPS
    pool.close("old")
    pool.step_batch(["fresh"], np.ones((1, 3)))  # the others step again
    assert pool.steps("fresh") == 1


def test_a_header_length_past_the_end_is_named_not_miscounted(model):
    blob = bytearray(_stream_snapshot(model, 0))
    blob[12:16] = (2**32 - 1).to_bytes(4, "little")  # the header length field
    body = bytes(blob[:-32])
    import hashlib

    crafted = body + hashlib.sha256(body).digest()
    with pytest.raises(sg.SnapshotError) as e:
        model.restore(crafted)
    assert "a header of 4,294,967,295 bytes" in str(e.value) and "-" not in str(e.value)


# -- files that never end, never come, or nest without end ----------------------------------
def test_metadata_nested_without_end_is_a_model_error(gru_model, tmp_path):
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(gru_model.onnx))
    entry = next(p for p in proto.metadata_props if p.key == "stream_gru")
    entry.value = "[" * 100_000 + "]" * 100_000
    path = tmp_path / "deep.onnx"
    onnx.save(proto, str(path))
    with pytest.raises(sg.ModelError, match="nested too deeply"):
        sg.load(path)


@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_devices_and_pipes_are_refused_at_once(model, tmp_path, kind):
    if kind == "device":
        path = Path("/dev/zero")
    else:
        path = tmp_path / "fifo"
        os.mkfifo(path)
    what = "a character device" if kind == "device" else "a named pipe (FIFO)"
    start = time.perf_counter()
    with pytest.raises(sg.ModelError, match=re.escape(f"is {what}, expected an .onnx model")):
        sg.load(path)
    with pytest.raises(sg.SnapshotError, match=re.escape(f"is {what}, expected a file written")):
        model.load_pool(path)
    assert time.perf_counter() - start < 5
    for args in (["info", path], ["run", model.path, "--input", path]):
        r = subprocess.run([sys.executable, "-m", "stream_gru.cli", *map(str, args)],
                           capture_output=True, text=True, timeout=60, cwd=ROOT)  # fmt: skip
        assert r.returncode == 1 and "Traceback" not in r.stderr and what in r.stderr


def test_the_command_line_never_shows_a_traceback(tmp_path):
    """A defect still ends in one line (STREAM_GRU_DEBUG=1 shows the traceback)."""
    code = (
        "import stream_gru.tools.cli.main as c\n"
        "def boom(args): raise RecursionError('deep')\n"
        "p = c.build_parser(); a = p.parse_args(['info', 'x.onnx']); a.func = boom\n"
        "raise SystemExit(c.run_guarded(lambda: a.func(a)))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "unexpected RecursionError: deep (a bug: please report it" in r.stderr


# -- arrays --------------------------------------------------------------------------------
def test_masked_arrays_are_refused_everywhere(model):
    masked = np.ma.array([1.0, 2.0, 3.0], mask=[0, 1, 0])
    stream, pool = model.stream(), model.pool()
    pool.open("a")
    calls = [
        lambda: stream.step(masked),
        lambda: stream.feed(np.ma.array(np.ones((2, 3)), mask=np.eye(2, 3))),
        lambda: pool.step({"a": masked}),  # a bad sample of a tick: ValueError naming it
        lambda: pool.step_batch(["a"], masked[None]),
        lambda: setattr(stream, "state", {"h0": np.ma.zeros((2, 8))}),
    ]
    for call in calls:
        with pytest.raises((TypeError, ValueError), match="masked array, whose mask would be"):
            call()
    assert "masked array" in pool.step_valid({"a": masked}).rejected["a"]
    assert stream.steps == 0 and pool.steps("a") == 0


def test_a_ragged_batch_is_named_and_counted(model):
    pool = model.pool()
    pool.open("a")
    pool.open("b")
    with pytest.raises(ValueError, match="X is ragged: row 0 has 3 values, row 1 has 2"):
        pool.step_batch(["a", "b"], [[1, 2, 3], [1, 2]])
    assert pool.stats().rejected_samples == 2 and pool.steps("a") == 0


def test_a_key_nested_without_end_is_refused(model):
    key: object = "k"
    for _ in range(100_000):
        key = (key,)
    with pytest.raises(TypeError, match="nest at most 16 deep"):
        model.pool().open(key)


# -- saving through a symbolic link -----------------------------------------------------------
def test_saving_through_a_symlink_writes_its_target(model, tmp_path):
    target = tmp_path / "real.pool"
    link = tmp_path / "current.pool"
    pool = model.pool()
    pool.open("a")
    pool.save(target)
    link.symlink_to(target)
    pool.open("b")
    pool.save(link)
    assert link.is_symlink() and link.resolve() == target
    assert sorted(model.load_pool(target)) == ["a", "b"]


def test_concurrent_saves_through_a_symlink_leave_a_whole_file(model, tmp_path):
    target = tmp_path / "real.pool"
    link = tmp_path / "link.pool"
    pool = model.pool()
    for i in range(200):
        pool.open(i)
    pool.save(target)
    link.symlink_to(target)
    threads = [threading.Thread(target=pool.save, args=(link,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(model.load_pool(link)) == 200 and link.is_symlink()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_json_manifest_helpers_are_not_needed_for_pool_files(model, tmp_path):
    """A pool file is self-checking: a manifest-like JSON is refused as such."""
    path = tmp_path / "x.pool"
    path.write_text(json.dumps({"format": 1, "shards": [{"id": 0, "file": "shard-0.pool"}]}))
    with pytest.raises(sg.SnapshotError, match="it looks like JSON text"):
        model.load_pool(path)


# -- relatives found by a second attack -----------------------------------------------------
def _edited_model(gru_model, tmp_path, edit):
    """A copy of the model with its metadata document edited by ``edit(meta)``."""
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(gru_model.onnx))
    entry = next(p for p in proto.metadata_props if p.key == "stream_gru")
    meta = json.loads(entry.value)
    edit(meta)
    entry.value = json.dumps(meta)
    path = tmp_path / "edited.onnx"
    onnx.save(proto, str(path))
    return path


def test_embedded_graphs_edited_with_their_sha256_are_refused(gru_model, tmp_path):
    """The fingerprint covers the main graph's weights; the embedded one-step graphs are
    checked against the main graph when a pool first needs them."""
    onnx = pytest.importorskip("onnx")
    import base64
    import hashlib

    from onnx import numpy_helper

    proto = onnx.load(str(gru_model.onnx))
    meta_entry = next(p for p in proto.metadata_props if p.key == "stream_gru")
    meta = json.loads(meta_entry.value)
    for key, field in (("stream_gru.step", "step_graph"), ("stream_gru.pool", "pool_graph")):
        entry = next(p for p in proto.metadata_props if p.key == key)
        graph = onnx.load_from_string(base64.b64decode(entry.value))
        for init in graph.graph.initializer:
            if init.name.startswith("w_h"):
                init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * -3, init.name))
        data = graph.SerializeToString()
        entry.value = base64.b64encode(data).decode()
        meta[field]["sha256"] = hashlib.sha256(data).hexdigest()
    meta_entry.value = json.dumps(meta)
    path = tmp_path / "evil.onnx"
    onnx.save(proto, str(path))
    model = sg.load(path)  # the main graph is honest: streams run
    assert model.spec.fingerprint == sg.load(gru_model.onnx).spec.fingerprint
    model.stream().step([1, 2, 3])
    for options in ({"graph": "step"}, {"state_on_device": True}):
        with pytest.raises(sg.ModelError, match="does not compute what the model's own graph"):
            model.pool(**options)
    assert model.pool(graph="sequence").graph == "sequence"


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("input_size", "3", "input_size must be an int >= 1, got '3'"),
        ("hidden_size", -8, "hidden_size must be an int >= 1, got -8"),
        ("horizon", 2.7, "horizon must be an int >= 0, got 2.7"),
        ("task", "banana", "task must be one of"),
        ("cell", ["gru"], "cell must be one of"),
        ("feature_names", "abc", "feature_names must be a list of strings"),
        ("feature_names", ["ax", "ax", "az"], "feature_names names ['ax'] more than once"),
        ("feature_names", ["a\n", "b", "c"], "feature_names holds a control character"),
        ("step_graph", 5, "step_graph must be an object"),
        ("sequence_column", "ax", "the sequence column 'ax' is also a feature"),
        ("normalization", {"feature_mean": [1.0]}, "normalization feature_mean has 1 values for 3"),
        ("normalization", {"feature_mean": ["x", 1, 2]}, "must be a list of finite numbers"),
    ],
)
def test_metadata_fields_of_the_wrong_type_or_size_are_a_model_error(
    gru_model, tmp_path, field, value, message
):
    path = _edited_model(gru_model, tmp_path, lambda meta: meta.update({field: value}))
    with pytest.raises(sg.ModelError) as e:
        sg.load(path)
    assert message in str(e.value)


@pytest.mark.parametrize("where", ["batch_axis", "time_axis", "state"])
def test_axes_of_the_wrong_type_are_refused(gru_model, tmp_path, where):
    def edit(meta):
        if where == "state":
            meta["io"]["states"][0]["batch_axis"] = "1"
        else:
            meta["io"][where] = 0.0

    with pytest.raises(sg.ModelError, match="must be an int or None"):
        sg.load(_edited_model(gru_model, tmp_path, edit))
    with pytest.raises(TypeError, match=r"ModelIO\.batch_axis must be an int or None, got str"):
        sg.ModelIO("x", "y", batch_axis="0")


def test_model_io_refuses_constants_over_data_or_state_and_pairs_named_twice(gru_model):
    pair = sg.StatePair("h0", "hn", 1)
    for constants in ({"x": np.zeros((1, 1, 3), np.float32)}, {"h0": np.zeros((2, 1, 8))}):
        with pytest.raises(ValueError, match="which carry the data or a state"):
            sg.ModelIO("x", "y", 0, 1, states=(pair,), constants=constants)
    with pytest.raises(ValueError, match=r"ModelIO names \['h0', 'hn'\] more than once"):
        sg.ModelIO("x", "y", 0, 1, states=(pair, pair))


def test_pipe_columns_and_key_and_delimiter_that_would_misread(model):
    data = b"site,ax,ay,az\nP1,1,2,3\n"
    with pytest.raises(PipeError, match=r"--columns names \['ax'\] more than once"):
        _serve(model, data, columns=("ax", "ax", "ay"))
    with pytest.raises(PipeError, match="the key column 'ax' is also a feature"):
        _serve(model, data, key_column="ax")
    for bad in (".", "-", "+", "e", "E", "7", " ", '"', "\x00"):
        with pytest.raises(PipeError, match="the delimiter must be one character"):
            _serve(model, data, delimiter=bad)


def test_pipe_keys_numbers_and_line_ends_stay_bounded_and_named(model):
    out, err, _, _ = _serve(model, b"k" * 2000 + b",1,2,3\nok,1,2,3\n")
    assert err == ["line 1: the key '" + "k" * 40 + "...' (column 1) has 2,000 bytes, over "
                   "--max-key-bytes 1,024"]  # fmt: skip
    assert len(out) == 1
    _, err, _, _ = _serve(model, b"a,1" + b"0" * 100_000 + b",2,3\n")
    assert len(err[0]) < 200 and "overflows float32" in err[0]
    _, err, _, _ = _serve(model, b"a,1,2,3\rb,1,2,3\n")
    assert "a carriage return inside the line: lines end with \\n, not \\r alone" in err[0]


def test_odd_arguments_get_readable_errors(model):
    pool = model.pool()
    with pytest.raises(TypeError, match="samples must be a mapping") as e:
        pool.step(None)
    assert e.value.__context__ is None or "has no len" not in str(e.value.__context__)
    for odd in ("5", None, True, np.array([1.0])):
        with pytest.raises(TypeError, match="idle_seconds must be a number of seconds"):
            pool.expire(odd)
    with pytest.raises(ValueError, match="idle_seconds must be a non-negative number"):
        pool.expire(float("nan"))
    assert pool.expire(float("inf")) == {}
    r = subprocess.run(
        [sys.executable, "-m", "stream_gru.cli", "run", str(model.path), "--max-line-bytes", "5"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 2 and "--max-line-bytes: expected an integer >= 16, got 5" in r.stderr
