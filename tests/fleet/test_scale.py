"""A fleet at scale: blocked and reordered ticks give one tick's outputs bit for bit,
integer-array keys and batched opens, closes and restores behave exactly as their
one-key forms (bad input included). Timings live in ``make bench``, not here."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stream_gru as sg
from stream_gru.agreement import assert_agree


@pytest.fixture(scope="module", params=["gru_model", "lstm_model"])
def model(request):
    return sg.load(request.getfixturevalue(request.param).onnx)


@pytest.mark.parametrize("graph", ["step", "sequence"])
def test_blocked_and_reordered_ticks_equal_one_tick_bit_for_bit(model, graph):
    rng = np.random.default_rng(0)
    n = 37
    one = sg.StreamPool(model, graph=graph, block_rows=4096)
    blocked = sg.StreamPool(model, graph=graph, block_rows=5)  # 8 blocks, the last of 2
    shuffled = sg.StreamPool(model, graph=graph, block_rows=3)
    halves = sg.StreamPool(model, graph=graph, block_rows=4)  # runs of slots not from 0
    for pool in (one, blocked, shuffled, halves):
        pool.open_many(range(n))
    for _ in range(20):
        x = (rng.standard_normal((n, 3)) * 2).astype(np.float32)
        y = one.step_batch(np.arange(n), x)
        np.testing.assert_array_equal(blocked.step_batch(np.arange(n), x), y)
        order = rng.permutation(n)
        reordered = shuffled.step_batch(order, x[order])
        np.testing.assert_array_equal(reordered[np.argsort(order)], y)
        cut = int(rng.integers(1, n))
        first = halves.step_batch(np.arange(cut), x[:cut])
        np.testing.assert_array_equal(np.concatenate([first, halves.step_batch(
            np.arange(cut, n), x[cut:])]), y)  # fmt: skip
    for k in range(n):
        for name, value in one.state(k).items():
            np.testing.assert_array_equal(blocked.state(k)[name], value)
            np.testing.assert_array_equal(shuffled.state(k)[name], value)
            np.testing.assert_array_equal(halves.state(k)[name], value)


def test_block_rows_is_checked(model):
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="block_rows must be an int >= 1"):
            sg.StreamPool(model, block_rows=bad)


@settings(max_examples=25, deadline=None)
@given(
    opened=st.lists(st.integers(-5, 3000), min_size=1, max_size=120, unique=True),
    ticks=st.lists(
        st.one_of(
            st.lists(st.integers(-5, 3100), min_size=0, max_size=12),
            st.lists(st.integers(0, 3100), min_size=64, max_size=90),  # the id-table path
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_integer_arrays_of_keys_behave_as_lists_of_ints(gru_model, opened, ticks):
    """Arrays (always the id table) and lists (the id table from 64 plain ints, the
    dict below that or for ids outside the table) give the same outputs and errors."""
    model = sg.load(gru_model.onnx)
    arrays, lists = model.pool(), model.pool()
    arrays.open_many(np.array(opened))
    lists.open_many(list(opened))
    rng = np.random.default_rng(len(opened))
    for tick in ticks:
        x = rng.standard_normal((len(tick), 3)).astype(np.float32)
        outcomes = []
        for pool, keys in ((arrays, np.array(tick, np.int64)), (lists, list(tick))):
            try:
                outcomes.append(pool.step_batch(keys, x))
            except (KeyError, ValueError) as e:
                outcomes.append(e)
        a, b = outcomes
        assert type(a) is type(b), (a, b)
        if isinstance(a, Exception):
            assert str(a) == str(b)
        else:
            np.testing.assert_array_equal(a, b)
    assert arrays.stats().rejected_samples == lists.stats().rejected_samples
    for key in opened:
        assert arrays.steps(key) == lists.steps(key)
        np.testing.assert_array_equal(arrays.state(key)["h0"], lists.state(key)["h0"])


def test_integer_keys_anywhere_in_int64_and_uint64(gru_model):
    model = sg.load(gru_model.onnx)
    pool = model.pool()
    big = [2**62, -(2**40), 2**63 - 1, 0, 7]
    pool.open_many(np.array(big, np.int64))
    pool.open(np.uint64(2**64 - 1))  # beyond int64: the equal Python int
    keys = np.array([*big, 2**64 - 1], dtype=object)
    x = np.ones((6, 3), np.float32)
    y = pool.step_batch([int(k) for k in keys], x)
    assert y.shape == (6, 2) and pool.steps(2**64 - 1) == 1
    y2 = pool.step_batch(np.array(big, np.int64), x[:5])
    assert_agree(y2[3], model.stream().feed(np.ones((2, 3)))[1])  # key 0, its second step
    with pytest.raises(KeyError, match=r"\[8\]"):
        pool.step_batch(np.array([7, 8]), x[:2])
    with pytest.raises(ValueError, match=r"more than once.*\[7\]"):
        pool.step_batch(np.array([7, 0, 7]), x[:3])
    assert pool.steps(7) == 2 and pool.steps(0) == 2  # the refused ticks changed nothing
    pool.open_many(range(100, 170))
    long = [*range(100, 169), 2**64 - 1]  # a long list of ints beyond int64: the dict
    assert pool.step_batch(long, np.ones((70, 3), np.float32)).shape == (70, 2)
    assert pool.steps(2**64 - 1) == 2 and pool.steps(168) == 1


def test_a_changed_array_is_looked_up_again(gru_model):
    """The last tick's lookup is reused only for equal keys: an array changed in place
    between ticks steps the streams it now names."""
    pool = sg.load(gru_model.onnx).pool()
    pool.open_many(range(10))
    keys = np.arange(5)
    x = np.ones((5, 3), np.float32)
    pool.step_batch(keys, x)
    keys += 5
    pool.step_batch(keys, x)
    assert [pool.steps(k) for k in range(10)] == [1] * 10


def test_closing_and_reopening_ids_keep_the_id_index_right(gru_model):
    pool = sg.load(gru_model.onnx).pool()
    pool.open_many(np.arange(100))
    pool.close_many(np.arange(0, 100, 2))
    x = np.ones((50, 3), np.float32)
    with pytest.raises(KeyError, match=r"\[0, 2, 4"):
        pool.step_batch(np.arange(50), x)
    pool.step_batch(np.arange(1, 100, 2), x)
    pool.open_many(np.arange(0, 100, 2))
    y = pool.step_batch(np.arange(100), np.ones((100, 3), np.float32))
    assert pool.steps(0) == 1 and pool.steps(1) == 2
    np.testing.assert_array_equal(y[0], y[2])  # two fresh streams, one sample: one output


def test_batched_opens_closes_and_restores_are_all_or_nothing(gru_model):
    model = sg.load(gru_model.onnx)
    pool = model.pool()
    pool.open_many(["a", "b"])
    capacity = pool.stats().capacity
    for keys, error, message in (
        (["c", "a"], ValueError, r"already open: \['a'\]"),
        (["c", "c"], ValueError, r"named twice: \['c'\]"),
        (["c", 1.5], TypeError, "a stream key must be"),
        (np.array([1.5, 2.0]), TypeError, "keys of dtype float64"),
    ):
        with pytest.raises(error, match=message):
            pool.open_many(keys)
        assert pool.keys() == ["a", "b"]
    with pytest.raises(KeyError, match=r"not open in this pool: \['z'\]"):
        pool.close_many(["a", "z"])
    with pytest.raises(ValueError, match="named twice"):
        pool.close_many(["a", "a"])
    assert pool.keys() == ["a", "b"] and pool.stats().capacity == capacity
    pool.step({"a": np.ones(3)})
    blob = pool.snapshot("a")
    with pytest.raises(sg.SnapshotError):
        pool.restore_many({"c": blob, "d": blob[:-1]})
    with pytest.raises(ValueError, match="already open"):
        pool.restore_many({"c": blob, "a": blob})
    assert pool.keys() == ["a", "b"]
    pool.close_many(["a", "b"])
    pool.restore_many({"c": blob, "d": blob})
    assert pool.steps("c") == pool.steps("d") == 1
    one = model.pool()
    one.restore("c", blob)
    np.testing.assert_array_equal(pool.state("c")["h0"], one.state("c")["h0"])


def test_open_many_equals_opening_one_by_one(gru_model):
    model = sg.load(gru_model.onnx)
    many, single = model.pool(), model.pool()
    keys = ["x", 3, b"raw", ("site", 1), *range(100, 200)]
    many.open_many(keys)
    for key in keys:
        single.open(key)
    assert many.keys() == single.keys() and many.stats().capacity == single.stats().capacity
    x = np.random.default_rng(1).standard_normal((len(keys), 3)).astype(np.float32)
    np.testing.assert_array_equal(many.step_batch(keys, x), single.step_batch(keys, x))


def test_long_lists_of_ints_take_the_id_table_and_behave_as_the_dict(gru_model):
    model = sg.load(gru_model.onnx)
    by_ids, by_dict = model.pool(), model.pool()
    by_ids.open_many(range(200))
    by_dict.open_many([(k,) for k in range(200)])  # tuples: always through the dict
    rng = np.random.default_rng(5)
    for _ in range(5):
        chosen = rng.permutation(200)[:100].tolist()
        x = rng.standard_normal((100, 3)).astype(np.float32)
        y = by_ids.step_batch(chosen, x)
        np.testing.assert_array_equal(y, by_dict.step_batch([(k,) for k in chosen], x))
    for bad, error in (([*range(99), 99, 5], "more than once"), ([*range(99), 500], r"\[500\]")):
        with pytest.raises((KeyError, ValueError), match=error):
            by_ids.step_batch(bad, np.ones((len(bad), 3), np.float32))
    assert [by_ids.steps(k) for k in range(200)] == [by_dict.steps((k,)) for k in range(200)]


def test_ids_opened_and_closed_among_other_keys_keep_the_id_table_right(gru_model):
    """Int keys opened or closed in one call with keys of other types are indexed and
    unindexed all the same: an id array never reaches a closed stream's slot."""
    model = sg.load(gru_model.onnx)
    pool = model.pool()
    pool.open_many([5, 6])  # ids alone: indexed
    pool.open("a")
    pool.close_many([6, "a"])  # an id among other keys: unindexed all the same
    pool.open("b")  # takes 6's or a's old slot
    with pytest.raises(KeyError, match=r"\[6\]"):
        pool.step_batch(np.array([5, 6]), np.ones((2, 3), np.float32))
    pool.step_batch(np.array([5]), np.ones((1, 3), np.float32))
    assert pool.steps(5) == 1 and pool.steps("b") == 0
    pool.open_many([(1, 2), 2**64, 9])  # a tuple, an int beyond int64, an id
    y = pool.step_batch(np.array([9, 5]), np.ones((2, 3), np.float32))
    assert_agree(y[0], model.stream().step(np.ones(3)))
    assert pool.steps(9) == 1 and pool.steps(5) == 2


def test_ids_opened_beyond_the_table_are_found_once_it_covers_them(gru_model):
    pool = sg.StreamPool(sg.load(gru_model.onnx), capacity=8)
    pool.open(100_000)  # beyond the id table of a small pool: in the dict only
    pool.open_many(np.arange(20_000))  # the pool grows, and with it the table's limit
    pool.open(110_000)  # the table grows past 100,000
    y = pool.step_batch(np.array([100_000, 5, 110_000]), np.ones((3, 3), np.float32))
    assert y.shape == (3, 2) and pool.steps(100_000) == 1
    pool.close(100_000)
    with pytest.raises(KeyError, match=r"\[100000\]"):
        pool.step_batch(np.array([100_000]), np.ones((1, 3), np.float32))


_KEYS = st.one_of(
    st.integers(0, 300), st.integers(60_000, 300_000), st.integers(-3, -1), st.sampled_from("abc")
)


@settings(max_examples=100, deadline=None)
@given(ops=st.lists(st.tuples(st.booleans(), st.lists(_KEYS, max_size=6)), max_size=12))
def test_the_id_table_follows_any_mix_of_opens_and_closes(gru_model, ops):
    """After any opens and closes of mixed keys (ids inside and beyond the table,
    negative ints, strings), an id array finds exactly the open ids, each its own."""
    pool = sg.StreamPool(sg.load(gru_model.onnx), capacity=4)
    open_keys: set = set()
    for opening, keys in ops:
        keys = list(dict.fromkeys(keys))
        if opening:
            keys = [k for k in keys if k not in open_keys]
            pool.open_many(keys)
            open_keys.update(keys)
        else:
            keys = [k for k in keys if k in open_keys]
            pool.close_many(keys)
            open_keys.difference_update(keys)
        ids = sorted(k for k in open_keys if isinstance(k, int))
        before = {k: pool.steps(k) for k in open_keys}
        pool.step_batch(np.array(ids, np.int64), np.ones((len(ids), 3), np.float32))
        assert {k: pool.steps(k) - before[k] for k in open_keys} == {
            k: int(isinstance(k, int)) for k in open_keys
        }
        for closed in {k for _, ks in ops for k in ks if isinstance(k, int)} - open_keys:
            with pytest.raises(KeyError):
                pool.step_batch(np.array([closed]), np.ones((1, 3), np.float32))


def test_onnxruntime_failing_partway_through_a_blocked_tick_is_told_exactly(model):
    """Inputs are checked before any block runs; should onnxruntime itself fail in a
    later block (out of memory, say: injected here), the error names the streams that
    stepped, their step counts agree with their states, and the rest are untouched."""
    from stream_gru.errors import PartialTickError

    pool = sg.StreamPool(model, block_rows=4)
    reference = sg.StreamPool(model)
    pool.open_many(range(10))
    reference.open_many(range(4))
    real = pool._store._graph
    calls = []

    class FailingSecondCall:
        name = real.name

        def run(self, samples, states):
            calls.append(len(samples))
            if len(calls) == 2:
                raise RuntimeError("injected: onnxruntime ran out of memory")
            return real.run(samples, states)

    pool._store._graph = FailingSecondCall()
    x = np.random.default_rng(3).standard_normal((10, 3)).astype(np.float32)
    with pytest.raises(PartialTickError, match="after the first 4 had stepped") as caught:
        pool.step_batch(np.arange(10), x)
    assert caught.value.stepped == [0, 1, 2, 3]
    assert "out of memory" in str(caught.value.__cause__)
    reference.step_batch(np.arange(4), x[:4])
    for k in range(10):
        assert pool.steps(k) == (1 if k < 4 else 0)
        for name, value in pool.state(k).items():
            expected = reference.state(k)[name] if k < 4 else np.zeros_like(value)
            np.testing.assert_array_equal(value, expected)
    assert pool.stats().stream_steps == 4
    pool._store._graph = real
    pool.step_batch(np.arange(10), x)  # the pool goes on
    assert pool.steps(0) == 2 and pool.steps(9) == 1
