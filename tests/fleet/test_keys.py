"""Stream keys: numpy integers mean the equal int everywhere a key is taken; floats
and bools are refused by type; a saved pool gives back plain ints."""

from __future__ import annotations

import numpy as np
import pytest

import stream_gru as sg
from stream_gru.fleet.keys import canonical_key, key_list, key_token

INTEGER_TYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]


@pytest.fixture
def model(gru_model):
    return sg.load(gru_model.onnx)


@pytest.mark.parametrize("kind", INTEGER_TYPES, ids=lambda t: t.__name__)
def test_every_numpy_integer_width_means_the_equal_int(model, kind):
    pool = model.pool()
    pool.open(kind(5))
    assert pool.keys() == [5] and type(pool.keys()[0]) is int
    assert 5 in pool and kind(5) in pool and np.int64(5) in pool
    x = np.ones(3, np.float32)
    out = pool.step({kind(5): x})
    assert list(out) == [5] and type(next(iter(out))) is int
    pool.step_batch(np.array([5], dtype=kind), x[None])
    assert pool.steps(5) == 2 and pool.steps(kind(5)) == 2
    assert key_token(kind(5)) == key_token(5)
    blob = pool.snapshot(kind(5))
    pool.close(kind(5))
    assert 5 not in pool
    pool.restore(kind(5), blob)
    assert pool.steps(5) == 2
    with pytest.raises(ValueError, match="already open"):
        pool.open(5)


def test_step_batch_with_a_numpy_array_equals_python_ints_both_ways(model):
    """The acceptance case: a pool opened with ints stepped by np.arange, and the
    reverse, give identical outputs."""
    rng = np.random.default_rng(3)
    opened_with_ints, opened_with_numpy = model.pool(), model.pool()
    for i in range(64):
        opened_with_ints.open(i)
    for i in np.arange(64):
        opened_with_numpy.open(i)
    for _ in range(20):
        x = rng.standard_normal((64, 3)).astype(np.float32)
        a = opened_with_ints.step_batch(np.arange(64), x)
        b = opened_with_numpy.step_batch(list(range(64)), x)
        np.testing.assert_array_equal(a, b)
    assert opened_with_ints.keys() == opened_with_numpy.keys() == list(range(64))
    assert opened_with_ints.steps(63) == opened_with_numpy.steps(np.uint8(63)) == 20


def test_a_saved_pool_gives_back_plain_ints(model, tmp_path):
    pool = model.pool()
    pool.open(np.uint64(2**64 - 1))
    pool.open(("site", np.int32(3)))
    pool.save(tmp_path / "p.pool")
    keys = model.load_pool(tmp_path / "p.pool").keys()
    assert keys == [2**64 - 1, ("site", 3)]
    assert type(keys[0]) is int and type(keys[1][1]) is int


@pytest.mark.parametrize(
    "alien", [1.0, True, np.float32(1.0), np.bool_(True), None, [1], 1j], ids=repr
)
def test_floats_and_bools_are_refused_by_type_never_as_not_open(model, alien):
    pool = model.pool()
    pool.open(1)
    x = np.ones(3, np.float32)
    name = type(alien).__name__
    for call in (pool.open, pool.close, pool.snapshot, pool.steps, pool.state):
        with pytest.raises(TypeError, match=name):
            call(alien)
    if isinstance(alien, (list, type(None))) or not hasattr(alien, "__hash__"):
        return
    with pytest.raises(TypeError, match=name):
        pool.step({alien: x})
    with pytest.raises(TypeError, match=name):
        pool.step_batch([alien], x[None])
    (reason,) = pool.step_valid({alien: x}).rejected.values()
    assert name in reason and "not open" not in reason
    assert alien not in pool and pool.steps(1) == 0


def test_key_list_converts_arrays_in_one_call_and_refuses_what_is_not_keys():
    assert key_list(np.arange(3, dtype=np.uint32)) == [0, 1, 2]
    assert key_list(np.array(["a", "b"])) == ["a", "b"]
    assert key_list([np.int8(1), ("t", np.int64(2))]) == [1, ("t", 2)]
    with pytest.raises(TypeError, match="dtype float64"):
        key_list(np.zeros(2))
    with pytest.raises(ValueError, match="one-dimensional"):
        key_list(np.zeros((2, 2), np.int64))
    with pytest.raises(TypeError, match="got one str"):
        key_list("abc")
    assert canonical_key(("a", (np.int16(1), b"x"))) == ("a", (1, b"x"))


def test_subclasses_of_int_str_and_bytes_are_stored_as_their_plain_value(model):
    """An IntEnum member is the stream of its int everywhere, the id table included: a
    closed one is never reached through an id array."""
    import enum

    class Pump(enum.IntEnum):
        FIVE = 5

    class Site(str, enum.Enum):
        NORTH = "north"

    pool = model.pool()
    pool.open_many([Pump.FIVE, Site.NORTH, (Pump.FIVE, Site.NORTH)])
    keys = pool.keys()
    assert keys == [5, "north", (5, "north")]
    assert [type(k) for k in keys] == [int, str, tuple]
    assert [type(k) for k in keys[2]] == [int, str]
    x = np.ones((1, 3), np.float32)
    pool.step_batch(np.array([5]), x)
    pool.step_batch([Pump.FIVE], x)
    assert pool.steps(5) == 2
    pool.close(Pump.FIVE)
    pool.open("other")  # takes the closed slot
    with pytest.raises(KeyError, match=r"\[5\]"):
        pool.step_batch(np.array([5]), x)
    assert pool.steps("other") == 0


def test_an_id_array_names_its_keys_as_the_ints_they_are(model):
    pool = model.pool()
    pool.open_many(range(4))
    x = np.ones((3, 3), np.float32)
    x[2, 0] = np.nan
    for keys in (np.array([0, 1, 2]), [0, 1, 2]):
        with pytest.raises(ValueError, match=r"not finite for 2 \("):
            pool.step_batch(keys, x)
    with pytest.raises(KeyError, match=r"^'stream 7 is not open"):
        pool.steps(np.int64(7))


def test_a_refused_query_counts_no_rejected_samples(model):
    pool = model.pool()
    pool.open_many(range(3))
    for keys in ([3], np.array([3]), [1, 1]):
        with pytest.raises((KeyError, ValueError)):
            pool.step_counts(keys)
    assert pool.stats().rejected_samples == 0


def test_masked_arrays_of_keys_are_refused(model):
    pool = model.pool()
    masked = np.ma.array([1, 2, 3], mask=[0, 1, 0])
    with pytest.raises(TypeError, match="masked array"):
        pool.open_many(masked)
    pool.open_many(masked.compressed())
    with pytest.raises(TypeError, match="masked array"):
        pool.step_batch(masked, np.ones((3, 3), np.float32))
    assert pool.keys() == [1, 3] and pool.steps(1) == 0


def test_a_mapping_that_lists_a_key_twice_is_refused(model):
    from collections.abc import Mapping

    class Twice(Mapping):
        def __getitem__(self, key):
            return np.ones(3, np.float32)

        def __iter__(self):
            return iter([1, 1])

        def __len__(self):
            return 2

    pool = model.pool()
    pool.open(1)
    with pytest.raises(ValueError, match="more than once"):
        pool.step(Twice())
    with pytest.raises(ValueError, match="more than once"):
        pool.step_batch([1, 1], np.ones((2, 3), np.float32))
    assert pool.steps(1) == 0
