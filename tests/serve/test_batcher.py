"""The embedded Batcher: many coroutines, one pool, ticks within a deadline; every
output checked against each key's own ``Stream``."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

import stream_gru as sg
from stream_gru.agreement import assert_agree
from stream_gru.errors import BatcherClosedError, QueueFullError
from stream_gru.serve import Batcher, TickReport


@pytest.fixture
def model(gru_model):
    return sg.load(gru_model.onnx)


def _run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 60))


def test_hundreds_of_coroutines_get_their_own_streams_outputs(model):
    rng = np.random.default_rng(3)
    keys = [f"dev-{i}" for i in range(300)]
    steps = 12
    xs = {k: rng.standard_normal((steps, 3)).astype(np.float32) for k in keys}
    pool = model.pool()
    pool.open_many(keys)
    reports: list[TickReport] = []

    async def device(batcher, key):
        ys = []
        for t in range(steps):
            await asyncio.sleep(float(rng.uniform(0, 0.004)))
            ys.append(await batcher.step(key, xs[key][t]))
        return np.stack(ys)

    async def main():
        async with Batcher(pool, max_delay=0.003, on_tick=reports.append) as batcher:
            return await asyncio.gather(*(device(batcher, k) for k in keys))

    outputs = _run(main())
    for key, got in zip(keys, outputs, strict=True):
        assert_agree(got, model.stream().feed(xs[key]), what=key)
        assert pool.steps(key) == steps
    sizes = [r.size for r in reports]
    assert sum(sizes) == len(keys) * steps and max(sizes) > 50  # ticks really batch
    assert all(r.rejected == 0 for r in reports)


def test_a_keys_samples_run_in_order_in_consecutive_ticks(model):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((20, 3)).astype(np.float32)
    pool = model.pool()
    pool.open_many(["a", "b"])
    reports: list[TickReport] = []

    async def main():
        async with Batcher(pool, max_delay=0.01, on_tick=reports.append) as batcher:
            # all of a's samples queued at once, b's in between: 20 ticks for a
            a = [asyncio.ensure_future(batcher.step("a", row)) for row in x]
            b = await batcher.feed("b", x[:5])
            return np.stack(await asyncio.gather(*a)), b

    a, b = _run(main())
    assert_agree(a, model.stream().feed(x), what="a")
    assert_agree(b, model.stream().feed(x[:5]), what="b")
    assert len(reports) == 20 and [r.size for r in reports[:5]] == [2] * 5


def test_a_bad_sample_or_unknown_key_fails_alone(model):
    pool = model.pool()
    pool.open_many(["a", "b"])

    async def main():
        async with Batcher(pool, max_delay=0.01) as batcher:
            good = asyncio.ensure_future(batcher.step("a", [1.0, 2.0, 3.0]))
            with pytest.raises(ValueError, match="finite"):
                await batcher.step("b", [np.nan, 0.0, 0.0])
            with pytest.raises(ValueError, match=r"shape \(2,\)"):
                await batcher.step("b", [1.0, 2.0])
            with pytest.raises(KeyError, match="'nope' is not open"):
                await batcher.step("nope", [1.0, 2.0, 3.0])
            with pytest.raises(TypeError, match="a stream key must be"):
                await batcher.step(1.5, [1.0, 2.0, 3.0])
            return await good

    y = _run(main())
    assert_agree(y, model.stream().step([1.0, 2.0, 3.0]))
    assert pool.steps("a") == 1 and pool.steps("b") == 0


def test_a_stream_closed_while_its_sample_waits_fails_alone_in_its_tick(model):
    pool = model.pool()
    pool.open_many(["a", "b"])

    async def main():
        async with Batcher(pool, max_delay=0.05) as batcher:
            a = asyncio.ensure_future(batcher.step("a", [1.0, 2.0, 3.0]))
            b = asyncio.ensure_future(batcher.step("b", [1.0, 2.0, 3.0]))
            await asyncio.sleep(0)
            pool.close("b")  # by someone else, before the tick
            return await asyncio.gather(a, b, return_exceptions=True)

    a, b = _run(main())
    assert isinstance(a, np.ndarray) and isinstance(b, KeyError) and "'b'" in str(b)
    assert pool.steps("a") == 1


def test_open_unknown_opens_a_key_on_its_first_sample(model):
    pool = model.pool()

    async def main():
        async with Batcher(pool, max_delay=0.001, open_unknown=True) as batcher:
            return await batcher.step_counted("new", [1.0, 2.0, 3.0])

    _, steps = _run(main())
    assert "new" in pool and steps == 1 and pool.steps("new") == 1


def test_the_deadline_runs_from_the_oldest_sample(model):
    pool = model.pool()
    pool.open_many(["a", "b"])
    reports: list[TickReport] = []

    async def main():
        async with Batcher(pool, max_delay=0.2, on_tick=reports.append) as batcher:
            first = asyncio.ensure_future(batcher.step("a", [1.0, 2.0, 3.0]))
            await asyncio.sleep(0.1)  # half the deadline later
            await asyncio.gather(first, batcher.step("b", [1.0, 2.0, 3.0]))

    _run(main())
    (tick,) = reports  # one tick took both: due when the first had waited 0.2 s
    assert tick.size == 2
    assert 0.19 <= tick.waits[0] < 1.0 and tick.waits[1] < tick.waits[0] - 0.05


def test_a_full_batch_ticks_before_the_deadline(model):
    pool = model.pool()
    pool.open_many(range(4))
    reports: list[TickReport] = []

    async def main():
        async with Batcher(pool, max_delay=30, max_batch=4, on_tick=reports.append) as b:
            await asyncio.gather(*(b.step(k, [1.0, 2.0, 3.0]) for k in range(4)))

    _run(main())
    assert [r.size for r in reports] == [4] and reports[0].waits.max() < 10


def test_a_full_queue_refuses_at_once_and_changes_nothing(model):
    pool = model.pool()
    pool.open_many(range(5))

    async def main():
        async with Batcher(pool, max_delay=0.2, max_queue=3) as batcher:
            queued = [asyncio.ensure_future(batcher.step(k, [1.0, 2.0, 3.0])) for k in range(3)]
            await asyncio.sleep(0)
            with pytest.raises(QueueFullError, match="max_queue 3"):
                await batcher.step(3, [1.0, 2.0, 3.0])
            with pytest.raises(QueueFullError):
                await batcher.feed(4, np.ones((2, 3)))
            many = await batcher.step_many({3: [1.0, 2.0, 3.0]})
            assert isinstance(many[3], QueueFullError)
            await asyncio.gather(*queued)

    _run(main())
    assert [pool.steps(k) for k in range(5)] == [1, 1, 1, 0, 0]


def test_a_cancelled_sample_is_withdrawn_and_changes_nothing(model):
    pool = model.pool()
    pool.open_many(["a", "b"])

    async def main():
        async with Batcher(pool, max_delay=0.2) as batcher:
            a = asyncio.ensure_future(batcher.step("a", [1.0, 2.0, 3.0]))
            b = asyncio.ensure_future(batcher.feed("b", np.ones((3, 3))))
            await asyncio.sleep(0.01)
            a.cancel()
            b.cancel()
            await asyncio.gather(a, b, return_exceptions=True)
            assert batcher.waiting == 0

    _run(main())
    assert pool.steps("a") == 0 and pool.steps("b") == 0


def test_aclose_runs_what_is_queued_then_refuses(model):
    pool = model.pool()
    pool.open_many(["a"])

    async def main():
        batcher = Batcher(pool, max_delay=30)
        batcher.start()
        pending = asyncio.ensure_future(batcher.feed("a", np.ones((3, 3))))
        await asyncio.sleep(0.01)
        await batcher.aclose()
        ys = await pending
        with pytest.raises(BatcherClosedError):
            await batcher.step("a", [1.0, 2.0, 3.0])
        with pytest.raises(BatcherClosedError):
            await batcher.step_many({"a": [1.0, 2.0, 3.0]})
        return ys

    ys = _run(main())
    assert ys.shape == (3, 2) and pool.steps("a") == 3


def test_step_many_answers_each_sample(model):
    pool = model.pool()
    pool.open_many(["a", "b"])

    async def main():
        async with Batcher(pool, max_delay=0.001) as batcher:
            return await batcher.step_many(
                {"a": [1.0, 2.0, 3.0], "b": [np.inf, 0, 0], "c": [1.0, 2.0, 3.0], 2.5: [0, 0, 0]}
            )

    out = _run(main())
    y, steps = out["a"]
    assert steps == 1 and y.shape == (2,)
    assert isinstance(out["b"], ValueError) and isinstance(out["c"], KeyError)
    assert isinstance(out[2.5], TypeError)
    assert pool.steps("b") == 0


def test_a_chunk_is_checked_whole_before_any_of_it_queues(model):
    pool = model.pool()
    pool.open_many(["a"])
    bad = np.ones((5, 3))
    bad[3, 1] = np.nan

    async def main():
        async with Batcher(pool, max_delay=0.001) as batcher:
            with pytest.raises(ValueError, match="step 3"):
                await batcher.feed("a", bad)
            assert batcher.waiting == 0

    _run(main())
    assert pool.steps("a") == 0


def test_bad_settings_are_refused():
    class Pool:
        model = None

    for kwargs, message in (({"max_delay": -1}, "max_delay"), ({"max_batch": 0}, "max_batch"),
                            ({"max_queue": True}, "max_queue")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            Batcher(Pool(), **kwargs)  # type: ignore[arg-type]
