"""The soak: a long run that must end exactly where PyTorch ends, with memory flat.

    python benchmarks/soak.py                 # the full soak, about two minutes
    python benchmarks/soak.py --quick         # seconds (what tests/tools/test_bench.py runs)

1. One stream, 1,000,000 chained ``Stream.step`` calls; every output is compared with
   PyTorch (float64) run over the whole sequence.
2. A pool of 10,000 streams, 1,000 ticks on a simulated clock (one second per tick):
   each stream sends with its own probability, 0.5% of the samples are bad (NaN) and
   must be rejected alone, streams close and new ones open every tick, idle streams
   expire every 50 ticks and some come back later from their snapshots. Every stream's
   samples come from its own signal (its own frequencies and phases), so a stream that
   was lost, mixed up with another or stepped twice shows at the end, when each open
   stream's state and last output are compared with PyTorch (float64) run over that
   stream's whole history.

RSS is sampled as it runs; "flat" means the growth after warm-up stays under 5 MB.
Exit status 1 when a check fails. Not a timed test: it prints what it measured.
Quiet machines give steadier rates; the checks do not depend on speed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import stream_gru as sg
from stream_gru.agreement import DEFAULT_RULE
from stream_gru.tools.bench.system import _rss_mb, machine

FLAT_MB = 5.0


@dataclass(frozen=True)
class Plan:
    steps: int = 1_000_000
    streams: int = 10_000
    ticks: int = 1_000
    expire_every: int = 50
    idle_limit: float = 20.0
    seed: int = 0


QUICK = Plan(steps=5_000, streams=300, ticks=60, expire_every=10, idle_limit=4.0)


def make_model(directory: Path, seed: int) -> tuple[sg.StreamingModel, Any]:
    """The fleet-size GRU (I=8, H=64, L=1, O=4), seeded random weights; and its float64
    PyTorch twin."""
    import torch

    from stream_gru.export import export_onnx
    from stream_gru.training.network import GRUConfig, GRUModel, default_names, save_checkpoint

    torch.manual_seed(seed)
    net = GRUModel(GRUConfig(input_size=8, hidden_size=64, num_layers=1, output_size=4))
    ckpt = save_checkpoint(
        directory / "soak.pt",
        net,
        feature_names=default_names("x", 8),
        output_names=default_names("y", 4),
    )
    model = sg.load(export_onnx(ckpt, directory / "soak.onnx").path, threads=1)
    return model, net.double().eval()


def torch_run(net64: Any, xs: np.ndarray, chunk: int = 100_000) -> np.ndarray:
    """PyTorch float64 outputs for one long sequence, run in chunks with the state carried."""
    import torch

    h, out = None, []
    with torch.inference_mode():
        for start in range(0, len(xs), chunk):
            y, h = net64(torch.from_numpy(xs[None, start : start + chunk]).double(), h)
            out.append(y[0].numpy())
    return np.concatenate(out)


def torch_final(net64: Any, xs: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch float64 final state and last output of padded sequences of ``lengths``."""
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence

    with torch.inference_mode():
        x = torch.from_numpy(xs).double()
        z = (x - net64.feature_mean) / net64.feature_std
        packed = pack_padded_sequence(z, torch.from_numpy(lengths), batch_first=True,
                                      enforce_sorted=False)  # fmt: skip
        _, h = net64.rnn(packed)
        y = torch.softmax(net64.head(h[-1]), dim=-1)
    return h.numpy().transpose(1, 0, 2), y.numpy()


# -- 1. one stream, a million steps ------------------------------------------------------
def soak_one_stream(model: sg.StreamingModel, net64: Any, plan: Plan) -> dict[str, Any]:
    rng = np.random.default_rng(plan.seed)
    xs = rng.standard_normal((plan.steps, 8)).astype(np.float32)
    ys = np.full((plan.steps, 4), np.nan, np.float32)  # touched now: RSS must not grow with it
    stream = model.stream()
    rss: list[float] = []
    t0 = time.perf_counter()
    for i in range(plan.steps):
        ys[i] = stream.step(xs[i])
        if i % max(1, plan.steps // 20) == 0:
            rss.append(_rss_mb() or 0.0)
    seconds = time.perf_counter() - t0
    rss.append(_rss_mb() or 0.0)
    ref = torch_run(net64, xs)
    diff = np.abs(ys - ref)
    worst = int(np.argmax(diff.max(axis=1)))
    return {
        "steps": plan.steps,
        "seconds": seconds,
        "steps_per_s": plan.steps / seconds,
        "max_abs_diff": float(diff.max()),
        "worst_step": worst,
        "final_abs_diff": float(diff[-1].max()),
        "excess": DEFAULT_RULE.excess(ys, ref),  # in limits of the agreement rule
        "rss_growth_mb": _growth(rss),
        "ok": DEFAULT_RULE.holds(ys, ref) and stream.steps == plan.steps,
    }


def _growth(rss: list[float]) -> float:
    """RSS growth after warm-up: the last sample less the second (the first precedes
    the buffers' first use)."""
    return rss[-1] - rss[1] if len(rss) > 2 else 0.0


# -- 2. a pool of streams coming and going ------------------------------------------------
class Fleet:
    """Every stream the soak ever opened: its signal, its steps, its last output."""

    def __init__(self, capacity: int, rng: np.random.Generator) -> None:
        self.freq = rng.uniform(0.01, 0.5, (capacity, 8))
        self.phase = rng.uniform(0, 2 * np.pi, (capacity, 8))
        self.rate = rng.uniform(0.02, 0.98, capacity)  # chance of sending in a tick
        self.steps = np.zeros(capacity, np.int64)
        self.last_sent = np.zeros(capacity)
        self.last_y = np.zeros((capacity, 4), np.float32)
        self.count = 0

    def new(self, now: float) -> int:
        key = self.count
        self.count += 1
        self.last_sent[key] = now
        return key

    def samples(self, keys: np.ndarray, steps: np.ndarray) -> np.ndarray:
        return np.sin(self.freq[keys] * steps[:, None] + self.phase[keys]).astype(np.float32)

    def history(self, key: int) -> np.ndarray:
        n = np.arange(self.steps[key])[:, None]
        return np.sin(self.freq[key] * n + self.phase[key]).astype(np.float32)


def soak_pool(model: sg.StreamingModel, net64: Any, plan: Plan) -> dict[str, Any]:
    rng = np.random.default_rng(plan.seed + 1)
    fleet = Fleet(plan.streams * 3, rng)
    now = [0.0]
    pool = model.pool(clock=lambda: now[0])
    open_keys: set[int] = set()
    parked: dict[int, bytes] = {}
    for _ in range(plan.streams):
        key = fleet.new(now[0])
        pool.open(key)
        open_keys.add(key)
    counts = dict(stream_steps=0, rejected=0, opened=0, closed=0, expired=0, restored=0)
    problems: list[str] = []
    rss: list[float] = []
    tick_seconds = []
    for tick in range(1, plan.ticks + 1):
        now[0] = float(tick)
        keys = np.fromiter(open_keys, np.int64, len(open_keys))
        keys = keys[rng.random(len(keys)) < fleet.rate[keys]]
        xs = fleet.samples(keys, fleet.steps[keys])
        bad = rng.random(len(keys)) < 0.005
        xs[bad, rng.integers(0, 8, int(bad.sum()))] = np.nan
        t0 = time.perf_counter()
        result = pool.step_valid(dict(zip(keys.tolist(), xs, strict=True)))
        tick_seconds.append(time.perf_counter() - t0)
        if set(result.rejected) != set(keys[bad].tolist()):
            problems.append(f"tick {tick}: rejected {sorted(result.rejected)[:5]}...")
        good = keys[~bad]
        if set(result.outputs) != set(good.tolist()):
            problems.append(f"tick {tick}: outputs for the wrong keys")
        fleet.last_y[good] = (
            np.stack([result.outputs[k] for k in good.tolist()]) if len(good) else 0
        )
        fleet.steps[good] += 1
        fleet.last_sent[good] = now[0]
        counts["stream_steps"] += len(good)
        counts["rejected"] += len(result.rejected)

        # streams leave and arrive
        leaving = rng.choice(sorted(open_keys), size=max(1, plan.streams // 500), replace=False)
        for key in leaving.tolist():
            pool.close(key)
            open_keys.discard(key)
        for _ in range(len(leaving)):
            key = fleet.new(now[0])
            pool.open(key)
            open_keys.add(key)
        counts["closed"] += len(leaving)
        counts["opened"] += len(leaving)

        if tick % plan.expire_every == 0:
            idle = {k for k in open_keys if now[0] - fleet.last_sent[k] >= plan.idle_limit}
            gone = pool.expire(plan.idle_limit)
            if set(gone) != idle:
                problems.append(f"tick {tick}: expired {len(gone)} streams, expected {len(idle)}")
            open_keys -= set(gone)
            parked.update(gone)
            counts["expired"] += len(gone)
            back = [k for k in list(parked) if rng.random() < 0.5]
            for key in back:
                pool.restore(key, parked.pop(key))
                fleet.last_sent[key] = now[0]
                open_keys.add(key)
            counts["restored"] += len(back)

        if set(pool) != open_keys:
            problems.append(f"tick {tick}: the pool holds other keys than the soak opened")
        if tick % max(1, plan.ticks // 20) == 0:
            rss.append(_rss_mb() or 0.0)

    diffs = _compare_with_torch(pool, fleet, net64, sorted(open_keys))
    ticks = np.array(tick_seconds)
    return {
        "streams": plan.streams,
        "ticks": plan.ticks,
        **counts,
        "open_at_end": len(open_keys),
        "tick_p50_ms": float(np.median(ticks) * 1e3),
        "tick_p99_ms": float(np.percentile(ticks, 99) * 1e3),
        "stream_steps_per_s": counts["stream_steps"] / float(ticks.sum()),
        **diffs,
        "rss_growth_mb": _growth(rss),
        "problems": problems[:20],
        "ok": not problems and diffs["excess"] <= 1.0,
    }


def _compare_with_torch(
    pool: sg.StreamPool, fleet: Fleet, net64: Any, keys: list[int], batch: int = 500
) -> dict[str, Any]:
    worst_state, worst_output, excess, steps_checked = 0.0, 0.0, 0.0, 0
    for start in range(0, len(keys), batch):
        part = [k for k in keys[start : start + batch] if fleet.steps[k] > 0]
        if not part:
            continue
        lengths = fleet.steps[part]
        xs = np.zeros((len(part), int(lengths.max()), 8), np.float32)
        for i, k in enumerate(part):
            xs[i, : lengths[i]] = fleet.history(k)
        h_ref, y_ref = torch_final(net64, xs, lengths)
        h_got = np.stack([pool.state(k)["h0"] for k in part])
        worst_state = max(worst_state, float(np.abs(h_got - h_ref).max()))
        worst_output = max(worst_output, float(np.abs(fleet.last_y[part] - y_ref).max()))
        excess = max(
            excess,
            DEFAULT_RULE.excess(h_got, h_ref),
            DEFAULT_RULE.excess(fleet.last_y[part], y_ref),
        )
        steps_checked += int(lengths.sum())
        if any(pool.steps(k) != fleet.steps[k] for k in part):
            excess = worst_state = float("inf")  # stepped more or less than it was sent
    return {
        "max_abs_diff_state": worst_state,
        "max_abs_diff_output": worst_output,
        "max_abs_diff": max(worst_state, worst_output),
        "excess": excess,  # in limits of the agreement rule: at most 1 agrees
        "stream_steps_checked": steps_checked,
    }


# -- report ------------------------------------------------------------------------------
def report(one: dict[str, Any], fleet: dict[str, Any]) -> str:
    verdict = {True: "ok", False: "FAILED"}
    return "\n".join(
        [
            f"soak, {time.strftime('%Y-%m-%d')}, {machine()['cpu']}, one thread",
            f"one stream: {one['steps']:,} steps in {one['seconds']:.1f} s "
            f"({one['steps_per_s']:,.0f} steps/s); every output within "
            f"{one['max_abs_diff']:.2e} of PyTorch float64 (worst at step "
            f"{one['worst_step']:,}; last step {one['final_abs_diff']:.2e}; "
            f"{one['excess']:.3f} of the agreement rule's limit); RSS growth "
            f"{one['rss_growth_mb']:+.2f} MB -> {verdict[one['ok']]}",
            f"pool: {fleet['streams']:,} streams, {fleet['ticks']:,} ticks, "
            f"{fleet['stream_steps']:,} stream-steps ({fleet['stream_steps_per_s']:,.0f}/s of "
            f"tick time; tick p50 {fleet['tick_p50_ms']:.1f} ms, p99 "
            f"{fleet['tick_p99_ms']:.1f} ms)",
            f"  {fleet['rejected']:,} bad samples rejected, {fleet['opened']:,} opened, "
            f"{fleet['closed']:,} closed, {fleet['expired']:,} expired, "
            f"{fleet['restored']:,} restored; {fleet['open_at_end']:,} open at the end",
            f"  against PyTorch float64 over each stream's whole history "
            f"({fleet['stream_steps_checked']:,} stream-steps): state "
            f"{fleet['max_abs_diff_state']:.2e}, last output {fleet['max_abs_diff_output']:.2e} "
            f"({fleet['excess']:.3f} of the rule's limit); RSS growth "
            f"{fleet['rss_growth_mb']:+.2f} MB -> {verdict[fleet['ok']]}",
            *[f"  problem: {p}" for p in fleet["problems"]],
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="a small soak of seconds")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else Plan()
    with tempfile.TemporaryDirectory() as tmp:
        model, net64 = make_model(Path(tmp), plan.seed)
        one = soak_one_stream(model, net64, plan)
        fleet = soak_pool(model, net64, plan)
    print(report(one, fleet))
    one_flat = abs(one["rss_growth_mb"]) <= FLAT_MB
    fleet_flat = abs(fleet["rss_growth_mb"]) <= FLAT_MB
    if args.json:
        args.json.write_text(json.dumps({"one_stream": one, "pool": fleet}, indent=2))
    return 0 if one["ok"] and fleet["ok"] and one_flat and fleet_flat else 1


if __name__ == "__main__":
    sys.exit(main())
