"""A simulated sensor fleet served by one StreamPool.

Thousands of sensors send samples at 10 Hz, each with some probability per tick;
sensors drop out and come back; a few send garbage (NaN, wrong length). Every tick
makes one batched call for the sensors that sent something. Streams idle for
--idle seconds are expired and their snapshots archived; a sensor that comes back
is restored from its snapshot, so it continues where it left off. Time is simulated
(an injected clock), so the run is reproducible and fast.

    .venv/bin/python examples/sensor_fleet.py [--model runs/demo/model.onnx] [--sensors 10000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import stream_gru as sg


class SimClock:
    """Simulated monotonic seconds, moved by the simulation."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=Path("runs/demo/model.onnx"))
    parser.add_argument("--sensors", type=int, default=10_000, help="fleet size (10000)")
    parser.add_argument("--ticks", type=int, default=600, help="ticks of 100 ms simulated (600)")
    parser.add_argument(
        "--rate", type=float, default=0.5, help="P(an online sensor sends) per tick"
    )
    parser.add_argument(
        "--dropout", type=float, default=0.002, help="P(a sensor goes offline) per tick"
    )
    parser.add_argument("--garbage", type=float, default=0.001, help="fraction of garbage samples")
    parser.add_argument(
        "--idle", type=float, default=10.0, help="expire after this many idle seconds"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.model.exists():
        raise SystemExit(f"{args.model} does not exist: run `make demo` first, or pass --model")

    rng = np.random.default_rng(args.seed)
    try:
        model = sg.load(args.model, provider="cpu")
    except sg.StreamGRUError as e:
        raise SystemExit(f"this example needs a model made by stream-gru: {e}") from None
    spec = model.spec
    if len(spec.sample_shape) != 1:
        raise SystemExit(
            f"{args.model} takes samples of shape {spec.sample_shape}; this "
            "example simulates sensors that send one vector per sample"
        )
    mean = np.asarray(spec.normalization.get("feature_mean", (0.0,) * spec.input_size), np.float32)
    std = np.asarray(spec.normalization.get("feature_std", (1.0,) * spec.input_size), np.float32)
    clock = SimClock()
    pool = model.pool(clock=clock)
    n = args.sensors
    keys = [f"sensor-{i:05d}" for i in range(n)]
    signal = rng.standard_normal((n, spec.input_size)).astype(np.float32)
    offline_until = np.zeros(n)  # simulated time at which an offline sensor returns
    archive: dict[str, bytes] = {}  # snapshots of expired streams, as an application keeps them
    restored = 0
    latencies: list[float] = []
    steps = 0
    live = sys.stderr.isatty()
    started = time.perf_counter()

    for tick in range(args.ticks):
        clock.now = tick * 0.1
        online = offline_until <= clock.now
        drops = online & (rng.random(n) < args.dropout)
        offline_until[drops] = clock.now + rng.uniform(5, 60, drops.sum())
        sending = np.flatnonzero(online & ~drops & (rng.random(n) < args.rate))
        signal[sending] = 0.9 * signal[sending] + 0.44 * rng.standard_normal(
            (len(sending), spec.input_size)
        )
        samples = {}
        for i in sending:
            key = keys[i]
            if key not in pool:
                if key in archive:
                    pool.restore(key, archive.pop(key))
                    restored += 1
                else:
                    pool.open(key)
            sample = mean + std * signal[i]
            if rng.random() < args.garbage:  # a faulty sensor
                sample = np.full(spec.input_size, np.nan) if rng.random() < 0.5 else sample[:-1]
            samples[key] = sample
        t0 = time.perf_counter()
        result = pool.step_valid(samples)  # the good ones step; the rest come back with reasons
        latencies.append(time.perf_counter() - t0)
        steps += len(result.outputs)
        archive.update(pool.expire(idle_seconds=args.idle))
        if live and tick % 10 == 0:
            s = pool.stats()
            print(
                f"\rtick {tick:5d}/{args.ticks}  open {s.open_streams:6d}  stepped {steps:9,d}  "
                f"rejected {s.rejected_samples:5d}  expired {s.expired_streams:5d}  "
                f"p50 {s.tick_p50_us / 1000:6.2f} ms",
                end="",
                file=sys.stderr,
                flush=True,
            )
    if live:
        print(file=sys.stderr)
    wall = time.perf_counter() - started
    s = pool.stats()
    lat = np.asarray(latencies) * 1000
    simulated = args.ticks / 10
    print(f"fleet of {n} sensors, {args.ticks} ticks ({simulated:.0f} s simulated) in {wall:.1f} s")
    print(
        f"stream-steps        {steps:,} ({steps / lat.sum() * 1000:,.0f} per second of tick time)"
    )
    p50, p99 = np.percentile(lat, [50, 99])
    print(f"tick latency        p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    print(f"samples rejected    {s.rejected_samples:,}")
    print(f"streams expired     {s.expired_streams:,} (restored on return: {restored:,})")
    print(f"open at the end     {s.open_streams:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
