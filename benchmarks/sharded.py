"""Throughput of a ShardedPool (Ray actors) at 1, 2 and 4 shards against one local
StreamPool, and what sharding costs per tick.

    python benchmarks/sharded.py                  # the full run, about a minute on 2 cores
    python benchmarks/sharded.py --quick          # seconds (tests/tools/test_bench_sharded.py)
    python benchmarks/sharded.py --shards 1,2 --streams 1024,65536 --json /tmp/sharded.json

Model: the fleet-size GRU (I=8, H=64, L=1, O=4, ``gru-h64`` of ``make bench``) with seeded
random weights. Every session runs on one thread: the local pool's and each shard's.
Ray starts locally with every core of this machine; the shards reserve no CPUs, so the
driver and all shards share the cores.

Every tick steps every stream of the pool (``step_batch`` with a fixed key list). Per
pool size, the first tick of every contender runs from zero states on the same samples
and the table prints how far the sharded outputs differ from the local pool's (0: bit
for bit). Then three warm-up ticks each, and trials of about ``--trial-seconds`` of ticks,
the contenders' order rotating between trials (trial k starts with contender k mod n);
the tick time is the median over trials of the trial's mean, p99 of single ticks beside it.

Overhead per tick = the sharded tick's wall time less the longest time any shard spent in
its own ``step_batch`` during that tick (``ShardedPool.stats()``'s ``busy_seconds``, diffed
around each tick): the driver's input checks, routing, serialization, Ray's calls and
putting the results back in order, plus, where shards outnumber free cores, their waiting
for one. "checks" is the part spent in ``step_batch``'s input checks before any shard is
called. Checkpoints (every shard's pool sent to the driver) run between trials, outside
the timing, and are timed on their own.

Recovery, measured once after the throughput trials, on the largest pool with the most
shards: checkpoint, three ticks, ``ray.kill`` one shard, then the next tick, which
restarts the shard from its checkpoint and replays the three ticks and itself.

A benchmark reports, it does not judge: the exit status is 0 whatever it measures. On a
machine with few cores the shards cannot run side by side; the table says so.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import stream_gru as sg
from stream_gru.tools.bench.run import BUILTIN_MODELS, make_builtin_models
from stream_gru.tools.bench.system import machine, versions

MODEL = "gru-h64"
LOCAL = "local"


@dataclass(frozen=True)
class Plan:
    streams: tuple[int, ...] = (64, 1024, 16384, 65536)
    shards: tuple[int, ...] = (1, 2, 4)
    trials: int = 5
    trial_seconds: float = 0.5  # a trial runs about this long per contender
    min_ticks: int = 3  # per trial
    max_ticks: int = 200
    warmup_ticks: int = 3
    recovery_ticks: int = 3  # ticks between the checkpoint and the kill
    samples: int = 4  # distinct sample arrays, used in turn
    seed: int = 0


QUICK = Plan(streams=(16, 256), trials=2, trial_seconds=0.02, min_ticks=2, max_ticks=5,
             warmup_ticks=1, recovery_ticks=2, samples=2)  # fmt: skip


def _counts(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v.replace("_", "")) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{what} must be whole numbers separated by commas, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{what} must be at least 1 each, got {text!r}")
    return tuple(sorted(set(values)))


@dataclass
class Contender:
    name: str
    shards: int  # 0: the local pool
    pool: Any  # a StreamPool or a ShardedPool
    times: list[np.ndarray]  # wall seconds of each timed tick, one array per trial
    overhead: list[np.ndarray]  # sharded only: wall less the busiest shard's busy time
    busy: list[np.ndarray]
    checks: list[np.ndarray]
    checkpoints: list[float]


def _contender(name: str, shards: int, pool: Any) -> Contender:
    return Contender(name, shards, pool, [], [], [], [], [])


def _busy(pool: Any) -> np.ndarray:
    return np.array([s.busy_seconds for s in pool.stats()])


def _run_ticks(c: Contender, keys: list[int], xs: list[np.ndarray], start: int, count: int) -> Any:
    """``count`` ticks; wall seconds of each, and for a sharded pool its shards' busiest
    time and its input checks in each."""
    wall, busy, checks = np.empty(count), np.empty(count), np.empty(count)
    clock, pool, sharded = time.perf_counter, c.pool, c.shards > 0
    before = _busy(pool) if sharded else None
    for i in range(count):
        x = xs[(start + i) % len(xs)]
        t0 = clock()
        pool.step_batch(keys, x)
        wall[i] = clock() - t0
        if sharded:  # outside the timing: stats() counts every stream
            after = _busy(pool)
            busy[i] = float(np.max(after - before))
            checks[i] = wall[i] - pool.tick_seconds[-1]
            before = after
    return wall, busy, checks


def _open(c: Contender, keys: list[int]) -> None:
    if c.shards:
        c.pool.open_many(keys)
        c.pool.checkpoint()  # empties the replay log
    else:
        for key in keys:
            c.pool.open(key)


def _empty(c: Contender, model: sg.StreamingModel) -> None:
    if c.shards:
        c.pool.expire(0.0)  # closes every stream, one call per shard
        c.pool.checkpoint()
    else:
        c.pool = model.pool()
    c.times, c.overhead, c.busy, c.checks, c.checkpoints = [], [], [], [], []


def measure_size(
    contenders: list[Contender], model: sg.StreamingModel, n: int, plan: Plan, note: Any
) -> dict[str, Any]:
    rng = np.random.default_rng(plan.seed + n)
    keys = list(range(n))
    xs = [rng.standard_normal((n, 8), dtype=np.float32) for _ in range(plan.samples)]
    t0 = time.perf_counter()
    for c in contenders:
        _open(c, keys)
    note(f"{n:,} streams: opened in every pool in {time.perf_counter() - t0:.1f} s")

    first = {c.name: np.asarray(c.pool.step_batch(keys, xs[0]), np.float64) for c in contenders}
    diff = max(float(np.max(np.abs(v - first[LOCAL]), initial=0.0)) for v in first.values())
    count, nxt = {}, dict.fromkeys((c.name for c in contenders), 1 + plan.warmup_ticks)
    for c in contenders:
        warm, _, _ = _run_ticks(c, keys, xs, 1, plan.warmup_ticks)
        count[c.name] = int(np.clip(plan.trial_seconds / max(float(np.median(warm)), 1e-9),
                                    plan.min_ticks, plan.max_ticks))  # fmt: skip

    for trial in range(plan.trials):
        k = trial % len(contenders)
        for c in [*contenders[k:], *contenders[:k]]:
            gc.collect()
            wall, busy, checks = _run_ticks(c, keys, xs, nxt[c.name], count[c.name])
            nxt[c.name] += count[c.name]
            c.times.append(wall)
            if c.shards:
                c.overhead.append(wall - busy)
                c.busy.append(busy)
                c.checks.append(checks)
                t0 = time.perf_counter()
                c.pool.checkpoint()  # between trials, so the replay log stays short
                c.checkpoints.append(time.perf_counter() - t0)
    note(f"{n:,} streams: {plan.trials} trials done")

    out: dict[str, Any] = {}
    for c in contenders:
        means = [float(t.mean()) for t in c.times]
        tick = float(np.median(means))
        row: dict[str, Any] = {
            "shards": c.shards,
            "steps_per_s": n / tick,
            "tick_ms_p50": tick * 1e3,
            "tick_ms_p99": float(np.percentile(np.concatenate(c.times), 99)) * 1e3,
            "ticks_per_trial": count[c.name],
            "trials_tick_ms": [m * 1e3 for m in means],
        }
        if c.shards:
            over, busy = np.concatenate(c.overhead), np.concatenate(c.busy)
            row.update(
                overhead_ms_p50=float(np.median(over)) * 1e3,
                overhead_ms_p99=float(np.percentile(over, 99)) * 1e3,
                busiest_shard_ms_p50=float(np.median(busy)) * 1e3,
                checks_ms_p50=float(np.median(np.concatenate(c.checks))) * 1e3,
                checkpoint_ms_p50=float(np.median(c.checkpoints)) * 1e3,
            )
        out[c.name] = row
    base = out[LOCAL]["steps_per_s"]
    for row in out.values():
        row["ratio_to_local"] = row["steps_per_s"] / base
    return {"streams": n, "max_abs_diff_first_tick": diff, "contenders": out}


def measure_recovery(c: Contender, n: int, plan: Plan) -> dict[str, Any]:
    """Checkpoint, a few ticks, kill a shard, time the tick that brings it back."""
    import ray

    pool = c.pool
    rng = np.random.default_rng(plan.seed + 1)
    keys = list(range(n))
    xs = [rng.standard_normal((n, 8), dtype=np.float32) for _ in range(plan.samples)]
    pool.checkpoint()
    for i in range(plan.recovery_ticks):
        pool.step_batch(keys, xs[i % len(xs)])
    victim = pool.shards[0]
    ray.kill(pool.actor(victim))
    before = len(pool.recoveries)
    tick_s, ticks = 0.0, 0
    while len(pool.recoveries) == before and ticks < 5:  # the kill lands asynchronously
        t0 = time.perf_counter()
        pool.step_batch(keys, xs[ticks % len(xs)])
        tick_s = time.perf_counter() - t0
        ticks += 1
    if len(pool.recoveries) == before:
        return {"streams": n, "shards": c.shards, "killed_shard": victim, "recovered": False}
    r = pool.recoveries[-1]
    return {
        "streams": n,
        "shards": c.shards,
        "killed_shard": r.shard,
        "recovered": True,
        "ticks_after_kill": ticks,
        "tick_seconds": tick_s,
        "recovery_seconds": r.seconds,
        "checkpoint_streams": r.checkpoint_streams,
        "replayed_ops": r.replayed_ops,
        "replayed_stream_steps": r.replayed_stream_steps,
    }


def _fmt_n(x: float) -> str:
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.0f}k" if x >= 1e4 else f"{x:,.0f}"


def report(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"sharded pool, {r['date'][:10]}, {m['cpu']}, {m['cores']} cores, "
        f"Ray {r['versions'].get('ray')}, model {MODEL} (I=8, H=64, L=1, O=4), "
        f"one thread per session{', QUICK (counts too small to judge)' if r['quick'] else ''}",
        "every stream in every tick; tick = median over "
        f"{r['settings']['trials']} trials; overhead = tick - busiest shard's own step time",
        "",
        f"{'streams':>8} {'contender':<10} {'steps/s':>8} {'x local':>7} {'tick p50':>9} "
        f"{'p99':>8} {'busiest':>8} {'overhead':>9} {'p99':>8} {'checks':>7} {'ckpt':>7}",
        f"{'':>8} {'':<10} {'':>8} {'':>7} {'ms':>9} {'ms':>8} {'shard ms':>8} "
        f"{'ms':>9} {'ms':>8} {'ms':>7} {'ms':>7}",
    ]
    for size in r["sizes"]:
        for i, (name, c) in enumerate(size["contenders"].items()):
            head = f"{size['streams']:>8,} " if i == 0 else f"{'':>9}"
            cells = f"{head}{name:<10} {_fmt_n(c['steps_per_s']):>8} {c['ratio_to_local']:>6.2f}x "
            cells += f"{c['tick_ms_p50']:>9.2f} {c['tick_ms_p99']:>8.2f}"
            if c["shards"]:
                cells += (
                    f" {c['busiest_shard_ms_p50']:>8.2f} {c['overhead_ms_p50']:>9.2f} "
                    f"{c['overhead_ms_p99']:>8.2f} {c['checks_ms_p50']:>7.2f} "
                    f"{c['checkpoint_ms_p50']:>7.1f}"
                )
            lines.append(cells)
        lines.append(
            f"{'':>9}first tick from zero states: sharded outputs within "
            f"{size['max_abs_diff_first_tick']:.1e} of the local pool's"
        )
    rec = r["recovery"]
    lines.append("")
    if rec is None:
        lines.append("recovery: not measured (no sharded contender)")
    elif not rec["recovered"]:
        lines.append(f"recovery: shard {rec['killed_shard']} was killed but no tick recovered it")
    else:
        lines.append(
            f"recovery ({rec['streams']:,} streams, {rec['shards']} shards): shard "
            f"{rec['killed_shard']} killed; the next tick took {rec['tick_seconds']:.2f} s, of "
            f"which the restart {rec['recovery_seconds']:.2f} s: a new actor from a checkpoint "
            f"of {rec['checkpoint_streams']:,} streams, {rec['replayed_ops']} ops replayed "
            f"({rec['replayed_stream_steps']:,} stream-steps)"
        )
    cores, most = m["cores"], max(r["settings"]["shards"], default=0)
    lines.append("")
    lines.append(
        f"note: {cores} cores here, shared by the driver and every shard (they reserve no "
        f"CPUs): this machine cannot show scaling beyond {cores} cores"
        + (f", and {most} shards and the driver compete for them." if most >= cores else ".")
        + " Compare contenders within one run; absolute times move between runs."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])  # fmt: skip
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run of seconds: pools of "
                             f"{','.join(map(str, QUICK.streams))} streams, "
                             f"{QUICK.trials} trials of a few ticks")  # fmt: skip
    parser.add_argument("--shards", type=lambda s: _counts(s, "--shards"), metavar="N,N,...",
                        help="shard counts to measure (default 1,2,4)")  # fmt: skip
    parser.add_argument("--streams", type=lambda s: _counts(s, "--streams"), metavar="N,N,...",
                        help="pool sizes, every stream stepped in every tick "
                             "(default 64,1024,16384,65536; with --quick 16,256)")  # fmt: skip
    parser.add_argument("--trial-seconds", type=float, metavar="S",
                        help="length of one trial per contender (default 0.5)")  # fmt: skip
    parser.add_argument("--json", type=Path, metavar="PATH",
                        help="also write every figure to this file")  # fmt: skip
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else Plan()
    if args.shards:
        plan = replace(plan, shards=args.shards)
    if args.streams:
        plan = replace(plan, streams=args.streams)
    if args.trial_seconds is not None:
        if not args.trial_seconds > 0:
            raise SystemExit(f"--trial-seconds must be positive, got {args.trial_seconds}")
        plan = replace(plan, trial_seconds=args.trial_seconds)

    try:
        import ray

        from stream_gru.distributed import ShardedPool
    except ImportError as e:
        raise SystemExit(f"{e}: the sharded benchmark needs the ray extra") from None

    def note(msg: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {msg}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    cores = os.cpu_count() or 1
    ray.init(address="local", num_cpus=cores, include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            (case,) = [c for c in make_builtin_models(Path(tmp), plan.seed) if c.name == MODEL]
            model = sg.load(case.path, threads=1)
            contenders = [_contender(LOCAL, 0, model.pool())]
            for k in plan.shards:
                pool = ShardedPool(case.path, shards=k, checkpoint_every=10**9, threads=1)
                contenders.append(_contender(f"sharded-{k}", k, pool))
            note(f"Ray up with {cores} CPUs, {sum(plan.shards)} shards started")
            sizes = []
            for i, n in enumerate(plan.streams):
                sizes.append(measure_size(contenders, model, n, plan, note))
                if i < len(plan.streams) - 1:
                    for c in contenders:
                        _empty(c, model)
            recovery = None
            if plan.shards:
                most = max(contenders, key=lambda c: c.shards)
                recovery = measure_recovery(most, plan.streams[-1], plan)
                note("recovery measured")
            for c in contenders:
                if c.shards:
                    c.pool.shutdown()
    finally:
        ray.shutdown()

    results = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine(),
        "versions": {**versions(), "ray": ray.__version__},
        "model": {"name": MODEL, **dict(BUILTIN_MODELS)[MODEL], "threads": 1},
        "settings": {**asdict(plan), "ray_num_cpus": cores},
        "sizes": sizes,
        "recovery": recovery,
        "seconds": time.perf_counter() - started,
    }
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
