"""The catalogue of bad input: every way in, attacked, and nothing lost.

Each case runs one bad call against a "world" of live streams (three ``Stream``s and a
pool of five, all with history) and asserts three things: the exact error type, a
message naming the bad value (and, where there is one, the expected one), and every
stream's state and step count unchanged afterwards. docs/errors.md lists the
cases by id; ``test_the_docs_list_every_case`` keeps the two in step.

tests/core/test_errors.py holds the exhaustive variants (every byte of a snapshot flipped, every
model-file edit); tests/fleet/test_fuzz.py the random ones.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import stream_gru as sg
from stream_gru.agreement import assert_agree
from stream_gru.tools.pipe import serve_lines

ROOT = Path(__file__).resolve().parents[1]
STREAMS = ("s1", "s2", "s3")
POOL_KEYS = ("p1", "p2", "p3", 4, ("site", 5))


@dataclass
class World:
    model: sg.StreamingModel
    twin: sg.StreamingModel  # same shapes, other weights
    streams: dict[str, sg.Stream]
    pool: sg.StreamPool
    pool_file: Path
    model_file: Path
    tmp: Path

    def picture(self) -> dict[Any, tuple[int, dict[str, np.ndarray]]]:
        """Every stream's step count and a copy of its state."""
        seen: dict[Any, tuple[int, dict[str, np.ndarray]]] = {
            ("stream", k): (s.steps, s.state) for k, s in self.streams.items()
        }
        seen.update({("pool", k): (self.pool.steps(k), self.pool.state(k)) for k in self.pool})
        return seen


@pytest.fixture
def world(gru_model, gru_twin, tmp_path):
    model, twin = sg.load(gru_model.onnx), sg.load(gru_twin.onnx)
    rng = np.random.default_rng(7)
    streams = {k: model.stream() for k in STREAMS}
    for s in streams.values():
        s.feed(rng.standard_normal((int(rng.integers(3, 12)), 3)).astype(np.float32))
    pool = model.pool()
    for k in POOL_KEYS:
        pool.open(k)
    for _ in range(4):
        pool.step_batch(list(POOL_KEYS), rng.standard_normal((5, 3)).astype(np.float32))
    pool_file = tmp_path / "fleet.pool"
    pool.save(pool_file)
    return World(model, twin, streams, pool, pool_file, gru_model.onnx, tmp_path)


class LineRejected(Exception):
    """What ``run`` wrote to its error stream, raised so pipe cases read like the rest."""


def _pipe(w: World, text: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    serve_lines(w.model, io.StringIO(text), out, err, pool=w.pool)
    if err.getvalue():
        raise LineRejected(err.getvalue().strip())


def _write(w: World, name: str, data: bytes) -> Path:
    path = w.tmp / name
    path.write_bytes(data)
    return path


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1 :]


def _edited_model(w: World, change: Callable[[Any], None]) -> Path:
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(w.model_file))
    change(proto)
    out = w.tmp / "edited.onnx"
    onnx.save(proto, str(out))
    return out


def _metadata_edit(key: str, value: Any) -> Callable[[Any], None]:
    def change(proto: Any) -> None:
        entry = next(p for p in proto.metadata_props if p.key == "stream_gru")
        meta = json.loads(entry.value)
        meta[key] = value
        entry.value = json.dumps(meta)

    return change


def _foreign_model(w: World) -> Path:
    """An ONNX model made elsewhere: a plain Tanh RNN cell, no stream-gru metadata."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "h"], ["s"]), helper.make_node("Tanh", ["s"], ["h_out"])],
        "foreign_cell",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4]),
            helper.make_tensor_value_info("h", TensorProto.FLOAT, ["N", 4]),
        ],
        [helper.make_tensor_value_info("h_out", TensorProto.FLOAT, ["N", 4])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    proto.ir_version = 8
    path = w.tmp / "foreign.onnx"
    onnx.save(proto, str(path))
    return path


def _perturb_weights(proto: Any) -> None:
    from onnx import numpy_helper

    init = next(i for i in proto.graph.initializer if i.name.startswith("onnx::GRU"))
    arr = numpy_helper.to_array(init).copy()
    arr.flat[0] += 0.5
    init.CopyFrom(numpy_helper.from_array(arr, init.name))


def _set_state(s: sg.Stream, value: Any) -> None:
    s.state = value


def _truncated_models(w: World) -> None:
    data = w.model_file.read_bytes()
    for n in (1, 64, len(data) // 2, len(data) - 1):
        path = _write(w, f"cut{n}.onnx", data[:n])
        with pytest.raises(sg.ModelError, match=re.escape(str(path))):
            sg.load(path)
    sg.load(path)  # the last one again, so the case's own check has an error to see


@dataclass(frozen=True)
class Case:
    id: str
    run: Callable[[World], Any]
    error: type[BaseException]
    message: str  # a regex the message must match: it names the bad value


F32 = np.float32
S1 = "s1"


def _s(w: World) -> sg.Stream:
    return w.streams[S1]


def _late_nan() -> np.ndarray:
    chunk = np.ones((50, 3), F32)
    chunk[37, 2] = np.nan
    return chunk


CASES = [
    # -- Stream.step ---------------------------------------------------------------------
    Case("step-wrong-length", lambda w: _s(w).step(np.zeros(4, F32)), ValueError,
         r"x has shape \(4,\), expected \(3\)"),
    Case("step-a-chunk", lambda w: _s(w).step(np.zeros((2, 3), F32)), ValueError,
         r"shape \(2, 3\).*use feed\(\)"),
    Case("step-nan", lambda w: _s(w).step([1.0, np.nan, 0.0]), ValueError,
         r"found nan at feature 1 \('ay'\)"),
    Case("step-inf", lambda w: _s(w).step([np.inf, 0.0, 0.0]), ValueError,
         r"found inf at feature 0 \('ax'\)"),
    Case("step-overflows-float32", lambda w: _s(w).step(np.array([1e39, 0.0, 0.0])), ValueError,
         r"must fit float32, found 1e\+39 at feature 0 \(.ax.\), which overflows"),
    Case("step-bool", lambda w: _s(w).step(np.array([True, False, True])), TypeError,
         r"dtype bool"),
    Case("step-text", lambda w: _s(w).step("1,2,3"), TypeError, r"got str"),
    Case("step-none", lambda w: _s(w).step(None), TypeError, r"dtype object"),
    # -- Stream.feed ---------------------------------------------------------------------
    Case("feed-wrong-width", lambda w: _s(w).feed(np.zeros((5, 4))), ValueError,
         r"X has shape \(5, 4\), expected \(step, 3\)"),
    Case("feed-3d", lambda w: _s(w).feed(np.zeros((2, 5, 3))), ValueError,
         r"X has shape \(2, 5, 3\), expected \(step, 3\)"),
    Case("feed-nan-at-step-37", lambda w: _s(w).feed(_late_nan()), ValueError,
         r"nan at step 37, feature 2 \('az'\)"),
    Case("feed-complex", lambda w: _s(w).feed(np.zeros((5, 3), complex)), TypeError,
         r"dtype complex128"),
    # -- Stream.state = ... --------------------------------------------------------------
    Case("state-missing-key", lambda w: _set_state(_s(w), {}), ValueError,
         r"state has keys \[\], expected \['h0'\]"),
    Case("state-extra-key",
         lambda w: _set_state(_s(w), {"h0": np.zeros((2, 8)), "c0": np.zeros((2, 8))}),
         ValueError, r"keys \['c0', 'h0'\], expected \['h0'\]"),
    Case("state-wrong-shape", lambda w: _set_state(_s(w), {"h0": np.zeros((2, 1, 8))}),
         ValueError, r"state 'h0' has shape \(2, 1, 8\), expected \(2, 8\)"),
    Case("state-nan", lambda w: _set_state(_s(w), {"h0": np.full((2, 8), np.nan)}), ValueError,
         r"state 'h0' must be finite.*nan"),
    Case("state-not-a-mapping", lambda w: _set_state(_s(w), np.zeros((2, 8))), TypeError,
         r"state must be a mapping.*ndarray"),
    # -- snapshots -----------------------------------------------------------------------
    Case("snapshot-other-model-same-shapes", lambda w: w.model.restore(w.twin.stream().snapshot()),
         sg.SnapshotError, r"made by another model"),
    Case("snapshot-one-byte-flipped", lambda w: w.model.restore(_flip(_s(w).snapshot(), 40)),
         sg.SnapshotError, r"checksum|corrupt"),
    Case("snapshot-truncated", lambda w: w.model.restore(_s(w).snapshot()[:-9]),
         sg.SnapshotError, r"truncated|corrupt|length"),
    Case("snapshot-not-bytes", lambda w: w.model.restore("not bytes"), TypeError,
         r"bytes.*got str|str.*expected bytes"),
    Case("snapshot-into-pool-other-model",
         lambda w: w.pool.restore("new", w.twin.stream().snapshot()), sg.SnapshotError,
         r"made by another model"),
    # -- pool ticks ----------------------------------------------------------------------
    Case("pool-unknown-key", lambda w: w.pool.step({"p1": [0, 0, 0], "ghost": [1, 2, 3]}),
         KeyError, r"streams not open in this pool: \['ghost'\]"),
    Case("pool-sample-wrong-length", lambda w: w.pool.step({"p1": [0, 0, 0], "p2": [1, 2]}),
         ValueError, r"'p2'.*shape \(2,\)"),
    Case("pool-sample-nan", lambda w: w.pool.step({"p1": [0, 0, 0], 4: [0, np.nan, 0]}),
         ValueError, r"4.*nan"),
    Case("pool-key-twice", lambda w: w.pool.step_batch(["p1", "p1"], np.zeros((2, 3), F32)),
         ValueError, r"keys named more than once in one tick: \['p1'\]"),
    Case("pool-batch-wrong-shape", lambda w: w.pool.step_batch(["p1", "p2"], np.zeros((3, 3))),
         ValueError, r"X has 3 rows for 2 keys"),
    Case("pool-float-key-while-its-int-is-open", lambda w: w.pool.step({4.0: [0, 0, 0]}),
         TypeError, r"refused type.*float 4\.0"),  # 4.0 == 4, never stream 4
    Case("pool-key-of-refused-type", lambda w: w.pool.open(1.5), TypeError,
         r"stream key must be a str, int \(numpy integers too\), bytes.*got float 1\.5"),
    Case("pool-open-an-open-key", lambda w: w.pool.open("p1"), ValueError,
         r"'p1'.*already open"),
    Case("pool-restore-onto-an-open-key",
         lambda w: w.pool.restore("p2", w.model.stream().snapshot()), ValueError,
         r"stream 'p2' is already open"),
    Case("pool-expire-negative", lambda w: w.pool.expire(-1.0), ValueError,
         r"idle_seconds must be a non-negative number, got -1\.0"),
    Case("pool-close-unknown", lambda w: w.pool.close("ghost"), KeyError, r"'ghost'"),
    # -- pool files ----------------------------------------------------------------------
    Case("pool-file-one-byte-flipped",
         lambda w: sg.StreamPool.load(
             w.model, _write(w, "flip.pool", _flip(w.pool_file.read_bytes(), 60))),
         sg.SnapshotError, r"checksum|corrupt"),
    Case("pool-file-truncated",
         lambda w: sg.StreamPool.load(
             w.model, _write(w, "cut.pool", w.pool_file.read_bytes()[:100])),
         sg.SnapshotError, r"truncated|corrupt|length"),
    Case("pool-file-empty", lambda w: sg.StreamPool.load(w.model, _write(w, "e.pool", b"")),
         sg.SnapshotError, r"empty|truncated|0 bytes"),
    Case("pool-file-other-model", lambda w: sg.StreamPool.load(w.twin, w.pool_file),
         sg.SnapshotError, r"made by another model"),
    Case("pool-file-is-a-model", lambda w: sg.StreamPool.load(w.model, w.model_file),
         sg.SnapshotError, r"not a stream-gru|magic|format"),
    Case("pool-file-is-a-directory", lambda w: sg.StreamPool.load(w.model, w.tmp),
         sg.SnapshotError, r"is a directory"),
    # -- model files ---------------------------------------------------------------------
    Case("model-empty", lambda w: sg.load(_write(w, "e.onnx", b"")), sg.ModelError,
         r"e\.onnx is empty \(0 bytes\)"),
    Case("model-random-bytes",
         lambda w: sg.load(_write(w, "r.onnx", np.random.default_rng(0).bytes(4096))),
         sg.ModelError, r"r\.onnx.*(not an ONNX model|cannot load)"),
    Case("model-truncated-at-4-lengths", _truncated_models, sg.ModelError, r"cut\d+\.onnx"),
    Case("model-a-directory", lambda w: sg.load(w.tmp), sg.ModelError, r"is a directory"),
    Case("model-from-elsewhere", lambda w: sg.load(_foreign_model(w)), sg.ModelError,
         r"no stream-gru metadata.*x: tensor\(float\)\[N, 4\].*h_out.*ModelIO"),
    Case("model-metadata-disagrees-with-graph",
         lambda w: sg.load(_edited_model(w, _metadata_edit("hidden_size", 16))), sg.ModelError,
         r"metadata says num_layers 2, hidden_size 16"),
    Case("model-weights-changed-after-export",
         lambda w: sg.load(_edited_model(w, _perturb_weights)), sg.ModelError,
         r"changed after export"),
    Case("model-io-names-a-missing-input",
         lambda w: sg.load(_foreign_model(w), io=sg.ModelIO(input="audio", output="h_out")),
         sg.ModelError, r"'audio'.*not in the graph|not in the graph.*'audio'"),
    # -- the `run` pipe ------------------------------------------------------------------
    Case("pipe-not-a-number", lambda w: _pipe(w, "p1,1,x,3\n"), LineRejected,
         r"line 1: feature 'ay' \(column 3\) is not a number: 'x'"),
    Case("pipe-too-few-fields", lambda w: _pipe(w, "p1,1,2\n"), LineRejected,
         r"line 1: expected a key and 3 features, got 2 feature fields"),
    Case("pipe-nan", lambda w: _pipe(w, "p2,1,nan,3\n"), LineRejected,
         r"line 1: feature 'ay' \(column 3\) is nan"),
    Case("pipe-empty-key", lambda w: _pipe(w, ",1,2,3\n"), LineRejected, r"line 1: the key"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_raises_names_the_value_and_changes_nothing(world, case):
    before = world.picture()
    with pytest.raises(case.error, match=case.message):
        case.run(world)
    after = world.picture()
    assert after.keys() == before.keys()
    for key, (steps, state) in before.items():
        assert after[key][0] == steps, key
        for name, value in state.items():
            np.testing.assert_array_equal(after[key][1][name], value, err_msg=str(key))


def test_the_catalogue_is_big_and_its_ids_unique():
    assert len(CASES) >= 25
    assert len({c.id for c in CASES}) == len(CASES)


def test_the_docs_list_every_case():
    listed = (ROOT / "docs" / "errors.md").read_text()
    missing = [c.id for c in CASES if f"`{c.id}`" not in listed]
    assert not missing, f"docs/errors.md does not list these bad-input cases: {missing}"


def test_a_good_call_after_every_bad_one_still_matches_a_clean_twin(world):
    """The catalogue checks states; this checks the streams still compute: after all
    the bad calls at once, each stream's next output equals that of its own restored
    snapshot taken before them."""
    twins = {k: world.model.restore(s.snapshot()) for k, s in world.streams.items()}
    pool_twins = {k: world.model.restore(world.pool.snapshot(k)) for k in world.pool}
    for case in CASES:
        with pytest.raises(case.error):
            case.run(world)
    x = np.array([0.3, -1.0, 2.0], F32)
    for k, s in world.streams.items():
        np.testing.assert_array_equal(s.step(x), twins[k].step(x))
    got = world.pool.step_batch(list(pool_twins), np.tile(x, (len(pool_twins), 1)))
    expected = np.stack([t.step(x) for t in pool_twins.values()])
    assert_agree(got, expected)  # the pool runs the one-step graph: by the rule
