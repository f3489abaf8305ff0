"""A fleet's cost per stream-step from one stream to a million, GRU and LSTM, beside the
baselines: what ``make bench`` prints for the goals of flat scaling.

    python benchmarks/scale.py                 # the full run, a few minutes on 2 cores
    python benchmarks/scale.py --quick         # seconds (tests/tools/test_bench_scale.py)

Models: the fleet-size GRU (I=8, H=64, L=1, O=4, ``gru-h64`` of ``make bench``) and an
LSTM of the same sizes, seeded random weights (needs the train extra). Every contender
on one thread, every stream of the pool stepped in every tick:

- ``StreamPool``: ``step_batch`` with the fleet's numpy array of ids;
- by hand: gather the states, ``session.run`` of the model's own graph, scatter back,
  handed slot indices (no key lookup, no input checks);
- PyTorch eager: the same gather/run/scatter on torch tensors.

Every fleet is built first; then three trials, each visiting every size in turn with
the contenders in rotating order, about 0.4 s of ticks each; a trial's rate is its whole
time over its stream-steps; the median over trials, and its share of the single-thread
GEMM ceiling. The ratio goals (flat
with fleet size, LSTM against GRU) are measured apart, with GRU pools of 4,096, 65,536
and 1,048,576 streams and an LSTM pool of 4,096 ticked in rotation, 15 rounds of about
0.15 s each, so that the machine's drift falls on both sides of each ratio, each round's rate its
whole time over its stream-steps (measured one size after another, or as medians of
single ticks, the same code read anywhere from 0.82x to 1.0x). Then, at
a million streams: ``open_many``, the memory per stream beyond the state (tracemalloc,
in a child process), ``save`` and ``load_pool``, a tick of 10% of the streams against a
full one, and the share of a 65,536-stream tick spent looking up and checking its keys.
Each goal is printed beside its figure. A benchmark reports, it does not judge: the
exit status is 0 whatever it measures. Writes scale.json, scale.txt, scale.png.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import stream_gru as sg
from stream_gru.tools.bench.contenders import by_hand_fleet, plain_session, torch_fleet
from stream_gru.tools.bench.report import save_results
from stream_gru.tools.bench.system import machine, measure_ceilings, stream_step_flops, versions

SIZES = (1, 16, 256, 1024, 4096, 16384, 65536, 262144, 1048576)
SHAPE = {"input_size": 8, "hidden_size": 64, "num_layers": 1, "output_size": 4}


@dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...] = SIZES
    trials: int = 3
    trial_seconds: float = 0.4
    million: int = 1_000_000  # the fleet of the million-stream goals
    key_streams: int = 65536
    paired: tuple[int, ...] = (4096, 65536, 1048576)  # the ratio goals' fleets
    rounds: int = 15  # rounds of the ratio goals' rotation
    round_seconds: float = 0.15


QUICK = Plan(sizes=(1, 16, 256, 1024), trials=2, trial_seconds=0.02, million=20_000,
             key_streams=4096, paired=(256, 1024, 4096), rounds=2,
             round_seconds=0.01)  # fmt: skip


def build_models(directory: Path) -> dict[str, tuple[Path, Path]]:
    """The GRU and the LSTM, exported with seeded random weights: {name: (onnx, pt)}."""
    import torch

    from stream_gru.export import export_onnx
    from stream_gru.training.network import GRUConfig, GRUModel, default_names, save_checkpoint

    out = {}
    for cell in ("gru", "lstm"):
        torch.manual_seed(0)
        cfg = GRUConfig(task="classification", cell=cell, **SHAPE)
        names = default_names("x", cfg.input_size), default_names("y", cfg.output_size)
        ckpt = save_checkpoint(directory / f"{cell}.pt", GRUModel(cfg), feature_names=names[0],
                               output_names=names[1])  # fmt: skip
        out[f"{cell}-h64"] = (export_onnx(ckpt, directory / f"{cell}.onnx").path, ckpt)
    return out


def _time(tick: Any, seconds: float) -> float:
    """Seconds per tick: the whole time of about ``seconds`` of ticks (at least one) over
    their count. Not a median of single ticks: on a shared machine a short tick can
    dodge the pauses that a long one always absorbs, which would favour small fleets."""
    count, start = 0, time.perf_counter()
    while count == 0 or time.perf_counter() - start < seconds:
        tick()
        count += 1
    return (time.perf_counter() - start) / count


def measure_sizes(onnx: Path, ckpt: Path, plan: Plan, log: Any) -> list[dict[str, Any]]:
    """Stream-steps/s of each contender at each size, every stream in every tick. Every
    fleet is built first, then each trial visits every size in turn (the contenders in
    rotating order), so that a slow spell of the machine spreads over all sizes."""
    import torch

    from stream_gru.training.network import load_checkpoint

    torch.set_num_threads(1)
    model = sg.load(onnx, provider="cpu")
    session = plain_session(onnx)
    net = load_checkpoint(ckpt).eval()
    seconds: dict[tuple[int, str], list[float]] = {}
    with torch.inference_mode():
        fleets = {n: _fleet(n, model, session, net, torch) for n in plan.sizes}
        for trial in range(plan.trials):
            for n, contenders in fleets.items():
                names = list(contenders)
                for name in names[trial % 3 :] + names[: trial % 3]:
                    seconds.setdefault((n, name), []).append(
                        _time(contenders[name], plan.trial_seconds)
                    )
            log(f"  trial {trial + 1} of {plan.trials}")
    rows = []
    for n, contenders in fleets.items():
        rate = {name: n / float(np.median(seconds[(n, name)])) for name in contenders}
        rows.append({"streams": n, "steps_per_s": rate})
        log(f"  {n:>9,} streams: " + ", ".join(f"{k} {v / 1e6:.2f} M/s" for k, v in rate.items()))
    return rows


def _fleet(n: int, model: sg.StreamingModel, session: Any, net: Any, torch: Any) -> dict[str, Any]:
    """The three contenders' ticks of ``n`` streams, each run once (warm-up)."""
    spec = model.spec
    xs = np.random.default_rng(n).standard_normal((n, spec.input_size)).astype(np.float32)
    ids, slots = np.arange(n), [np.arange(n)]
    pool = model.pool()
    pool.open_many(ids)
    hand = by_hand_fleet(session, spec, n, slots, [xs])
    eager = torch_fleet(net, torch, n, slots, [xs])
    contenders = {
        "pool": lambda: pool.step_batch(ids, xs),
        "by hand": lambda: hand(0),
        "PyTorch eager": lambda: eager(0),
    }
    for tick in contenders.values():
        tick()
    return contenders


_MEMORY_CHILD = r"""
import json, sys, tracemalloc
import numpy as np, stream_gru as sg
model = sg.load(sys.argv[1], provider="cpu")
n = int(sys.argv[2])
tracemalloc.start()
before = tracemalloc.get_traced_memory()[0]
pool = model.pool()
pool.open_many(np.arange(n))
pool.step_batch(np.arange(n), np.zeros((n, model.spec.input_size), np.float32))
used = tracemalloc.get_traced_memory()[0] - before
state = sum(int(np.prod(s)) * 4 for s in model.spec.state_shapes.values())
print(json.dumps({"bytes_per_stream": used / n, "state_bytes": state}))
"""


def measure_paired(models: dict[str, tuple[Path, Path]], plan: Plan) -> dict[str, Any]:
    """The ratio goals, measured in rotation so that a shared machine's drift falls on
    both sides of each ratio: GRU pools of each ``plan.paired`` size and an LSTM pool of
    the first, every stream in every tick, one batch of ticks of each per round; the
    median seconds per stream-step of each over the rounds."""
    fleets = [("gru-h64", n) for n in plan.paired] + [("lstm-h64", plan.paired[0])]
    ticks = {}
    for name, n in fleets:
        model = sg.load(models[name][0], provider="cpu")
        pool = model.pool()
        ids = np.arange(n)
        pool.open_many(ids)
        xs = np.random.default_rng(n).standard_normal((n, model.spec.input_size))
        ticks[(name, n)] = (pool, ids, xs.astype(np.float32))
    per_step: dict[tuple[str, int], list[float]] = {fleet: [] for fleet in fleets}
    for _ in range(plan.rounds):
        for fleet, (pool, ids, xs) in ticks.items():
            seconds = _time(lambda p=pool, i=ids, x=xs: p.step_batch(i, x), plan.round_seconds)
            per_step[fleet].append(seconds / len(ids))
    rates = {f"{name} {n}": 1 / float(np.median(v)) for (name, n), v in per_step.items()}
    return {"rounds": plan.rounds, "steps_per_s": rates}


def measure_million(onnx: Path, plan: Plan) -> dict[str, Any]:
    """The million-stream goals, on the GRU."""
    model = sg.load(onnx, provider="cpu")
    n = plan.million
    out: dict[str, Any] = {"streams": n}
    pool = model.pool()
    t0 = time.perf_counter()
    pool.open_many(np.arange(n))
    out["open_many_s"] = time.perf_counter() - t0
    ids = np.arange(n)
    xs = np.random.default_rng(1).standard_normal((n, model.spec.input_size)).astype(np.float32)
    full = _time(lambda: pool.step_batch(ids, xs), 1.0)
    part_ids, part_xs = ids[::10].copy(), xs[::10].copy()
    part = _time(lambda: pool.step_batch(part_ids, part_xs), 1.0)
    out.update(full_tick_s=full, tenth_tick_s=part, tenth_over_full=part / full)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fleet.sgpool"
        t0 = time.perf_counter()
        pool.save(path)
        out["save_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        loaded = model.load_pool(path)
        out["load_s"] = time.perf_counter() - t0
        out["file_mb"] = path.stat().st_size / 1e6
    assert len(loaded) == n
    child = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(onnx), str(n)],
                           capture_output=True, text=True, check=True, timeout=600)  # fmt: skip
    memory = json.loads(child.stdout)
    out["bytes_per_stream_beyond_state"] = memory["bytes_per_stream"] - memory["state_bytes"]
    return out


def measure_keys(onnx: Path, plan: Plan) -> dict[str, Any]:
    """The share of a tick spent on its keys and input checks: ids looked up afresh
    (two arrays in turn, so the last tick's lookup is never reused) and ``X`` checked,
    against the whole tick."""
    from stream_gru.fleet.ticks import check_batch

    model = sg.load(onnx, provider="cpu")
    n = plan.key_streams
    pool = model.pool()
    pool.open_many(np.arange(n))
    ids = [np.arange(n), np.arange(n)[::-1].copy()]
    xs = np.random.default_rng(2).standard_normal((n, model.spec.input_size)).astype(np.float32)
    table = pool._table  # the pool's key table: timed on its own
    turn = iter(range(10**9))

    def keys_only() -> None:
        keys = ids[next(turn) % 2]
        check_batch(model.spec, keys, xs)
        table.resolve(keys, check_distinct=True)

    lookup = _time(keys_only, 0.5)
    tick = _time(lambda: pool.step_batch(ids[next(turn) % 2], xs), 1.0)
    return {"streams": n, "keys_s": lookup, "tick_s": tick, "share": lookup / tick}


def goals(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Every goal of the issue with its measured value."""
    out = []

    def add(what: str, value: float | None, op: str, goal: float, unit: str = "") -> None:
        met = None if value is None else (value >= goal if op == ">=" else value <= goal)
        out.append({"what": what, "measured": value, "op": op, "goal": goal, "unit": unit,
                    "met": met})  # fmt: skip

    paired = r.get("paired", {}).get("steps_per_s", {})
    first, *larger = r.get("plan", {}).get("paired", []) or [4096]
    base = paired.get(f"gru-h64 {first}")
    for n in larger:
        rate = paired.get(f"gru-h64 {n}")
        add(f"GRU pool at {n:,} / at {first:,} streams", rate / base if rate and base else None,
            ">=", 0.9, "x")  # fmt: skip
    ceiling = r["models"].get("gru-h64", {}).get("ceiling_steps_per_s")
    add(f"GRU pool share of the GEMM ceiling at {first:,}", 100 * base / ceiling
        if base and ceiling else None, ">=", 55, "%")  # fmt: skip
    lstm = paired.get(f"lstm-h64 {first}")
    add(f"LSTM cost per stream-step / GRU's, {first:,} streams",
        base / lstm if base and lstm else None, "<=", 1.3, "x")  # fmt: skip
    keys, million = r.get("keys", {}), r.get("million", {})
    add(f"keys and checks, share of a {keys.get('streams', 0):,}-stream tick",
        100 * keys["share"] if keys else None, "<=", 10, "%")  # fmt: skip
    n = million.get("streams", 0)
    add(f"open_many of {n:,} streams", million.get("open_many_s"), "<=", 3, " s")
    add(f"memory per stream beyond the state, {n:,} streams",
        million.get("bytes_per_stream_beyond_state"), "<=", 256, " B")  # fmt: skip
    save_load = million.get("save_s", 0) + million.get("load_s", 0) if million else None
    add(f"save + load_pool of {n:,} streams", save_load, "<=", 10, " s")
    add(f"a tick of 10% of {n:,} streams / a full tick", million.get("tenth_over_full"),
        "<=", 0.12, "x")  # fmt: skip
    return out


def report(r: dict[str, Any]) -> str:
    lines = [
        f"stream-gru fleet scaling, {r['date']}, {r['machine']['cpu']} ({r['machine']['cores']} "
        f"cores); every contender on one thread",
        f"  python {r['versions']['python']}, onnxruntime {r['versions']['onnxruntime']}, "
        f"torch {r['versions']['torch']}",
    ]
    for name, m in r["models"].items():
        lines += [
            "",
            f"{name}: stream-steps/s (share of the GEMM ceiling, "
            f"{m['ceiling_steps_per_s'] / 1e6:.2f} M/s)",
            "  streams/tick         StreamPool            by hand      PyTorch eager",
        ]
        for row in m["sizes"]:
            cells = [
                f"{v / 1e6:>7.2f} M ({100 * v / m['ceiling_steps_per_s']:>3.0f}%)"
                for v in row["steps_per_s"].values()
            ]
            lines.append(f"  {row['streams']:>12,}  " + "  ".join(f"{c:>17}" for c in cells))
    million = r.get("million")
    if million:
        m = million
        lines += [
            "",
            f"a million-stream fleet (GRU, {m['streams']:,} streams): open_many "
            f"{m['open_many_s']:.2f} s; full tick {m['full_tick_s'] * 1e3:.0f} ms, 10% tick "
            f"{m['tenth_tick_s'] * 1e3:.0f} ms; save {m['save_s']:.1f} s, load "
            f"{m['load_s']:.1f} s ({m['file_mb']:.0f} MB)",
        ]
    paired = r.get("paired")
    if paired:
        lines += ["", f"the ratio goals' pools, ticked in rotation ({paired['rounds']} rounds, "
                  "medians): " + ", ".join(f"{k} streams {v / 1e6:.2f} M/s"
                                           for k, v in paired["steps_per_s"].items())]  # fmt: skip
    lines += ["", "goals (issue 15)"]
    for g in r["goals"]:
        value = "n/a" if g["measured"] is None else f"{g['measured']:.3g}{g['unit']}"
        verdict = {True: "met", False: "NOT MET", None: ""}[g["met"]]
        lines.append(f"  {g['what']:<58} {value:>10}  {g['op']} {g['goal']:g}{g['unit']:<3} "
                     f"{verdict}")  # fmt: skip
    return "\n".join(lines)


def plot(r: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(r["models"]), figsize=(6 * len(r["models"]), 4.5), sharey=True)
    for ax, (name, m) in zip(np.atleast_1d(axes), r["models"].items(), strict=True):
        sizes = [row["streams"] for row in m["sizes"]]
        for contender in m["sizes"][0]["steps_per_s"]:
            ax.plot(sizes, [row["steps_per_s"][contender] / 1e6 for row in m["sizes"]], "o-",
                    label=contender)  # fmt: skip
        paired = [(int(k.split()[1]), v) for k, v in r.get("paired", {}).get("steps_per_s", {})
                  .items() if k.split()[0] == name]  # fmt: skip
        if paired:
            ax.plot(*zip(*[(n, v / 1e6) for n, v in paired], strict=True), "k*", ms=11,
                    label="pool, ticked in rotation (the ratio goals)")  # fmt: skip
        ax.axhline(m["ceiling_steps_per_s"] / 1e6, color="k", ls=":", label="GEMM ceiling")
        ax.set(xscale="log", xlabel="streams per tick", title=name)
    first = np.atleast_1d(axes)[0]
    first.set_ylabel("million stream-steps/s (one thread)")
    fig.legend(*first.get_legend_handles_labels(), loc="lower center", ncol=5, fontsize=9)
    fig.suptitle(f"fleet scaling, {r['date']}, {r['machine']['cores']} cores")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of seconds")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else Plan()
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result: dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(), "versions": versions(), "plan": asdict(plan), "models": {},
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        models = build_models(Path(tmp))
        specs = {name: sg.load(onnx, provider="cpu").spec for name, (onnx, _) in models.items()}
        ceilings = measure_ceilings(list(specs.values()), 4096, 0.4 if not args.quick else 0.02,
                                    1024 if not args.quick else 128)  # fmt: skip
        for i, (name, (onnx, ckpt)) in enumerate(models.items()):
            print(f"{name}:", flush=True)
            facts = stream_step_flops(specs[name])
            rate = ceilings["models"][i]["flops_per_s"] / facts[0] if facts else float("nan")
            result["models"][name] = {
                "ceiling_steps_per_s": rate,
                "sizes": measure_sizes(onnx, ckpt, plan, lambda s: print(s, flush=True)),
            }
        gru = models["gru-h64"][0]
        print("the ratio goals, pools ticked in rotation ...", flush=True)
        result["paired"] = measure_paired(models, plan)
        print("the million-stream goals ...", flush=True)
        result["million"] = measure_million(gru, plan)
        result["keys"] = measure_keys(gru, plan)
    result["goals"] = goals(result)
    result["wall_s"] = time.perf_counter() - start
    text = report(result)
    print(text)
    files = save_results(args.out, "scale", result, text, plot)
    if len(files) < 3:
        print("(no plot: matplotlib is not installed)")
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
