"""The benchmark's report: the goals of issue 5 judged on the measured ratios, the
printed table, and the files (``bench.json``, ``bench.txt``, ``bench.png``).

Works on the results dictionary alone, so a saved ``bench.json`` can be re-rendered:
``format_table(json.load(open("bench.json")))``.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...formats.files import atomic_write_bytes

__all__ = ["evaluate_goals", "format_table", "plot", "save_results", "write_outputs"]

NAMES = {
    "step": "Stream.step",
    "session_run": "session.run by hand",
    "torch": "PyTorch eager",
    "pool": "StreamPool",
    "by_hand": "by hand",
    "feed": "Stream.feed",
}
GOAL_STREAMS = 4096  # the fleet goals are stated at this pool size
# The fleet goals of issue 5 for the project's two reference shapes, by (H, L).
FLEET_GOALS: dict[tuple[int, int], dict[str, float]] = {
    (64, 1): {"pool_over_by_hand": 1.3, "ceiling": 0.45},
    (256, 2): {"ceiling": 0.60},
}
OPS = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b}


def _fleet(m: dict[str, Any], streams: int, partial: bool = False) -> dict[str, Any] | None:
    found: list[dict[str, Any]] = [
        f for f in m["fleets"] if f["streams"] == streams and (f["active"] < streams) == partial
    ]
    return found[0] if found else None


def _reference_fleet(m: dict[str, Any]) -> dict[str, Any]:
    full = [f for f in m["fleets"] if f["active"] == f["streams"]]
    exact = [f for f in full if f["streams"] == GOAL_STREAMS]
    return exact[0] if exact else max(full, key=lambda f: f["streams"])


Row = tuple[str, str, float | None, str, float | None, str]


def _model_goals(m: dict[str, Any]) -> list[Row]:
    name, lat, ch = m["name"], m["latency"], m["chunks"]
    step = lat["step"]["p50_us"]
    rows: list[Row] = [
        (name, "step / session.run, p50", step / lat["session_run"]["p50_us"], "<=", 0.8, "x")
    ]
    if "torch" in lat:
        rows.append((name, "PyTorch / step, p50", lat["torch"]["p50_us"] / step, ">=", 4.0, "x"))
    per_step = ch["step_us_per_step"] / ch["feed_us_per_step"]
    rows.append((name, f"{ch['steps']:,} steps: step / feed, per step", per_step, ">=", 10.0, "x"))
    goals = FLEET_GOALS.get((m["hidden_size"], m["num_layers"]), {})
    ref = _reference_fleet(m)
    c, n = ref["contenders"], ref["streams"]
    ratio = c["pool"]["steps_per_s"] / c["by_hand"]["steps_per_s"]
    rows.append(
        (name, f"pool / by hand, {n:,} streams", ratio, ">=", goals.get("pool_over_by_hand"), "x")
    )
    if m.get("ceiling"):
        share, target = 100 * c["pool"]["ceiling_fraction"], goals.get("ceiling")
        target = None if target is None else 100 * target
        rows.append(
            (name, f"pool share of the GEMM ceiling, {n:,} streams", share, ">=", target, "%")
        )
    biggest = max(f["streams"] for f in m["fleets"])
    part, full = _fleet(m, biggest, partial=True), _fleet(m, biggest)
    if part and full:
        what = f"{part['active']:,}-stream tick / full tick of {biggest:,}"
        ratio = (
            part["contenders"]["pool"]["tick_ms_p50"] / full["contenders"]["pool"]["tick_ms_p50"]
        )
        rows.append((name, what, ratio, "<=", 0.15, "x"))
    return rows


def evaluate_goals(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Every goal with its measured value and ``met`` (None where no goal applies)."""
    rows = [row for m in r["models"] for row in _model_goals(m)]
    mem, idle = r["memory"], r["idle_cpu"]
    one, pool = mem["stream"], mem["pool"]
    what = f"RSS growth, {one['count']:,} steps of one stream"
    rows.append((mem["model"], what, one["growth_mb"], "<=", 1.0, " MB"))
    what = f"RSS growth, {pool['count']:,} ticks of {mem['pool_streams']:,} streams"
    rows.append((mem["model"], what, pool["growth_mb"], "<=", 1.0, " MB"))
    for key, v in idle.items():
        if key.startswith("threads="):
            what = f"idle process holding the model, {key}"
            rows.append((idle["model"], what, v["core_percent"], "<", 2.0, "% of a core"))
    keys = ("model", "what", "measured", "op", "goal", "unit")
    out: list[dict[str, Any]] = [dict(zip(keys, row, strict=True)) for row in rows]
    for g in out:
        known = g["measured"] is not None and g["goal"] is not None
        g["met"] = bool(OPS[g["op"]](g["measured"], g["goal"])) if known else None
    return out


def _rate(x: float) -> str:
    for div, unit in ((1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:.3g} {unit}"
    return f"{x:.3g}"


def _value(v: float | None, unit: str) -> str:
    if v is None:
        return "n/a"
    if unit == "x":
        return f"{v:.2f}x"
    if unit.startswith("%"):
        return f"{v:.1f}{unit}"
    return f"{v:+.2f}{unit}"


def _goal_line(g: dict[str, Any]) -> str:
    target = "" if g["goal"] is None else f"{g['op']} {g['goal']:g}{g['unit'].split(' of')[0]}"
    verdict = "" if g["met"] is None else ("met" if g["met"] else "NOT MET")
    return f"    {g['what']:<46} {_value(g['measured'], g['unit']):>16}  {target:<10} {verdict}"


def format_table(r: dict[str, Any]) -> str:
    """The printed report."""
    mach, ver, s = r["machine"], r["versions"], r["settings"]
    lines = [
        f"stream-gru benchmark, {r['date']}, {mach['cpu']} ({mach['cores']} cores); "
        "every contender on one thread",
        "  " + ", ".join(f"{k} {v}" for k, v in ver.items() if v),
        "  method: warm-up, then trials with the contenders in alternating order; "
        "medians of trials",
        f"  latency: {s['latency_trials']} trials of {s['latency_calls']:,} calls "
        f"(p50, p99 of each); fleets: {s['fleet_trials']} trials of ~{s['trial_seconds']} s "
        "of ticks per size",
    ]
    if r["quick"]:
        lines.append("  QUICK RUN: counts far too small to judge the goals")
    goals = r["goals"]
    for m in r["models"]:
        lines += [
            "",
            f"{m['name']}: {(m['cell'] or '?').upper()}, I={m['input_size']}, "
            f"H={m['hidden_size']}, L={m['num_layers']}, O={m['output_size']}"
            + (" (random weights, made on the fly)" if m["builtin"] else f" ({m['file']})"),
        ]
        lines.append(f"  {'latency at batch 1':<32} {'p50 us':>9} {'p99 us':>9}")
        for k, v in m["latency"].items():
            lines.append(f"    {NAMES[k]:<30} {v['p50_us']:>9.1f} {v['p99_us']:>9.1f}")
        if not m["torch"]:
            lines.append("    PyTorch eager                  (skipped: no checkpoint or no torch)")
        ch = m["chunks"]
        chunk = f"chunks of {ch['steps']:,} steps"
        lines.append(f"  {chunk:<32} {'us/step':>9}")
        lines.append(f"    {'Stream.feed':<30} {ch['feed_us_per_step']:>9.2f}")
        lines.append(f"    {'Stream.step, one call per step':<30} {ch['step_us_per_step']:>9.2f}")
        lines += _fleet_lines(m)
        lines.append("  ratios (goals of issue 5)")
        lines += [
            _goal_line(g)
            for g in goals
            if g["model"] == m["name"] and "RSS" not in g["what"] and "idle" not in g["what"]
        ]
    mem = r["memory"]
    lines += ["", f"memory and CPU ({mem['model']}; MB = 2^20 bytes, growth after warm-up)"]
    lines += [_goal_line(g) for g in goals if "RSS" in g["what"] or "idle" in g["what"]]
    met = [g for g in goals if g["met"] is not None]
    lines += [
        "",
        f"goals met: {sum(g['met'] for g in met)} of {len(met)}; wall time {r['wall_s']:.0f} s",
    ]
    return "\n".join(lines)


def _fleet_lines(m: dict[str, Any]) -> list[str]:
    names = list(m["fleets"][0]["contenders"])
    ceiling = m.get("ceiling")
    head = "  fleets: stream-steps/s" + (" (share of the GEMM ceiling)" if ceiling else "")
    header = f"{'streams':<19}" + "".join(f"{NAMES[k]:>17}" for k in names)
    lines = [head, f"    {header}{'pool/hand':>11}{'pool p99 ms':>13}"]
    for f in m["fleets"]:
        c = f["contenders"]
        label = f"{f['streams']:,}"
        if f["active"] < f["streams"]:
            label += f", {f['active']:,}/tick"
        cells = []
        for k in names:
            share = f" ({100 * c[k]['ceiling_fraction']:.0f}%)" if ceiling else ""
            cells.append(f"{_rate(c[k]['steps_per_s']) + share:>17}")
        ratio = c["pool"]["steps_per_s"] / c["by_hand"]["steps_per_s"]
        p99 = c["pool"]["tick_ms_p99"]
        lines.append(f"    {label:<19}{''.join(cells)}{ratio:>10.2f}x{p99:>13.2f}")
    if ceiling:
        shapes = ", ".join(f"({a}x{b})@({b}x{c})" for a, b, c in ceiling["gemm_shapes"])
        lines += [
            f"    ceiling: float32 GEMM, one thread, numpy at {shapes}:",
            f"      {ceiling['gemm_flops_per_s'] / 1e9:.1f} GFLOP/s (square "
            f"{ceiling['reference_shape'][0]}: {ceiling['reference_flops_per_s'] / 1e9:.1f})",
            f"      one stream-step = {ceiling['flops_formula']} FLOP "
            f"-> {_rate(ceiling['steps_per_s'])} stream-steps/s",
        ]
    excess = m["contenders_excess"]
    lines.append(
        f"    the contenders' outputs agree by the agreement rule ({excess:.2f} of its limit; "
        f"first tick of every size)"
    )
    return lines


def plot(r: dict[str, Any], path: Path) -> Path | None:
    """Throughput against pool size, one panel per model; None without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    models = r["models"]
    fig = Figure(figsize=(5.5 * len(models), 4.2), layout="tight")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    for ax, m in zip(axes, models, strict=True):
        full = [f for f in m["fleets"] if f["active"] == f["streams"]]
        sizes = [f["streams"] for f in full]
        for k in full[0]["contenders"]:
            ax.plot(sizes, [f["contenders"][k]["steps_per_s"] for f in full], "o-", label=NAMES[k])
        if m.get("ceiling"):
            ax.axhline(m["ceiling"]["steps_per_s"], color="gray", ls="--", label="GEMM ceiling")
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="streams per tick (all active)",
            ylabel="stream-steps per second",
            title=f"{m['name']} (one thread)",
        )
        ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{r['machine']['cpu']}, {r['date']}", fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return atomic_write_bytes(path, buf.getvalue())


def _clean(x: Any) -> Any:
    """JSON has no NaN/Inf: write them as null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def save_results(
    out_dir: Path,
    stem: str,
    r: dict[str, Any],
    text: str,
    draw: Callable[[dict[str, Any], Path], Path | None],
) -> tuple[Path, ...]:
    """Write ``STEM.json`` (NaN and Inf as null), ``STEM.txt`` and, where ``draw`` can
    (it returns None or raises ImportError without matplotlib), ``STEM.png`` into
    ``out_dir``, each atomically; the paths written. Every benchmark saves this way."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [
        atomic_write_bytes(out_dir / f"{stem}.json", json.dumps(_clean(r), indent=1).encode()),
        atomic_write_bytes(out_dir / f"{stem}.txt", (text + "\n").encode()),
    ]
    try:
        png = draw(r, out_dir / f"{stem}.png")
    except ImportError:
        png = None
    return tuple(files + ([png] if png else []))


def write_outputs(r: dict[str, Any], out_dir: Path) -> tuple[str, tuple[Path, ...]]:
    """Judge the goals into ``r``, write bench.json, bench.txt, bench.png into ``out_dir``."""
    r["goals"] = evaluate_goals(r)
    table = format_table(r)
    return table, save_results(out_dir, "bench", r, table, plot)
