"""Random attacks and random schedules (hypothesis).

- A snapshot or pool file, corrupted or truncated at random, always raises
  ``SnapshotError``: never another exception, a crash, or a silently wrong state.
- Random valid schedules agree: a step loop, one ``feed``, random chunks, and a pool
  ticking the stream among others give the same outputs and the same final state.
"""

from __future__ import annotations

import hashlib
import json
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import stream_gru as sg  # noqa: E402
from stream_gru.agreement import assert_agree  # noqa: E402

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def model(gru_model):
    return sg.load(gru_model.onnx)


@pytest.fixture(scope="module")
def snapshot(model):
    s = model.stream()
    s.feed(np.random.default_rng(3).standard_normal((17, 3)).astype(np.float32))
    return s.snapshot()


@pytest.fixture(scope="module")
def pool_file_bytes(model):
    pool = model.pool()
    for k in ("a", 7, b"raw", ("site", 2)):
        pool.open(k)
    pool.step_batch(list(pool), np.ones((4, 3), np.float32))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.pool"
        pool.save(path)
        return path.read_bytes()


@st.composite
def corruptions(draw, data: bytes) -> bytes:
    """``data`` after 1-4 random edits: a flipped byte, a cut, a deleted or inserted run."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "delete", "insert"]))
        at = draw(st.integers(0, max(len(out) - 1, 0)))
        if kind == "flip" and out:
            out[at] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del out[at:]
        elif kind == "delete":
            del out[at : at + draw(st.integers(1, 16))]
        else:
            out[at:at] = draw(st.binary(min_size=1, max_size=16))
    return bytes(out)


def test_corrupted_snapshots_always_raise_snapshot_error(model, snapshot):
    @FUZZ
    @given(blob=corruptions(snapshot))
    def check(blob: bytes) -> None:
        if blob == snapshot:  # the edits cancelled out: it must restore as it was
            assert model.restore(blob).state.keys() == model.stream().state.keys()
            return
        with pytest.raises(sg.SnapshotError):
            model.restore(blob)

    check()


@pytest.fixture(scope="module")
def load_pool_file(model, tmp_path_factory):
    """``StreamPool.load`` of a file holding ``blob``: pool files go through the file path."""
    path = tmp_path_factory.mktemp("fuzz") / "f.pool"

    def load(blob: bytes) -> sg.StreamPool:
        path.write_bytes(blob)
        return sg.StreamPool.load(model, path)

    return load


def test_corrupted_pool_files_always_raise_snapshot_error(pool_file_bytes, load_pool_file):
    @FUZZ
    @given(blob=corruptions(pool_file_bytes))
    def check(blob: bytes) -> None:
        if blob == pool_file_bytes:
            assert len(load_pool_file(blob)) == 4
            return
        with pytest.raises(sg.SnapshotError):
            load_pool_file(blob)

    check()


def test_random_bytes_never_pass_as_a_snapshot(model):
    @FUZZ
    @given(blob=st.binary(max_size=512))
    def check(blob: bytes) -> None:
        with pytest.raises(sg.SnapshotError):
            model.restore(blob)

    check()


@st.composite
def schedules(draw):
    """A sequence, a random way to cut it into chunks, and a pool's other traffic."""
    steps = draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**32 - 1))
    cuts = sorted(draw(st.sets(st.integers(1, max(steps - 1, 1)), max_size=8)) - {steps})
    others = draw(st.integers(0, 6))
    return steps, seed, cuts, others


@pytest.mark.parametrize("graph", ["sequence", "step"])
def test_random_schedules_agree(model, graph):
    exact = graph == "sequence"  # the streams' own graph: bit for bit; else by the rule

    @settings(max_examples=100, deadline=None)
    @given(schedule=schedules())
    def check(schedule) -> None:
        steps, seed, cuts, others = schedule
        rng = np.random.default_rng(seed)
        xs = rng.standard_normal((steps, 3)).astype(np.float32)

        looped = model.stream()
        by_step = np.stack([looped.step(x) for x in xs])
        whole = model.stream()
        fed = whole.feed(xs)
        chunked = model.stream()
        by_chunks = np.concatenate([chunked.feed(c) for c in np.split(xs, cuts)])
        np.testing.assert_array_equal(by_step, fed)
        np.testing.assert_array_equal(by_chunks, fed)
        for s in (looped, chunked):
            np.testing.assert_array_equal(s.state["h0"], whole.state["h0"])

        pool = model.pool(graph=graph)
        pool.open("me")
        for i in range(others):
            pool.open(i)
        pooled = []
        for t, x in enumerate(xs):
            busy = [i for i in range(others) if rng.random() < 0.5 or t == 0]
            keys = ["me", *busy]
            batch = np.vstack([x, rng.standard_normal((len(busy), 3)).astype(np.float32)])
            pooled.append(pool.step_batch(keys, batch)[0])
        compare = np.testing.assert_array_equal if exact else assert_agree
        compare(np.stack(pooled), fed)
        compare(pool.state("me")["h0"], whole.state["h0"])
        assert pool.steps("me") == whole.steps == steps

    check()


# -- structure-aware: edits behind a recomputed checksum -----------------------------------
_PREFIX = struct.Struct("<4s4sII")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=4),
    max_leaves=10,
)  # fmt: skip


def _split(blob: bytes):
    magic, kind, version, n = _PREFIX.unpack_from(blob)
    header = json.loads(blob[_PREFIX.size : _PREFIX.size + n])
    return (magic, kind, version), header, blob[_PREFIX.size + n : -32]


def _join(prefix, header, payload: bytes) -> bytes:
    text = json.dumps(header).encode()
    body = _PREFIX.pack(*prefix, len(text)) + text + payload
    return body + hashlib.sha256(body).digest()


def _paths(node, path=()):
    yield path
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*path, i))


def _near(old):
    """Values close to ``old``: where parsers break (a dtype one letter off, a shape of
    1e60, one entry short)."""
    if isinstance(old, bool) or old is None:
        return st.just(not old)
    if isinstance(old, int):
        return st.sampled_from([-old, -1, 0, old + 1, old * 10**60, 2**63, float(old), str(old)])
    if isinstance(old, str):
        return st.builds(
            lambda i, c: old[:i] + c + old[i + 1 :], st.integers(0, len(old)), st.text(max_size=2)
        )
    if isinstance(old, list):
        return st.sampled_from([old[:-1], old + old[:1], [], [old]])
    return st.just({})


@st.composite
def crafted(draw, blob: bytes) -> bytes:
    """``blob`` with a header field replaced by a random JSON value (or the payload
    cut or flipped), and a valid checksum: only the parser can catch it."""
    prefix, header, payload = _split(blob)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(_paths(header))[1:] or [("extra",)]))
        node = header
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = draw(json_values | _near(node[path[-1]]))  # paths read afresh
    if draw(st.booleans()):
        at = draw(st.integers(0, max(len(payload) - 1, 0)))
        payload = payload[:at] + bytes([draw(st.integers(0, 255))]) + payload[at + 1 :]
    return _join(prefix, header, payload)


CRAFTED = settings(FUZZ, max_examples=600)


def test_crafted_snapshots_raise_snapshot_error_or_restore_a_sane_state(model, snapshot):
    @CRAFTED
    @given(blob=crafted(snapshot))
    def check(blob: bytes) -> None:
        try:
            s = model.restore(blob)
        except sg.SnapshotError:
            return
        assert s.steps >= 0 and all(np.isfinite(v).all() for v in s.state.values())

    check()


def test_crafted_pool_files_raise_snapshot_error_or_load_a_sane_pool(
    pool_file_bytes, load_pool_file
):
    @CRAFTED
    @given(blob=crafted(pool_file_bytes))
    def check(blob: bytes) -> None:
        try:
            pool = load_pool_file(blob)
        except sg.SnapshotError:
            return
        for k in pool:
            assert pool.steps(k) >= 0
            assert all(np.isfinite(v).all() for v in pool.state(k).values())

    check()
