"""Random attacks and random schedules (hypothesis).

- A snapshot or pool file, corrupted or truncated at random, always raises
  ``SnapshotError``: never another exception, a crash, or a silently wrong state.
- Random valid schedules agree: a step loop, one ``feed``, random chunks, and a pool
  ticking the stream among others give the same outputs and the same final state.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import stream_gru as sg  # noqa: E402

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


def test_corrupted_pool_files_always_raise_snapshot_error(model, pool_file_bytes):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bad.pool"

        @FUZZ
        @given(blob=corruptions(pool_file_bytes))
        def check(blob: bytes) -> None:
            path.write_bytes(blob)
            if blob == pool_file_bytes:
                assert len(sg.StreamPool.load(model, path)) == 4
                return
            with pytest.raises(sg.SnapshotError):
                sg.StreamPool.load(model, path)

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
    tolerance = 0.0 if graph == "sequence" else 1e-5

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
        np.testing.assert_allclose(np.stack(pooled), fed, rtol=0, atol=tolerance)
        np.testing.assert_allclose(pool.state("me")["h0"], whole.state["h0"], atol=tolerance)
        assert pool.steps("me") == whole.steps == steps

    check()
