"""A sensor fleet sharded over a Ray cluster: throughput, a rebalance, a recovery.

The fleet's streams are spread over --shards Ray actors, each a shard holding its own
StreamPool, by consistent hashing of the sensor ids. Every tick sends each shard one
batched call, in parallel. Halfway through, a shard is added (only the keys the new
shard now owns move, by snapshots); later one shard's actor is killed, and the pool
restarts it from its last checkpoint and replays the ticks since. A local StreamPool
runs the same ticks beside it, and every output is compared bit for bit.

    .venv/bin/python examples/ray_fleet.py [--model runs/demo/model.onnx] [--sensors 20000]
    .venv/bin/python examples/ray_fleet.py --address ray://head:10001   # a real cluster

Without --address it starts a local Ray runtime (loopback only), even where a cluster
runs on this machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import stream_gru as sg

try:
    import ray

    from stream_gru.distributed import ShardedPool
except ImportError:
    raise SystemExit("this example needs Ray: pip install 'stream-gru[ray]'") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=Path("runs/demo/model.onnx"))
    parser.add_argument("--sensors", type=int, default=20_000, help="fleet size (20000)")
    parser.add_argument("--shards", type=int, default=2, help="shards to start with (2)")
    parser.add_argument("--ticks", type=int, default=60, help="ticks to run (60)")
    parser.add_argument("--rate", type=float, default=0.8, help="P(a sensor sends) per tick")
    parser.add_argument(
        "--checkpoint-every", type=int, default=10, help="ticks between checkpoints (10)"
    )
    parser.add_argument("--address", help="a Ray cluster's address; default: start one here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.model.exists():
        raise SystemExit(f"{args.model} does not exist: run `make demo` first, or pass --model")

    if args.address:
        ray.init(address=args.address)
    else:
        ray.init(address="local", include_dashboard=False, log_to_driver=False)
    try:
        model = sg.load(args.model, provider="cpu")
    except sg.StreamGRUError as e:
        raise SystemExit(f"this example needs a model made by stream-gru: {e}") from None
    width = model.spec.input_size
    rng = np.random.default_rng(args.seed)
    sensors = [f"sensor-{i:06d}" for i in range(args.sensors)]

    fleet = ShardedPool(args.model, shards=args.shards, checkpoint_every=args.checkpoint_every)
    local = model.pool()
    t0 = time.perf_counter()
    fleet.open_many(sensors)
    for key in sensors:
        local.open(key)
    print(f"{fleet!r}: opened in {time.perf_counter() - t0:.2f} s")

    add_at, kill_at = args.ticks // 3, 2 * args.ticks // 3
    tick_seconds, steps, recovered = [], 0, 0
    for tick in range(1, args.ticks + 1):
        if tick == add_at:
            before = {k: fleet.shard_of(k) for k in sensors}
            t0 = time.perf_counter()
            new = fleet.add_shard()
            moved = sum(fleet.shard_of(k) != before[k] for k in sensors)
            print(
                f"tick {tick}: added shard {new} in {time.perf_counter() - t0:.2f} s; "
                f"{moved:,} of {len(sensors):,} streams moved "
                f"({moved / len(sensors):.0%}; all of them to shard {new})"
            )
        if tick == kill_at:
            victim = fleet.shards[0]
            ray.kill(fleet.actor(victim))
            print(f"tick {tick}: killed shard {victim}'s actor")
        keys = [k for k in sensors if rng.random() < args.rate]
        xs = rng.standard_normal((len(keys), width)).astype(np.float32)
        t0 = time.perf_counter()
        ys = fleet.step_batch(keys, xs)
        tick_seconds.append(time.perf_counter() - t0)
        steps += len(keys)
        if not np.array_equal(ys, local.step_batch(keys, xs)):
            print(f"tick {tick}: outputs differ from the local pool", file=sys.stderr)
            return 1
        for r in fleet.recoveries[recovered:]:
            print(
                f"tick {tick}: shard {r.shard} restarted from its checkpoint "
                f"({r.checkpoint_streams:,} streams) and replayed {r.replayed_ops} operations "
                f"({r.replayed_stream_steps:,} stream-steps) in {r.seconds:.2f} s"
            )
        recovered = len(fleet.recoveries)

    total = sum(tick_seconds)
    print(
        f"{args.ticks} ticks, {steps:,} stream-steps in {total:.2f} s of tick time: "
        f"{steps / total:,.0f} stream-steps/s; tick p50 {np.median(tick_seconds) * 1e3:.1f} ms"
    )
    for s in fleet.stats():
        rate = s.stream_steps / s.busy_seconds if s.busy_seconds else 0.0
        print(
            f"  shard {s.shard}: {s.streams:,} streams, {s.stream_steps:,} stream-steps, "
            f"{rate:,.0f} stream-steps/s of its own busy time, {s.checkpoints} checkpoints, "
            f"{s.recoveries} recoveries"
        )
    print("every output equal to one local StreamPool's, bit for bit: yes")
    fleet.shutdown()
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
