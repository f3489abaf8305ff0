"""StreamPool: batched ticks equal per-stream references, bad samples change nothing,
expiry, snapshots, save/load, threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import stream_gru as sg


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def model(gru_model):
    return sg.load(gru_model.onnx)


@pytest.fixture(params=["sequence", "step", "device"])
def graph(request):
    """Pools run either graph; each is checked against references of its own graph.
    "device": the one-step graph with the states kept in one device tensor (ticked by
    the pooled graph), here on the CPU: the same logic a CUDA pool runs."""
    return request.param


def _options(graph):
    if graph == "device":
        return {"graph": "step", "state_on_device": True}
    return {"graph": graph}


class OneStreamPool:
    """A reference for the one-step graph: that graph, one stream, nothing else in the
    tick (the tests prove a stream's result does not depend on its tick)."""

    def __init__(self, model):
        self.pool = model.pool(graph="step")
        self.pool.open(0)

    def step(self, x):
        return self.pool.step_batch([0], np.asarray(x)[None])[0]

    @property
    def state(self):
        return self.pool.state(0)

    @property
    def steps(self):
        return self.pool.steps(0)


def _ref(model, graph):
    """A stream's reference: its own Stream (same graph as a "sequence" pool), or a
    one-stream pool of the one-step graph."""
    return model.stream() if graph == "sequence" else OneStreamPool(model)


def _pool(model, graph, **kwargs):
    pool = model.pool(**_options(graph), **kwargs)
    assert pool.state_on_device == (graph == "device")
    return pool


def _x(rng, n):
    return (rng.standard_normal((n, 3)) * 2).astype(np.float32)


def test_a_tick_equals_each_streams_own_stream(model, graph, rng):
    pool = _pool(model, graph)
    refs = {}
    for k in ["a", 7, b"raw", ("site", 3), ("nested", ("t", b"x"))]:
        pool.open(k)
        refs[k] = _ref(model, graph)
    for _ in range(30):
        keys = [k for k in refs if rng.random() < 0.6]
        xs = _x(rng, len(keys))
        out = pool.step(dict(zip(keys, xs, strict=True)))
        assert list(out) == keys
        for k, x in zip(keys, xs, strict=True):
            np.testing.assert_array_equal(out[k], refs[k].step(x))
    for k, ref in refs.items():
        np.testing.assert_array_equal(pool.state(k)["h0"], ref.state["h0"])
        assert pool.steps(k) == ref.steps


@pytest.mark.parametrize("others", [0, 6, 1023, 9999])
def test_a_streams_output_does_not_depend_on_its_tick(model, graph, rng, others):
    pool = _pool(model, graph)
    keys = list(range(others + 1))
    for k in keys:
        pool.open(k)
    x = _x(rng, 5)
    ref = _ref(model, graph)
    expected = [ref.step(xt) for xt in x]
    for t in range(5):
        xs = _x(rng, len(keys))
        xs[others] = x[t]  # the stream under test, last in the tick
        got = pool.step_batch(keys, xs)[others]
        np.testing.assert_array_equal(got, expected[t])


def test_step_batch_shapes_and_errors(model, rng):
    pool = model.pool()
    for k in "abc":
        pool.open(k)
    assert pool.step_batch([], np.zeros((0, 3))).shape == (0, 2)
    before = {k: pool.state(k)["h0"] for k in "abc"}
    with pytest.raises(ValueError, match=r"X has shape \(2, 4\), expected \(stream, 3\)"):
        pool.step_batch(["a", "b"], np.zeros((2, 4)))
    with pytest.raises(ValueError, match="3 rows for 2 keys"):
        pool.step_batch(["a", "b"], np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"more than once.*'a'"):
        pool.step_batch(["a", "b", "a"], np.zeros((3, 3)))
    with pytest.raises(KeyError, match=r"not open in this pool: \[.zz.\]"):
        pool.step_batch(["a", "zz"], np.zeros((2, 3)))
    bad = np.zeros((3, 3))
    bad[1, 2] = np.inf
    with pytest.raises(ValueError, match=r"inf at stream 1, feature 2 \('az'\)"):
        pool.step_batch(["a", "b", "c"], bad)
    for k in "abc":
        np.testing.assert_array_equal(pool.state(k)["h0"], before[k])
        assert pool.steps(k) == 0


def test_bad_samples_name_every_key_and_change_nothing(model):
    pool = model.pool()
    for k in "abcd":
        pool.open(k)
    pool.step({k: np.ones(3) for k in "abcd"})
    before = {k: pool.state(k)["h0"] for k in "abcd"}
    with pytest.raises(ValueError) as err:
        pool.step({"a": np.ones(3), "b": [np.nan, 0, 0], "c": np.ones(4), "d": np.ones(3)})
    assert "2 bad sample(s)" in str(err.value)
    message = str(err.value)
    assert "'b': sample must be finite" in message and "'c': sample has shape (4,)" in message
    with pytest.raises(KeyError, match=r"not open in this pool: \['x'\]"):
        pool.step({"a": np.ones(3), "x": np.ones(3)})
    with pytest.raises(ValueError, match=r"'a': sample must be a real numeric array.*bool"):
        pool.step({"a": np.ones(3, bool)})
    with pytest.raises(TypeError, match="dtype bool"):
        pool.step_batch(["a"], np.ones((1, 3), bool))
    for k in "abcd":
        np.testing.assert_array_equal(pool.state(k)["h0"], before[k])
        assert pool.steps(k) == 1
    assert pool.stats().rejected_samples == 5  # 2 bad, 1 of an unknown key, 1 bool, 1 bool row


def test_step_valid_steps_the_good_and_returns_the_rest(model, graph):
    pool = _pool(model, graph)
    for k in "ab":
        pool.open(k)
    ref = _ref(model, graph)
    result = pool.step_valid({"a": np.ones(3), "b": [0, np.nan, 0], "ghost": np.ones(3)})
    assert list(result.outputs) == ["a"]
    np.testing.assert_array_equal(result.outputs["a"], ref.step(np.ones(3)))
    assert set(result.rejected) == {"b", "ghost"}
    assert "nan" in result.rejected["b"] and result.rejected["ghost"] == "stream not open"
    assert pool.steps("b") == 0


def test_keys_and_membership(model):
    pool = model.pool()
    for bad in [1.5, True, None, ["list"], ("ok", 2.0), {"d": 1}]:
        with pytest.raises(TypeError, match="a stream key must be"):
            pool.open(bad)
    pool.open("x")
    with pytest.raises(ValueError, match="'x' is already open"):
        pool.open("x")
    assert "x" in pool and len(pool) == 1 and pool.keys() == ["x"]
    pool.close("x")
    assert "x" not in pool and len(pool) == 0
    with pytest.raises(KeyError, match="'x' is not open"):
        pool.close("x")


def test_open_many_opens_all_or_none(model):
    pool = sg.StreamPool(model, capacity=2)  # grows while it opens
    pool.open_many(np.arange(5))
    assert pool.keys() == [0, 1, 2, 3, 4] and pool.stats().capacity == 8
    for keys, error in ((["a", 3], ValueError), (["a", "a"], ValueError), (["a", 1.5], TypeError)):
        with pytest.raises(error):
            pool.open_many(keys)
        assert "a" not in pool and len(pool) == 5
    pool.open_many([])
    assert len(pool) == 5


def test_slots_are_reused_and_the_pool_grows(model, graph, rng):
    pool = _pool(model, graph)
    for i in range(200):  # past the initial capacity of 64
        pool.open(i)
    for i in range(0, 200, 2):
        pool.close(i)
    capacity = pool.stats().capacity
    for i in range(1000, 1100):
        pool.open(i)
    assert pool.stats().capacity == capacity  # closed slots reused
    ref = _ref(model, graph)
    x = _x(rng, 4)
    for t in range(4):
        np.testing.assert_array_equal(pool.step({1050: x[t]})[1050], ref.step(x[t]))


def test_expire_closes_idle_streams_and_returns_their_snapshots(model):
    clock = FakeClock()
    pool = model.pool(clock=clock)
    pool.open("quiet")
    pool.open("busy")
    clock.now += 100
    pool.step({"busy": np.ones(3)})
    assert pool.idle_seconds("quiet") == 100 and pool.idle_seconds("busy") == 0
    clock.now += 200  # quiet idle 300 s (never stepped: counted from its open), busy 200 s
    expired = pool.expire(idle_seconds=300)
    assert list(expired) == ["quiet"] and "quiet" not in pool and "busy" in pool
    restored = model.restore(expired["quiet"])
    assert restored.steps == 0
    assert pool.expire(idle_seconds=300) == {}
    assert pool.stats().expired_streams == 1
    with pytest.raises(ValueError, match="idle_seconds"):
        pool.expire(idle_seconds=-1)


def test_snapshot_moves_a_stream_between_pools(model, graph, rng):
    a, b = _pool(model, graph), _pool(model, graph)
    a.open("s")
    ref = _ref(model, graph)
    x = _x(rng, 10)
    for t in range(5):
        a.step({"s": x[t]})
        ref.step(x[t])
    b.restore("s2", a.snapshot("s"))
    with pytest.raises(ValueError, match="already open"):
        b.restore("s2", a.snapshot("s"))
    assert b.steps("s2") == 5
    for t in range(5, 10):
        np.testing.assert_array_equal(b.step({"s2": x[t]})["s2"], ref.step(x[t]))
    # a pool snapshot is a Stream snapshot: the two are interchangeable
    np.testing.assert_array_equal(model.restore(b.snapshot("s2")).state["h0"], ref.state["h0"])


def test_save_and_load_continue_bit_exact(model, graph, rng, tmp_path):
    clock = FakeClock()
    pool = _pool(model, graph, clock=clock)
    keys = ["a", 2**80, b"\x00\xff", ("t", 1, (b"z", "q"))]
    refs = {}
    for k in keys:
        pool.open(k)
        refs[k] = _ref(model, graph)
    for _ in range(5):
        xs = _x(rng, len(keys))
        pool.step_batch(keys, xs)
        for k, x in zip(keys, xs, strict=True):
            refs[k].step(x)
    clock.now += 42
    path = tmp_path / "fleet.sgpool"
    pool.save(path)
    clock2 = FakeClock()
    clock2.now = 5.0  # another process: another monotonic origin
    loaded = model.load_pool(path, clock=clock2, **_options(graph))
    assert loaded.keys() == keys
    for k in keys:
        assert loaded.idle_seconds(k) == pytest.approx(42)
        assert loaded.steps(k) == 5
    xs = _x(rng, len(keys))
    out = loaded.step_batch(keys, xs)
    for k, x, y in zip(keys, xs, out, strict=True):
        np.testing.assert_array_equal(y, refs[k].step(x))


def test_bad_pool_files_raise_snapshot_error(model, gru_twin, tmp_path):
    pool = model.pool()
    for k in range(3):
        pool.open(k)
    path = tmp_path / "p.sgpool"
    pool.save(path)
    data = path.read_bytes()
    with pytest.raises(sg.SnapshotError, match="another model"):
        sg.load(gru_twin.onnx).load_pool(path)
    for n in [0, 5, 40, len(data) // 2, len(data) - 1]:
        path.write_bytes(data[:n])
        with pytest.raises(sg.SnapshotError):
            model.load_pool(path)
    for i in range(0, len(data), 7):
        corrupt = bytearray(data)
        corrupt[i] ^= 0xFF
        path.write_bytes(bytes(corrupt))
        with pytest.raises(sg.SnapshotError):
            model.load_pool(path)
    with pytest.raises(
        sg.SnapshotError,
        match=r"is a stream-gru stream snapshot .*, expected a stream-gru pool file",
    ):
        path.write_bytes(model.stream().snapshot())
        model.load_pool(path)


def test_a_failed_save_leaves_the_previous_file_whole(model, tmp_path, monkeypatch):
    pool = model.pool()
    pool.open("a")
    path = tmp_path / "p.sgpool"
    pool.save(path)
    before = path.read_bytes()
    pool.open("b")
    import stream_gru.formats.files as files

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        pool.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["p.sgpool"]  # no temporary left behind


def test_four_threads_with_disjoint_keys_get_the_serial_results(model, rng):
    pool = model.pool()
    groups = [[f"t{t}-{i}" for i in range(25)] for t in range(4)]
    inputs = [_x(rng, 25 * 40).reshape(40, 25, 3) for _ in groups]
    for keys in groups:
        for k in keys:
            pool.open(k)
    results: list[list[np.ndarray]] = [[] for _ in groups]

    def work(t: int) -> None:
        for tick in range(40):
            results[t].append(pool.step_batch(groups[t], inputs[t][tick]))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    serial = model.pool()
    for t, keys in enumerate(groups):
        for k in keys:
            serial.open(k)
        for tick in range(40):
            np.testing.assert_array_equal(
                results[t][tick], serial.step_batch(keys, inputs[t][tick])
            )
    assert pool.stats().stream_steps == 4 * 25 * 40


def test_stats(model):
    pool = model.pool()
    pool.open("a")
    assert pool.stats().tick_p50_us == 0.0
    for _ in range(10):
        pool.step({"a": np.ones(3)})
    s = pool.stats()
    assert (s.open_streams, s.ticks, s.stream_steps) == (1, 10, 10)
    assert 0 < s.tick_p50_us <= s.tick_p99_us


KEYS = st.one_of(
    st.integers(-5, 5), st.sampled_from(["a", "b", "c"]), st.tuples(st.integers(0, 2), st.just("x"))
)


class PoolAgainstStreams(RuleBasedStateMachine):
    """Random schedules of opens, closes, ticks, moves, expiries and restarts keep every
    stream equal, bit for bit, to its own Stream."""

    def __init__(self) -> None:
        super().__init__()
        self.rng = np.random.default_rng(0)

    @initialize()
    def setup(self) -> None:
        self.clock = FakeClock()
        self.pool = _pool(PoolAgainstStreams.model, PoolAgainstStreams.graph, clock=self.clock)
        self.refs: dict = {}

    @rule(key=KEYS)
    def open(self, key):
        if key in self.refs:
            with pytest.raises(ValueError):
                self.pool.open(key)
        else:
            self.pool.open(key)
            self.refs[key] = _ref(PoolAgainstStreams.model, PoolAgainstStreams.graph)

    @rule(key=KEYS)
    def close(self, key):
        if key in self.refs:
            self.pool.close(key)
            del self.refs[key]
        else:
            with pytest.raises(KeyError):
                self.pool.close(key)

    @rule(data=st.data(), batch=st.booleans())
    def tick(self, data, batch):
        keys = (
            data.draw(st.lists(st.sampled_from(sorted(self.refs, key=repr)), unique=True))
            if self.refs
            else []
        )
        xs = _x(self.rng, len(keys))
        if batch:
            out = list(self.pool.step_batch(keys, xs))
        else:
            out = list(self.pool.step(dict(zip(keys, xs, strict=True))).values())
        for k, x, y in zip(keys, xs, out, strict=True):
            np.testing.assert_array_equal(y, self.refs[k].step(x))
        self.clock.now += 1

    @rule(key=KEYS, new=KEYS)
    def move(self, key, new):
        if key in self.refs and new not in self.refs:
            blob = self.pool.snapshot(key)
            self.pool.close(key)
            self.pool.restore(new, blob)
            self.refs[new] = self.refs.pop(key)

    @rule(idle=st.integers(0, 4))
    def expire(self, idle):
        expired = self.pool.expire(idle_seconds=idle)
        for k, blob in expired.items():
            np.testing.assert_array_equal(
                PoolAgainstStreams.model.restore(blob).state["h0"], self.refs.pop(k).state["h0"]
            )

    @rule()
    def restart(self):
        self.pool.save(PoolAgainstStreams.path)
        self.pool = PoolAgainstStreams.model.load_pool(
            PoolAgainstStreams.path, clock=self.clock, **_options(PoolAgainstStreams.graph)
        )

    @invariant()
    def same_keys(self):
        if hasattr(self, "pool"):
            assert set(self.pool.keys()) == set(self.refs)


def test_random_schedules_against_per_stream_references(model, graph, tmp_path):
    PoolAgainstStreams.model = model
    PoolAgainstStreams.graph = graph
    PoolAgainstStreams.path = tmp_path / "pool.sgpool"
    runner = PoolAgainstStreams.TestCase
    runner.settings = settings(max_examples=30, stateful_step_count=30, deadline=None)
    runner().runTest()


def test_memory_per_stream_at_100000_streams(fleet_model):
    import tracemalloc

    model = sg.load(fleet_model.onnx)
    keys = [f"sensor-{i}" for i in range(100_000)]
    x = np.random.default_rng(0).standard_normal((4096, 8)).astype(np.float32)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        pool = model.pool()
        for k in keys:
            pool.open(k)
        pool.step_batch(keys[:4096], x)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    state_bytes = 100_000 * 64 * 4
    per_stream = (used - state_bytes) / 100_000
    assert len(pool) == 100_000
    assert per_stream <= 1024, f"{per_stream:.0f} bytes per stream beyond the state"


def test_keys_of_refused_types_never_reach_an_open_stream(model):
    """1.0 and True hash like 1: they are refused by type (TypeError naming the type),
    never reported as "not open", and never reach stream 1."""
    pool = model.pool()
    pool.open(1)
    x = np.ones(3)
    assert 1 in pool and 1.0 not in pool and True not in pool and np.float64(1) not in pool
    for alien in (1.0, True, np.float64(1.0), np.bool_(True)):
        name = type(alien).__name__
        with pytest.raises(TypeError, match=f"refused type.*{name}"):
            pool.step({alien: x})
        with pytest.raises(TypeError, match=name):
            pool.step_batch([alien], x[None])
        (why,) = pool.step_valid({alien: x}).rejected.values()
        assert name in why and "not open" not in why
        for call in (pool.close, pool.snapshot, pool.steps, pool.state, pool.open):
            with pytest.raises(TypeError, match=name):
                call(alien)
    with pytest.raises(TypeError, match="ndarray"):
        pool.step_batch([np.array([1, 2])], x[None])
    with pytest.raises(TypeError, match="float64"):
        pool.step_batch(np.array([1.0]), x[None])
    assert pool.steps(1) == 0 and pool.keys() == [1]


def test_closing_a_key_invalidates_the_last_ticks_lookup(model):
    pool = model.pool()
    keys = ["a", "b"]
    for k in keys:
        pool.open(k)
    x = np.ones((2, 3))
    pool.step_batch(keys, x)
    pool.close("b")
    pool.open("c")  # takes b's slot
    with pytest.raises(KeyError, match=r"\['b'\]"):
        pool.step_batch(keys, x)
    assert pool.steps("c") == 0 and pool.steps("a") == 1


def test_step_batch_names_every_bad_key_and_counts_only_them(model):
    pool = model.pool()
    keys = ["a", "b", "c", "d"]
    for k in keys:
        pool.open(k)
    x = np.ones((4, 3))
    x[1, 0] = np.nan
    x[3, 2] = np.inf
    with pytest.raises(
        ValueError, match=r"2 bad sample\(s\), no stream stepped: not finite for 'b', 'd'"
    ):
        pool.step_batch(keys, x)
    assert pool.stats().rejected_samples == 2
    assert all(pool.steps(k) == 0 for k in keys)


def test_step_valid_rejects_keys_closed_by_another_thread(model):
    pool = model.pool()
    keys = list(range(300))
    for k in keys:
        pool.open(k)
    samples = {k: np.ones(3) for k in keys}
    stop = threading.Event()
    errors: list[BaseException] = []

    def churn() -> None:
        while not stop.is_set():
            pool.close(0)
            pool.open(0)

    other = threading.Thread(target=churn)
    other.start()
    try:
        for _ in range(100):
            try:
                result = pool.step_valid(samples)
            except BaseException as e:  # the failure this test is about
                errors.append(e)
                break
            assert set(result.outputs) | set(result.rejected) == set(keys)
            assert set(result.rejected) <= {0}
    finally:
        stop.set()
        other.join()
    assert errors == []
    assert pool.steps(1) == 100


def test_ticks_stay_atomic_while_other_threads_open_and_close(model, rng):
    pool, serial = model.pool(), model.pool()
    keys = [f"k{i}" for i in range(60)]
    for k in keys:
        pool.open(k)
        serial.open(k)
    inputs = [_x(rng, 60) for _ in range(200)]
    results: list[np.ndarray] = []

    def tick() -> None:
        for x in inputs:
            results.append(pool.step_batch(keys, x))

    def grow() -> None:
        for i in range(20_000):  # forces the state arrays to grow several times
            pool.open(i)
            if i % 3 == 0:
                pool.close(i)

    threads = [threading.Thread(target=tick), threading.Thread(target=grow)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for x, got in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(got, serial.step_batch(keys, x))
    assert all(pool.steps(k) == 200 for k in keys)


def test_huge_int_keys_survive_save_and_load(model, tmp_path):
    pool = model.pool()
    key = 10**5000
    pool.open(key)
    pool.open((-(2**70), b"\x00"))
    pool.save(tmp_path / "p.sgpool")
    loaded = model.load_pool(tmp_path / "p.sgpool")
    assert loaded.keys() == [key, (-(2**70), b"\x00")]


def test_mixed_samples_keep_the_input_order(model):
    pool = model.pool(graph="sequence")
    keys = ["a", "b", "c", "d"]
    refs = {k: model.stream() for k in keys}
    for k in keys:
        pool.open(k)
    samples = {
        "a": [1, 2, 3],  # a list: checked on its own
        "b": np.ones(3, np.float32),  # the common case: checked with the others at once
        "c": np.arange(3),  # ints
        "d": np.full(3, 0.5),  # float64
    }
    out = pool.step(samples)
    assert list(out) == keys
    for k in keys:
        np.testing.assert_array_equal(out[k], refs[k].step(samples[k]))
    result = pool.step_valid({"a": [0, 0, 0], "b": np.array([np.nan, 0, 0]), "c": np.ones(3)})
    assert list(result.outputs) == ["a", "c"] and list(result.rejected) == ["b"]


def test_the_slot_cache_never_lets_a_refused_key_through(model):
    pool = model.pool()
    pool.open(1)
    x = np.ones((1, 3))
    pool.step_batch([1], x)
    pool.step_batch([1], x)  # equal plain keys: served from the cache
    for alien in (1.0, True):
        with pytest.raises(TypeError, match=type(alien).__name__):
            pool.step_batch([alien], x)
    assert pool.steps(1) == 2
    pool.step_batch([np.int64(1)], x)  # the same stream as 1
    assert pool.steps(1) == 3
