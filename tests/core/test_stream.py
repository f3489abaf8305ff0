"""Streaming exactness: step, feed, chunkings, reset, snapshots, against plain onnxruntime
and PyTorch's committed numbers."""

from __future__ import annotations

import itertools
import os
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stream_gru as sg
from stream_gru.agreement import assert_agree


def _inputs(rng: np.random.Generator, n: int, size: int = 3) -> np.ndarray:
    return (rng.standard_normal((n, size)) * 2 + 1).astype(np.float32)


def _full_sequence(model: sg.StreamingModel, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """One plain onnxruntime call on the whole sequence from the zero state."""
    feeds = {"x": x[None]}
    for pair in model.spec.states:
        feeds[pair.input] = np.zeros((2, 1, 8), np.float32)
    outs = model.session.run(None, feeds)
    return outs[0][0], [o[:, 0] for o in outs[1:]]


def test_step_feed_and_full_sequence_agree_bit_for_bit(any_model, rng):
    model = sg.load(any_model.onnx)
    x = _inputs(rng, 300)
    s1 = model.stream()
    stepped = np.stack([s1.step(xi) for xi in x])
    s2 = model.stream()
    fed = s2.feed(x)
    full, full_states = _full_sequence(model, x)
    assert stepped.shape == (300, 2) and stepped.dtype == np.float32
    np.testing.assert_array_equal(stepped, fed)
    np.testing.assert_array_equal(fed, full)
    for pair, ref in zip(model.spec.states, full_states, strict=True):
        np.testing.assert_array_equal(s1.state[pair.input], ref)
        np.testing.assert_array_equal(s2.state[pair.input], ref)
    assert s1.steps == s2.steps == 300


def test_every_chunking_of_a_short_sequence(gru_model, rng):
    model = sg.load(gru_model.onnx)
    x = _inputs(rng, 8)
    ref = model.stream().feed(x)
    count = 0
    for mask in itertools.product([False, True], repeat=7):  # all 128 ways to cut 8 steps
        cuts = [i + 1 for i, cut in enumerate(mask) if cut]
        s = model.stream()
        got = np.concatenate([s.feed(c) for c in np.split(x, cuts)])
        np.testing.assert_array_equal(got, ref)
        count += 1
    assert count == 128


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(0, 120), max_size=30), data=st.data())
def test_random_chunkings_and_step_mixes(gru_model, cuts, data):
    model = sg.load(gru_model.onnx)
    x = _inputs(np.random.default_rng(7), 120)
    ref = model.stream().feed(x)
    s = model.stream()
    pieces = []
    for chunk in np.split(x, sorted(set(cuts))):
        if len(chunk) and data.draw(st.booleans()):
            pieces.extend(s.step(c)[None] for c in chunk)  # single steps
        else:
            pieces.append(s.feed(chunk))  # empty chunks are allowed
    np.testing.assert_array_equal(np.concatenate(pieces), ref)


def test_streaming_equals_pytorchs_committed_numbers(any_model):
    """2,000 chained steps against PyTorch float64 (``tests/models/NAME.reference.npz``,
    written by ``tests/models/build.py``; ``tests/export`` checks it against a live
    PyTorch run), by the agreement rule, with no torch here. A regressor's outputs are
    compared before the target de-normalization, where they are near 1, so the rule's
    rtol cannot hide a difference behind the target's scale."""
    ref = np.load(any_model.onnx.with_suffix(".reference.npz"))
    model = sg.load(any_model.onnx)
    norm = model.spec.normalization
    mean = np.array(norm.get("target_mean") or 0.0)
    std = np.array(norm.get("target_std") or 1.0)
    stepped, chunked = model.stream(), model.stream()
    paths = {
        "step": np.stack([stepped.step(xi) for xi in ref["x"]]),
        "feed in 7 chunks": np.concatenate([chunked.feed(c) for c in np.array_split(ref["x"], 7)]),
    }
    for path, ys in paths.items():
        assert_agree((ys - mean) / std, (ref["y"] - mean) / std, what=f"outputs ({path})")
    for pair in model.spec.states:
        for s in (stepped, chunked):
            assert_agree(s.state[pair.input], ref[f"state_{pair.input}"], what=pair.input)


def test_classification_outputs_are_probabilities(gru_model, rng):
    y = sg.load(gru_model.onnx).stream().feed(_inputs(rng, 50))
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)
    assert (y >= 0).all()


def test_reset_equals_a_fresh_stream(any_model, rng):
    model = sg.load(any_model.onnx)
    x = _inputs(rng, 40)
    s = model.stream()
    s.feed(x[:25])
    s.reset()
    assert s.steps == 0
    np.testing.assert_array_equal(s.feed(x), model.stream().feed(x))
    for k, v in model.initial_state().items():
        assert not v.any() and v.shape == model.spec.state_shapes[k]


def test_snapshot_restore_continues_bit_exact(any_model, rng):
    model = sg.load(any_model.onnx)
    x = _inputs(rng, 60)
    s = model.stream()
    s.feed(x[:30])
    blob = s.snapshot()
    assert isinstance(blob, bytes)
    rest = s.feed(x[30:])
    # in this model object, and in a freshly loaded one (as after a restart)
    for m in (model, sg.load(any_model.onnx)):
        r = m.restore(blob)
        assert r.steps == 30
        np.testing.assert_array_equal(r.feed(x[30:]), rest)


def test_state_is_a_copy_and_can_be_set(gru_model, rng):
    model = sg.load(gru_model.onnx)
    x = _inputs(rng, 20)
    a = model.stream()
    a.feed(x[:10])
    st_a = a.state
    assert set(st_a) == {"h0"} and st_a["h0"].shape == (2, 8)
    st_a["h0"][:] = 99.0  # mutating the copy changes nothing
    b = model.stream()
    b.state = a.state
    np.testing.assert_array_equal(b.feed(x[10:]), a.feed(x[10:]))
    c = model.stream()
    c.state = {"h0": np.zeros((2, 8), dtype=np.float64)}  # float64 accepted, converted
    np.testing.assert_array_equal(c.feed(x), model.stream().feed(x))


def test_float64_and_int_inputs_are_converted(gru_model):
    model = sg.load(gru_model.onnx)
    x64 = np.array([0.5, -1.25, 3.0])
    ints = [1, 2, 3]
    assert np.array_equal(model.stream().step(x64), model.stream().step(x64.astype(np.float32)))
    assert np.array_equal(model.stream().step(ints), model.stream().step(np.float32(ints)))
    assert np.array_equal(model.stream().step(np.int64(ints)), model.stream().step(ints))


def test_spec_and_provider(gru_model, lstm_model):
    model = sg.load(gru_model.onnx)
    spec = model.spec
    assert (spec.input_size, spec.hidden_size, spec.num_layers, spec.output_size) == (3, 8, 2, 2)
    assert spec.cell == "gru" and spec.task == "classification"
    assert spec.feature_names == ("ax", "ay", "az") and spec.output_names == ("walk", "rest")
    assert spec.states == (sg.StatePair("h0", "hn", batch_axis=1),)
    assert len(spec.fingerprint) == 64
    assert model.provider == "CPUExecutionProvider"
    assert "GRU classification" in spec.describe()
    lstm = sg.load(lstm_model.onnx).spec
    assert [p.input for p in lstm.states] == ["h0", "c0"]
    assert lstm.normalization["target_mean"] == (100.0, -5.0)
    assert lstm.fingerprint != spec.fingerprint


def test_provider_choices(gru_model):
    import onnxruntime as ort

    assert sg.load(gru_model.onnx, provider="cpu").provider == "CPUExecutionProvider"
    auto = sg.load(gru_model.onnx, provider="auto")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert auto.provider == "CPUExecutionProvider"
        with pytest.raises(
            RuntimeError, match=r"CUDAExecutionProvider.*onnxruntime-gpu|stream-gru\[gpu\]"
        ):
            sg.load(gru_model.onnx, provider="cuda")
    with pytest.raises(ValueError, match="provider must be one of"):
        sg.load(gru_model.onnx, provider="tpu")
    with pytest.raises(ValueError, match="threads"):
        sg.load(gru_model.onnx, threads=-1)


def test_cuda_matches_cpu(gru_model, rng):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("no CUDA execution provider here")
    gpu = sg.load(gru_model.onnx, provider="cuda")
    assert gpu.provider == "CUDAExecutionProvider"
    assert gpu.placement and all(
        p == "CUDAExecutionProvider" for n, p in gpu.placement.items() if "GRU" in n
    ), gpu.placement
    x = _inputs(rng, 10_000)
    s = gpu.stream()
    ys = np.stack([s.step(xi) for xi in x])
    cpu = sg.load(gru_model.onnx, provider="cpu")
    assert_agree(ys, cpu.stream().feed(x), what="CUDA outputs")
    pools = [m.pool() for m in (gpu, cpu)]
    assert pools[0].state_on_device and not pools[1].state_on_device
    keys = list(range(64))
    for p in pools:
        for k in keys:
            p.open(k)
    for _ in range(100):
        xs = _inputs(rng, 64)
        assert_agree(pools[0].step_batch(keys, xs), pools[1].step_batch(keys, xs))


def test_idle_loaded_model_uses_no_cpu(gru_model, rng):
    model = sg.load(gru_model.onnx, threads=2)  # thread pools must not spin
    model.stream().feed(_inputs(rng, 100))
    before = os.times()
    time.sleep(1.0)
    after = os.times()
    used = (after.user - before.user) + (after.system - before.system)
    assert used < 0.1, f"an idle process with a loaded model used {used:.2f} s of CPU in 1 s"


def test_streams_on_threads_match_the_serial_results(gru_model, rng):
    import threading

    model = sg.load(gru_model.onnx)
    xs = [_inputs(rng, 200) for _ in range(4)]
    expected = [model.stream().feed(x) for x in xs]
    got: list[np.ndarray | None] = [None] * 4

    def work(i: int) -> None:
        s = model.stream()  # one shared model and session, a stream per thread
        got[i] = np.stack([s.step(x) for x in xs[i]])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_array_equal(g, e)


def test_one_stream_shared_by_threads_loses_no_step(gru_model):
    import threading

    model = sg.load(gru_model.onnx)
    s = model.stream()
    x = np.ones(3, np.float32)

    def work() -> None:
        for _ in range(250):
            s.step(x)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert s.steps == 1000
    ref = model.stream()
    ref.feed(np.ones((1000, 3), np.float32))  # the same input at every step: order is moot
    np.testing.assert_array_equal(s.state["h0"], ref.state["h0"])


def test_node_placement_check_reads_the_profile_and_warns(gru_model):
    """On CUDA, load() checks where every node ran. Here, on the CPU, the same check is
    run against a profiled CPU session: asking for CUDA, every node is 'elsewhere'."""
    ort = pytest.importorskip("onnxruntime")
    from stream_gru.core.session import check_placement

    so = ort.SessionOptions()
    so.enable_profiling = True
    session = ort.InferenceSession(str(gru_model.onnx), so, providers=["CPUExecutionProvider"])
    session.run(None, {"x": np.zeros((1, 1, 3), np.float32), "h0": np.zeros((2, 1, 8), np.float32)})
    with pytest.warns(
        RuntimeWarning, match=r"nodes run on another provider than CUDAExecutionProvider.*GRU"
    ):
        placement = check_placement(session, "CUDAExecutionProvider", source="m.onnx")
    assert placement and set(placement.values()) == {"CPUExecutionProvider"}
    assert any("GRU" in node for node in placement)
    assert sg.load(gru_model.onnx, provider="cpu").placement is None  # not profiled on CPU


def test_load_profiles_and_checks_placement_where_asked(gru_model, monkeypatch):
    """The wiring behind the CUDA check, exercised on the CPU: when a session is made
    profiled (as on CUDA), load() and the pool's one-step graph report where nodes ran."""
    import stream_gru.core.session as session

    monkeypatch.setattr(session, "_profiled", lambda providers: True)
    model = sg.load(gru_model.onnx, provider="cpu")
    assert model.placement and set(model.placement.values()) == {"CPUExecutionProvider"}
    assert any("GRU" in node for node in model.placement)
    model.pool()  # loads the one-step graph: profiled and checked the same way
    np.testing.assert_array_equal(model.stream().step(np.ones(3)), model.stream().step(np.ones(3)))
