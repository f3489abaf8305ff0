"""ShardedPool on a real local Ray runtime: bit for bit a local StreamPool, through
ticks, rebalancing, dead shards and files."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray")

import stream_gru as sg  # noqa: E402
from stream_gru.distributed import ShardedPool, ShardError  # noqa: E402
from stream_gru.distributed.ring import HashRing, hash64  # noqa: E402
from stream_gru.fleet.keys import key_token  # noqa: E402

KEYS = [f"k{i}" for i in range(120)] + list(range(40)) + [("site", 3), b"raw"]


@pytest.fixture(scope="module", autouse=True)
def ray_runtime():
    """Two CPUs, as on CI: the shards reserve none, so more shards than cores fit."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def kill_and_wait(actor, timeout=30.0):
    """``ray.kill`` returns before the actor is gone; the counts of a replay depend on
    which call finds it dead, so wait until it is."""
    ray.kill(actor)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ray.get(actor.__ray_ready__.remote(), timeout=5)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            return
        time.sleep(0.05)
    raise AssertionError("the killed actor is still answering")


class Twins:
    """A sharded pool and a local pool fed the same calls; every output compared."""

    def __init__(self, model_path, **options):
        self.model = sg.load(model_path)
        self.sharded = ShardedPool(model_path, **options)
        self.local = self.model.pool()
        self.rng = np.random.default_rng(0)

    def open(self, keys):
        self.sharded.open_many(keys)
        for k in keys:
            self.local.open(k)

    def tick(self, share=0.7):
        keys = [k for k in self.local if self.rng.random() < share]
        xs = self.rng.standard_normal((len(keys), 3)).astype(np.float32)
        if self.rng.random() < 0.5:
            got, want = self.sharded.step_batch(keys, xs), self.local.step_batch(keys, xs)
        else:
            samples = dict(zip(keys, xs, strict=True))
            got_d, want_d = self.sharded.step(samples), self.local.step(samples)
            assert list(got_d) == keys  # the caller's order
            got, want = np.array(list(got_d.values())), np.array(list(want_d.values()))
        np.testing.assert_array_equal(got, want)
        return len(keys)

    def assert_same_states(self):
        assert set(self.sharded) == set(self.local)
        for k in self.local:
            assert self.sharded.snapshot(k) == self.local.snapshot(k), k


@pytest.fixture
def twins(gru_model):
    t = Twins(gru_model.onnx, shards=3, checkpoint_every=4)
    t.open(KEYS)
    yield t
    t.sharded.shutdown()


def test_ticks_equal_one_local_pool_bit_for_bit(twins):
    for i in range(12):
        twins.tick()
        if i == 5:  # streams come and go
            for k in KEYS[:10]:
                twins.sharded.close(k)
                twins.local.close(k)
            blob = twins.local.snapshot("k50")
            twins.sharded.restore("moved", blob)
            twins.local.restore("moved", blob)
    twins.assert_same_states()
    assert len(twins.sharded) == len(KEYS) - 10 + 1
    assert "k50" in twins.sharded and 1.0 not in twins.sharded and "k0" not in twins.sharded
    stats = twins.sharded.stats()
    assert [s.shard for s in stats] == [0, 1, 2] and all(s.streams > 20 for s in stats)
    assert sum(s.stream_steps for s in stats) > 0 and all(s.checkpoints >= 2 for s in stats)


def test_both_pools_answer_the_fleet_pool_interface_alike(twins):
    """step_valid, state, steps, keys and stats(): what FleetPool promises, the same
    answers from the sharded pool as from one local pool."""
    from stream_gru.fleet.interface import FleetPool

    members = [m for m in vars(FleetPool) if not m.startswith("_") or m in ("__contains__",)]
    for pool in (twins.sharded, twins.local):
        assert all(callable(getattr(pool, m, None)) or m == "model" for m in members), pool
    for _ in range(3):
        twins.tick()
    samples = {
        "k1": np.ones(3, np.float32),
        "k2": np.array([np.nan, 0, 0], np.float32),
        "nope": np.ones(3, np.float32),
        1.5: np.ones(3, np.float32),
        7: np.zeros(3),
    }
    got, want = twins.sharded.step_valid(samples), twins.local.step_valid(samples)
    assert list(got.outputs) == list(want.outputs) == ["k1", 7]
    np.testing.assert_array_equal(
        np.array(list(got.outputs.values())), np.array(list(want.outputs.values()))
    )
    assert got.rejected.keys() == want.rejected.keys() == {"k2", "nope", 1.5}
    assert got.rejected["nope"] == "stream not open" and "finite" in got.rejected["k2"]
    for key in ("k1", 7, ("site", 3), b"raw"):
        assert twins.sharded.steps(key) == twins.local.steps(key) > 0
        sharded_state, local_state = twins.sharded.state(key), twins.local.state(key)
        assert sharded_state.keys() == local_state.keys()
        for name in local_state:
            np.testing.assert_array_equal(sharded_state[name], local_state[name])
    with pytest.raises(KeyError, match="not open"):
        twins.sharded.state("nope")
    assert sorted(map(repr, twins.sharded.keys())) == sorted(map(repr, twins.local.keys()))
    stats, local = twins.sharded.stats(), twins.local.stats()
    assert isinstance(stats, sg.PoolStats) and len(stats) == len(stats.shards) == 3
    assert stats.open_streams == local.open_streams == len(KEYS)
    assert stats.stream_steps == local.stream_steps and stats.ticks == local.ticks
    assert stats.rejected_samples == local.rejected_samples == 3
    assert stats.capacity >= len(KEYS) and stats.tick_p50_us > 0
    assert stats[0] is stats.shards[0] and sum(s.streams for s in stats) == len(KEYS)


def test_more_shards_than_cores(gru_model):
    t = Twins(gru_model.onnx, shards=5)
    try:
        t.open(KEYS)
        for _ in range(3):
            t.tick()
        assert len({t.sharded.shard_of(k) for k in KEYS}) == 5
    finally:
        t.sharded.shutdown()


def test_adding_and_removing_shards_moves_exactly_the_keys_whose_owner_changes(twins):
    twins.tick()
    before = {k: twins.sharded.shard_of(k) for k in KEYS}
    new = twins.sharded.add_shard()
    ring = HashRing([0, 1, 2, new])
    expected = {k for k in KEYS if ring.owner(hash64(key_token(k))) != before[k]}
    after = {k: twins.sharded.shard_of(k) for k in KEYS}
    assert {k for k in KEYS if after[k] != before[k]} == expected
    assert twins.sharded.moved_keys == len(expected) > 0
    assert all(after[k] == new for k in expected)
    for _ in range(3):
        twins.tick()

    twins.sharded.remove_shard(1)
    moved = {k for k in KEYS if twins.sharded.shard_of(k) != after[k]}
    assert moved == {k for k in KEYS if after[k] == 1}
    assert twins.sharded.shards == [0, 2, new]
    for _ in range(3):
        twins.tick()
    twins.assert_same_states()


@pytest.mark.parametrize("on_disk", [False, True], ids=["checkpoints-in-driver", "checkpoint-dir"])
def test_a_killed_shard_restarts_from_its_checkpoint_and_replays(gru_model, tmp_path, on_disk):
    options = {"checkpoint_dir": tmp_path / "ckpt"} if on_disk else {}
    t = Twins(gru_model.onnx, shards=3, checkpoint_every=5, **options)
    try:
        t.open(KEYS)
        for tick in range(1, 24):
            if tick in (8, 17):
                kill_and_wait(t.sharded.actor(tick % 3))
            t.tick()
        t.assert_same_states()
        recoveries = t.sharded.recoveries
        assert [r.shard for r in recoveries] == [2, 2]
        # A checkpoint follows the call that fills a log to 5 operations: the open and
        # ticks 1-4, then ticks 5-9 (tick 8 replayed: 5, 6, 7 and itself), then 10-14;
        # tick 17's replay is 15, 16 and itself.
        assert [r.replayed_ops for r in recoveries] == [4, 3]
        assert recoveries[0].replayed_stream_steps > 0
        assert recoveries[0].checkpoint_streams == t.sharded.stats()[2].streams
        if on_disk:  # one file per shard: each confirmed checkpoint replaces the last
            assert sorted(p.name.split(".")[0] for p in (tmp_path / "ckpt").iterdir()) == [
                "ckpt-0", "ckpt-1", "ckpt-2",
            ]  # fmt: skip
    finally:
        t.sharded.shutdown()


class DiesWithTheNextCall:
    """Stands in for a shard's actor handle: kills the real actor, waits until Ray
    reports it dead, then sends the call to it, so the call is on its way to a dead
    shard (what a crash during the operation looks like to the driver)."""

    def __init__(self, actor):
        self.actor = actor
        self.apply = self

    def remote(self, op):
        ray.kill(self.actor)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                ray.get(self.actor.replay.remote([]))
            except ray.exceptions.RayActorError:
                break
            time.sleep(0.05)
        return self.actor.apply.remote(op)


def _dies_with_next_call(pool, shard):
    handle = pool._actors.handles[shard]
    handle.actor = DiesWithTheNextCall(handle.actor)


@pytest.mark.parametrize("operation", ["tick", "checkpoint", "add_shard", "expire", "save", "open"])
def test_a_shard_that_dies_during_an_operation_is_replayed_within_it(
    gru_model, tmp_path, operation
):
    t = Twins(gru_model.onnx, shards=2, checkpoint_every=1000)
    try:
        t.open(KEYS)
        for _ in range(3):
            t.tick()
        t.sharded.checkpoint()
        t.tick()
        _dies_with_next_call(t.sharded, 1)
        if operation == "tick":
            t.tick(share=1.0)
        elif operation == "checkpoint":
            t.sharded.checkpoint()
        elif operation == "add_shard":
            t.sharded.add_shard()
        elif operation == "expire":
            assert t.sharded.expire(3600) == {}
        elif operation == "save":
            t.sharded.save(tmp_path / "saved")
        else:
            t.open(["late-1", "late-2", "late-3", 99])
        assert [r.shard for r in t.sharded.recoveries] == [1]  # within the operation
        assert t.sharded.recoveries[0].replayed_ops >= 1  # the tick since the checkpoint
        for _ in range(2):
            t.tick()
        t.assert_same_states()
    finally:
        t.sharded.shutdown()


def test_a_shard_that_cannot_restart_makes_the_pool_refuse_every_call(gru_model, tmp_path):
    t = Twins(gru_model.onnx, shards=2, checkpoint_dir=tmp_path / "ckpt", checkpoint_every=2)
    try:
        t.open(KEYS)
        for _ in range(3):
            t.tick()
        for f in (tmp_path / "ckpt").glob("ckpt-0.*.pool"):  # the disk lost its checkpoint
            f.unlink()
        ray.kill(t.sharded.actor(0))
        with pytest.raises(ShardError, match="shard 0 died and could not be restarted"):
            t.tick()
        with pytest.raises(ShardError, match="unusable since shard 0 died"):
            t.sharded.step_batch(KEYS[:2], np.zeros((2, 3), np.float32))
        with pytest.raises(ShardError, match="load its last save"):
            t.sharded.open("new")
        assert [s.shard for s in t.sharded.stats()] == [0, 1]  # monitoring still answers
    finally:
        t.sharded.shutdown()


def test_save_and_load_continue_bit_exact(twins, gru_model, gru_twin, tmp_path):
    for _ in range(3):
        twins.tick()
    twins.sharded.save(tmp_path / "fleet")
    loaded = ShardedPool.load(gru_model.onnx, tmp_path / "fleet")
    try:
        assert loaded.shards == twins.sharded.shards and set(loaded) == set(KEYS)
        twins.sharded.shutdown()
        twins.sharded = loaded
        for _ in range(3):
            twins.tick()
        twins.assert_same_states()
    finally:
        loaded.shutdown()
    with pytest.raises(sg.SnapshotError, match="saved by another model"):
        ShardedPool.load(gru_twin.onnx, tmp_path / "fleet")
    (shard_file,) = (tmp_path / "fleet").glob("shard-1.*.pool")
    data = shard_file.read_bytes()
    shard_file.write_bytes(data[:-5])
    with pytest.raises(sg.SnapshotError, match=rf"{shard_file.name}"):
        ShardedPool.load(gru_model.onnx, tmp_path / "fleet")
    with pytest.raises(sg.SnapshotError, match=r"holds no readable sharded-pool\.json"):
        ShardedPool.load(gru_model.onnx, tmp_path)


def test_bad_input_changes_no_stream_on_any_shard(twins):
    twins.tick()
    sp = twins.sharded
    good = dict.fromkeys(["k1", "k2", 3, ("site", 3)], np.zeros(3, np.float32))
    with pytest.raises(KeyError, match=r"streams not open in this pool: \['ghost'\]"):
        sp.step({**good, "ghost": np.zeros(3)})
    with pytest.raises(ValueError, match=r"1 bad sample\(s\), no stream stepped: 'k3': .*nan"):
        sp.step({**good, "k3": np.array([0, np.nan, 0])})
    with pytest.raises(ValueError, match=r"X has shape \(2, 4\), expected \(stream, 3\)"):
        sp.step_batch(["k1", "k2"], np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"1 bad sample\(s\), no stream stepped: .*for 'k2'"):
        sp.step_batch(["k1", "k2"], np.array([[0, 0, 0], [0, np.inf, 0]]))
    with pytest.raises(ValueError, match=r"X has 3 rows for 2 keys"):
        sp.step_batch(["k1", "k2"], np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"keys named more than once in one tick: \['k1'\]"):
        sp.step_batch(["k1", "k1"], np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"streams already open or named twice: \['k1'\]"):
        sp.open_many(["new", "k1"])
    with pytest.raises(TypeError, match="stream key must be"):
        sp.open(1.5)
    with pytest.raises(TypeError, match=r"refused type.*float 3\.0"):  # 3 is open
        sp.step({3.0: np.zeros(3)})
    with pytest.raises(TypeError, match=r"got bool True"):  # so is 1
        sp.step_batch([True, 3], np.zeros((2, 3)))
    with pytest.raises(TypeError, match="a sequence of stream keys, got one str"):
        sp.open_many("abc")
    with pytest.raises(sg.SnapshotError):
        sp.restore("new", b"not a snapshot")
    assert "new" not in sp
    for _ in range(3):
        twins.tick()
    twins.assert_same_states()


def test_numpy_integer_keys_mean_the_equal_ints(twins):
    """A fleet numbered by a numpy array reaches the streams opened with ints."""
    sp, local = twins.sharded, twins.local
    ids = np.arange(40, dtype=np.uint16)  # KEYS holds the ints 0..39
    xs = twins.rng.standard_normal((40, 3)).astype(np.float32)
    np.testing.assert_array_equal(sp.step_batch(ids, xs), local.step_batch(list(range(40)), xs))
    out = sp.step({np.int8(5): xs[0]})
    assert list(out) == [5] and type(next(iter(out))) is int
    assert np.int64(7) in sp and sp.shard_of(np.int32(7)) == sp.shard_of(7)
    np.testing.assert_array_equal(out[5], local.step({5: xs[0]})[5])
    blob = sp.snapshot(np.uint64(9))
    sp.close(np.int16(9))
    sp.restore(np.int64(9), blob)
    assert 9 in sp and type(next(k for k in sp if k == 9)) is int
    with pytest.raises(ValueError, match="already open"):
        sp.open_many([np.int64(3)])
    twins.assert_same_states()


def test_expire_closes_the_idle_streams_on_every_shard(twins):
    awake = KEYS[::3]
    twins.sharded.step_batch(KEYS, np.ones((len(KEYS), 3), np.float32))
    time.sleep(0.3)
    twins.sharded.step_batch(awake, np.ones((len(awake), 3), np.float32))
    gone = twins.sharded.expire(0.25)
    assert set(gone) == set(KEYS) - set(awake)
    assert set(twins.sharded) == set(awake)
    assert all(twins.model.restore(b).steps == 1 for b in gone.values())
    with pytest.raises(ValueError, match="idle_seconds must be a non-negative number"):
        twins.sharded.expire(-1)


def test_threads_take_turns(twins):
    """Three threads tick disjoint keys at once; each gets what a local pool gives."""
    groups = [KEYS[0::3], KEYS[1::3], KEYS[2::3]]
    inputs = [np.random.default_rng(i).standard_normal((8, len(g), 3)).astype(np.float32)
              for i, g in enumerate(groups)]  # fmt: skip
    got: dict[int, list[np.ndarray]] = {}

    def run(i):
        got[i] = [twins.sharded.step_batch(groups[i], x) for x in inputs[i]]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, g in enumerate(groups):
        for x, y in zip(inputs[i], got[i], strict=True):
            np.testing.assert_array_equal(y, twins.local.step_batch(g, x))
    twins.assert_same_states()


def test_a_save_that_dies_before_its_manifest_leaves_the_previous_save_whole(
    twins, gru_model, tmp_path, monkeypatch
):
    import stream_gru.distributed.saves as distributed

    twins.tick()
    twins.sharded.save(tmp_path / "fleet")
    first = {k: twins.local.snapshot(k) for k in twins.local}
    twins.sharded.remove_shard(2)  # the next save has other shards and other files
    twins.tick()
    real_write = distributed.atomic_write_bytes

    def dies_at_the_manifest(path, data):
        if path.name == distributed.MANIFEST:
            raise KeyboardInterrupt("the process dies here")
        return real_write(path, data)

    monkeypatch.setattr(distributed, "atomic_write_bytes", dies_at_the_manifest)
    with pytest.raises(KeyboardInterrupt):
        twins.sharded.save(tmp_path / "fleet")
    monkeypatch.undo()
    loaded = ShardedPool.load(gru_model.onnx, tmp_path / "fleet")
    try:
        assert loaded.shards == [0, 1, 2] and set(loaded) == set(first)
        assert all(loaded.snapshot(k) == blob for k, blob in first.items())
    finally:
        loaded.shutdown()
    with pytest.raises(TypeError, match="from the saved manifest"):
        ShardedPool.load(gru_model.onnx, tmp_path / "fleet", replicas=4)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / distributed.MANIFEST).write_text('{"format": 1, "shards": []}')
    with pytest.raises(sg.SnapshotError, match="is not a readable manifest"):
        ShardedPool.load(gru_model.onnx, tmp_path / "empty")


def test_an_interrupted_call_makes_the_pool_refuse_every_call(twins, monkeypatch):
    """Ctrl-C while shards run a tick: they may have stepped, so the driver cannot
    vouch for any state; it says so instead of serving what it cannot know."""
    import stream_gru.distributed.actors as distributed

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(distributed.ray, "get", interrupted)
    with pytest.raises(KeyboardInterrupt):
        twins.sharded.step_batch(KEYS, np.zeros((len(KEYS), 3), np.float32))
    monkeypatch.undo()
    with pytest.raises(ShardError, match=r"interrupted \(KeyboardInterrupt\) while shards ran"):
        twins.sharded.step_batch(KEYS, np.zeros((len(KEYS), 3), np.float32))


def test_shards_that_cannot_be_placed_fail_at_once_with_a_reason(gru_model):
    with pytest.raises(ShardError, match=r"could not start within 3 s \(each asks for 1 CPUs"):
        ShardedPool(gru_model.onnx, shards=3, cpus_per_shard=1, restart_timeout=3)
    ShardedPool(gru_model.onnx, shards=2, cpus_per_shard=1).shutdown()  # the CPUs came back


def test_a_pool_after_shutdown_says_so(gru_model):
    pool = ShardedPool(gru_model.onnx, shards=2)
    pool.open("a")
    pool.shutdown()
    with pytest.raises(ShardError, match=r"shutdown\(\) was called"):
        pool.step({"a": np.zeros(3)})


def test_checkpoints_survive_a_save_into_their_folder_and_a_full_disk(gru_model, tmp_path):
    ckpt = tmp_path / "ckpt"
    t = Twins(gru_model.onnx, shards=2, checkpoint_dir=ckpt, checkpoint_every=3)
    try:
        t.open(KEYS)
        for _ in range(4):
            t.tick()
        t.sharded.save(ckpt)  # the save's cleanup must not take the live checkpoints
        ray.kill(t.sharded.actor(0))
        t.tick()
        assert [r.shard for r in t.sharded.recoveries] == [0]
        for f in ckpt.iterdir():  # the folder becomes unwritable: a file in its place
            f.unlink()
        ckpt.rmdir()
        ckpt.write_text("not a folder")
        with pytest.warns(RuntimeWarning, match="could not write its checkpoint"):
            for _ in range(4):
                t.tick()
        ckpt.unlink()  # the disk is back: the next checkpoint succeeds, the logs end
        for _ in range(4):
            t.tick()
        ray.kill(t.sharded.actor(1))
        t.tick()
        t.assert_same_states()
    finally:
        t.sharded.shutdown()


def test_a_save_of_0_1_0_loads_and_continues_exactly(gru_model, tmp_path):
    """Written by stream-gru 0.1.0 (commit 1841acf), before the layered layout."""
    import shutil
    from pathlib import Path

    files = Path(__file__).resolve().parents[1] / "formats" / "files"
    shutil.copytree(files / "gru-sharded-0.1.0", tmp_path / "fleet")
    x = np.load(files / "expected-0.1.0.npz")["x"]
    fleet = ShardedPool.load(gru_model.onnx, tmp_path / "fleet")
    try:
        keys = ["pump-1", 7, ("site", 3)]
        assert fleet.shards == [0, 1] and set(fleet) == set(keys)
        got = fleet.step_batch(keys, x[5:8])
        np.testing.assert_array_equal(got, np.load(files / "gru-sharded-0.1.0-next.npy"))
    finally:
        fleet.shutdown()


def test_a_batcher_ticks_a_sharded_pool_as_it_ticks_a_local_one(twins):
    """The Batcher takes any FleetPool: over the sharded pool its rows give the local
    pool's outputs and step counts."""
    import asyncio

    from stream_gru.serve import Batcher

    rng = np.random.default_rng(12)
    xs = rng.standard_normal((2, len(KEYS), 3)).astype(np.float32)

    async def main():
        async with Batcher(twins.sharded, max_delay=0.001) as batcher:
            first = await batcher.step_rows(KEYS, xs[0])
            second = await asyncio.gather(*(batcher.step(k, xs[1, i]) for i, k in enumerate(KEYS)))
            return first, np.stack(second)

    first, second = asyncio.run(main())
    assert first.errors == {} and (first.steps == 1).all()
    np.testing.assert_array_equal(first.outputs, twins.local.step_batch(KEYS, xs[0]))
    np.testing.assert_array_equal(second, twins.local.step_batch(KEYS, xs[1]))
    twins.assert_same_states()
