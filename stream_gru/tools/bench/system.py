"""What the machine can do and what a process costs, for the benchmark (``bench``):
the single-thread GEMM rate (the fleets' ceiling), the FLOPs of one stream-step, RSS
growth over a long run, the CPU of an idle process holding a model, machine facts.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ...core.spec import ModelSpec

__all__ = [
    "apply_ceiling",
    "machine",
    "measure_ceilings",
    "measure_gemm",
    "measure_idle_cpu",
    "rss_growth",
    "stream_step_flops",
    "versions",
]


def stream_step_flops(spec: ModelSpec) -> tuple[int, str, list[int]] | None:
    """FLOPs of one stream-step of this project's GRU/LSTM: the gates' matmuls per layer
    (2 * gates*H * (I_l + H)) plus the head (2 * H * O); elementwise ops not counted.
    Returns (flops, the formula, each layer's I_l + H), or None for other models."""
    if spec.cell not in ("gru", "lstm") or not (spec.hidden_size and spec.num_layers):
        return None
    gates = 3 if spec.cell == "gru" else 4
    h, o = spec.hidden_size, spec.output_size or 0
    widths = [spec.input_size + h] + [2 * h] * (spec.num_layers - 1)
    flops = sum(2 * gates * h * k for k in widths) + 2 * h * o
    formula = f"{spec.num_layers} x 2*{gates}H*(I_l+H) + 2*H*O = {flops:,}"
    return flops, formula, widths


_GEMM_CHILD = r"""
import json, os, sys, time
import numpy as np
shapes, seconds = json.loads(sys.argv[1]), float(sys.argv[2])
rng = np.random.default_rng(0)
res, cpu0, wall0 = [], os.times(), time.perf_counter()
for m, k, n in shapes:
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    c = np.empty((m, n), np.float32)
    for _ in range(3):
        np.matmul(a, b, out=c)
    t, start = [], time.perf_counter()
    while len(t) < 5 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter(); np.matmul(a, b, out=c); t.append(time.perf_counter() - t0)
    res.append(float(np.median(t)))
cpu1 = os.times()
cpu = cpu1.user - cpu0.user + cpu1.system - cpu0.system
print(json.dumps({"seconds": res, "cpu_per_wall": cpu / (time.perf_counter() - wall0)}))
"""
_ONE_THREAD = {
    k: "1"
    for k in (
        "OPENBLAS_NUM_THREADS",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "BLIS_NUM_THREADS",
        "VECLIB_MAXIMUM_THREADS",
    )
}


def measure_gemm(shapes: list[tuple[int, int, int]], seconds: float) -> dict[str, Any]:
    """Median seconds of float32 ``(m, k) @ (k, n)`` per shape, in a subprocess whose BLAS
    is held to one thread; ``cpu_per_wall`` near 1.0 shows it used one core."""
    r = subprocess.run(
        [sys.executable, "-c", _GEMM_CHILD, json.dumps(shapes), str(seconds)],
        env={**os.environ, **_ONE_THREAD},
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return dict(json.loads(r.stdout))


def _rss_mb() -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def rss_growth(run: Callable[[int], Any], count: int, warm: int) -> dict[str, Any]:
    """RSS before and after ``count`` calls ``run(i)``, after ``warm`` calls; MB = 2**20 B."""
    for i in range(warm):
        run(i)
    gc.collect()
    before, peak, t0 = _rss_mb(), 0.0, time.perf_counter()
    for i in range(count):
        run(warm + i)
        if before is not None and i % max(1, count // 20) == 0:
            peak = max(peak, (_rss_mb() or 0.0) - before)
    seconds = time.perf_counter() - t0
    gc.collect()
    after = _rss_mb()
    if before is None or after is None:
        return {"count": count, "seconds": seconds, "growth_mb": None}
    return {
        "count": count,
        "seconds": seconds,
        "rss_before_mb": before,
        "rss_after_mb": after,
        "growth_mb": after - before,
        "peak_growth_mb": max(peak, after - before),
    }


_IDLE_CHILD = r"""
import json, resource, sys, time
import numpy as np
import stream_gru as sg
m = sg.load(sys.argv[1], provider="cpu", threads=int(sys.argv[2]))
m.stream().step(np.zeros(m.spec.sample_shape, np.float32))
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
time.sleep(float(sys.argv[3]))
r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
print(json.dumps({"cpu_s": cpu, "wall_s": t1 - t0}))
"""


def measure_idle_cpu(path: Path, seconds: float, threads: Sequence[int] = (1, 2)) -> Any:
    """% of a core used by a process that loaded the model, stepped once, then slept."""
    procs = {
        t: subprocess.Popen(
            [sys.executable, "-c", _IDLE_CHILD, str(path), str(t), str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for t in threads
    }
    out = {}
    for t, p in procs.items():
        stdout, _ = p.communicate(timeout=120 + seconds)
        if p.returncode != 0:
            raise RuntimeError(f"the idle-CPU probe (threads={t}) exited with {p.returncode}")
        r = json.loads(stdout)
        out[f"threads={t}"] = {**r, "core_percent": 100 * r["cpu_s"] / r["wall_s"]}
    return out


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": cores, "platform": platform.platform()}


def versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in ("stream-gru", "numpy", "onnxruntime", "torch"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def measure_ceilings(
    specs: Sequence[ModelSpec], batch: int, seconds: float, reference: int
) -> dict[str, Any]:
    """The GEMM rate at every model's layer shapes (batch ``gemm_batch``) and at a square
    reference shape, in one subprocess."""
    shapes: dict[int, list[tuple[int, int, int]]] = {}
    for i, spec in enumerate(specs):
        facts = stream_step_flops(spec)
        if facts is not None:
            gates = 3 if spec.cell == "gru" else 4
            shapes[i] = [(batch, k, gates * (spec.hidden_size or 0)) for k in facts[2]]
    flat = [sh for group in shapes.values() for sh in group]
    ref = (reference,) * 3
    gemm = measure_gemm([*flat, ref], seconds)
    times = iter(gemm["seconds"])
    rates = {}
    for i, group in shapes.items():
        t = [next(times) for _ in group]
        rates[i] = {
            "shapes": [list(sh) for sh in group],
            "seconds": t,
            "flops_per_s": sum(2 * m * k * n for m, k, n in group) / sum(t),
        }
    return {
        "models": rates,
        "reference_shape": list(ref),
        "reference_flops_per_s": 2 * ref[0] ** 3 / next(times),
        "cpu_per_wall": gemm["cpu_per_wall"],
    }


def apply_ceiling(entry: dict[str, Any], spec: ModelSpec, i: int, runs: list[Any]) -> None:
    """The ceiling is the better GEMM rate of the runs (what the machine showed it can
    do); every fleet contender gets its share of it."""
    facts = stream_step_flops(spec)
    if facts is None or i not in runs[0]["models"]:
        entry["ceiling"] = None
        return
    flops, formula, _ = facts
    rates = [r["models"][i]["flops_per_s"] for r in runs]
    rate = max(rates)
    entry["ceiling"] = {
        "gemm_shapes": runs[0]["models"][i]["shapes"],
        "gemm_flops_per_s": rate,
        "gemm_flops_per_s_runs": rates,
        "blas_cpu_per_wall": [r["cpu_per_wall"] for r in runs],
        "reference_shape": runs[0]["reference_shape"],
        "reference_flops_per_s": max(r["reference_flops_per_s"] for r in runs),
        "flops_per_step": flops,
        "flops_formula": formula,
        "steps_per_s": rate / flops,
    }
    for fleet in entry["fleets"]:
        for c in fleet["contenders"].values():
            c["ceiling_fraction"] = c["steps_per_s"] * flops / rate
