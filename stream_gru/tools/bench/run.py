"""The benchmark behind ``make bench`` and ``stream-gru bench``: the runtime beside the
code a user would otherwise write, measured in one run, every contender on one thread.

- latency at batch 1: ``Stream.step`` / a plain ``InferenceSession.run`` on the same file
  with the state carried by the caller / PyTorch eager under ``inference_mode``;
- chunks: ``Stream.feed`` of T steps / T calls of ``Stream.step``;
- fleets: ``StreamPool.step_batch`` / gather-run-scatter by hand over a (streams, L, H)
  array / PyTorch eager on the same batch, each against the single-thread GEMM ceiling;
- memory and CPU: RSS growth over long runs; the CPU of an idle process holding a model.

Method (benchmarks/README.md): warm-up first, contenders alternate order between trials,
medians of trials, p99 of single calls beside them. Timings are reported, never
asserted. ``report`` turns the results into the table, the goals, JSON and a plot.
Nothing in the runtime imports this module.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ...agreement import DEFAULT_RULE
from ...core.spec import ModelSpec
from ...fleet.model import StreamingModel, load
from .contenders import (
    by_hand_fleet,
    by_hand_step,
    check_layout,
    plain_session,
    pool_fleet,
    torch_fleet,
    torch_step,
)
from .system import (
    apply_ceiling,
    machine,
    measure_ceilings,
    measure_idle_cpu,
    rss_growth,
    stream_step_flops,
    versions,
)

__all__ = [
    "BUILTIN_MODELS",
    "FULL",
    "QUICK",
    "BenchOutcome",
    "BenchSettings",
    "ModelCase",
    "make_builtin_models",
    "run_benchmark",
    "stream_step_flops",
]


@dataclass(frozen=True)
class BenchSettings:
    """How much to measure. ``FULL`` is ``make bench``; ``QUICK`` a smoke run of seconds."""

    latency_trials: int = 5  # trials of `latency_calls` single calls per contender
    latency_calls: int = 2000
    warmup_calls: int = 500
    chunk_steps: int = 1000  # feed(T steps) vs T calls of step
    chunk_trials: int = 5
    pool_sizes: tuple[int, ...] = (1, 64, 1024, 4096, 16384)
    active_fraction: float = 0.1  # of the largest pool, per tick
    fleet_trials: int = 5
    trial_seconds: float = 0.25  # a fleet trial runs about this long (ticks, at least 1)
    max_ticks: int = 1000
    gemm_batch: int = 4096
    gemm_seconds: float = 0.4  # per GEMM shape
    gemm_reference: int = 1024  # a square GEMM, for scale
    memory_steps: int = 1_000_000  # steps of one stream
    memory_ticks: int = 1000  # ticks of a full pool of `memory_pool` streams
    memory_pool: int = 16384
    idle_seconds: float = 2.0


FULL = BenchSettings()
QUICK = BenchSettings(
    latency_trials=3,
    latency_calls=200,
    warmup_calls=50,
    chunk_steps=100,
    chunk_trials=3,
    pool_sizes=(1, 16, 256),
    fleet_trials=3,
    trial_seconds=0.005,
    max_ticks=10,
    gemm_batch=256,
    gemm_seconds=0.02,
    gemm_reference=256,
    memory_steps=2000,
    memory_ticks=20,
    memory_pool=256,
    idle_seconds=0.3,
)

# The project's own models, made on the fly with random weights (no training needed).
BUILTIN_MODELS: tuple[tuple[str, dict[str, int]], ...] = (
    ("gru-h64", {"input_size": 8, "hidden_size": 64, "num_layers": 1, "output_size": 4}),
    ("gru-h256x2", {"input_size": 16, "hidden_size": 256, "num_layers": 2, "output_size": 4}),
)


@dataclass(frozen=True)
class ModelCase:
    """A model to benchmark; PyTorch eager runs only where a checkpoint is given."""

    name: str
    path: Path
    checkpoint: Path | None = None
    builtin: bool = False


@dataclass(frozen=True)
class BenchOutcome:
    """The results (as written to JSON), the printed table, and the files written."""

    results: dict[str, Any]
    table: str
    files: tuple[Path, ...]


def make_builtin_models(directory: Path, seed: int = 0) -> list[ModelCase]:
    """Export ``BUILTIN_MODELS`` with seeded random weights into ``directory``."""
    import torch

    from ...export.onnx_export import export_onnx
    from ...training.network import GRUConfig, GRUModel, default_names, save_checkpoint

    cases = []
    for name, sizes in BUILTIN_MODELS:
        torch.manual_seed(seed)
        cfg = GRUConfig(task="classification", cell="gru", **sizes)
        features, outputs = default_names("x", cfg.input_size), default_names("y", cfg.output_size)
        path = directory / f"{name}.pt"
        ckpt = save_checkpoint(path, GRUModel(cfg), feature_names=features, output_names=outputs)
        onnx = export_onnx(ckpt, directory / f"{name}.onnx").path
        cases.append(ModelCase(name, onnx, ckpt, builtin=True))
    return cases


# -- measurement -----------------------------------------------------------------------
def _rotated(names: Sequence[str], trial: int) -> list[str]:
    k = trial % len(names)
    return [*names[k:], *names[:k]]


def _time_each(fn: Callable[[Any], Any], args: Sequence[Any], count: int, start: int = 0) -> Any:
    """Seconds of each of ``count`` calls ``fn(args[(start + i) % len(args)])``."""
    t = np.empty(count)
    clock, m = time.perf_counter, len(args)
    for i in range(count):
        a = args[(start + i) % m]
        t0 = clock()
        fn(a)
        t[i] = clock() - t0
    return t


def _measure_latency(
    contenders: dict[str, Callable[[np.ndarray], Any]], rows: list[np.ndarray], s: BenchSettings
) -> dict[str, Any]:
    for fn in contenders.values():
        _time_each(fn, rows, s.warmup_calls)
    p50: dict[str, list[float]] = {k: [] for k in contenders}
    p99: dict[str, list[float]] = {k: [] for k in contenders}
    for trial in range(s.latency_trials):
        for name in _rotated(list(contenders), trial):
            gc.collect()
            t = _time_each(contenders[name], rows, s.latency_calls, trial * s.latency_calls) * 1e6
            p50[name].append(float(np.median(t)))
            p99[name].append(float(np.percentile(t, 99)))
    return {
        k: {
            "p50_us": float(np.median(p50[k])),
            "p99_us": float(np.median(p99[k])),
            "trials_p50_us": p50[k],
            "calls_per_trial": s.latency_calls,
        }
        for k in contenders
    }


def _measure_chunks(model: StreamingModel, xs: np.ndarray, s: BenchSettings) -> dict[str, Any]:
    feeder, stepper, rows = model.stream(), model.stream(), list(xs)
    runs = {"feed": lambda _: feeder.feed(xs), "step": lambda _: [stepper.step(x) for x in rows]}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for fn in runs.values():
        _time_each(fn, [None], 2)
    for trial in range(s.chunk_trials):
        for name in _rotated(list(runs), trial):
            gc.collect()
            times[name].append(float(_time_each(runs[name], [None], 1)[0]))
    per_step = {k: float(np.median(v)) / len(rows) * 1e6 for k, v in times.items()}
    return {
        "steps": len(rows),
        "feed_us_per_step": per_step["feed"],
        "step_us_per_step": per_step["step"],
        "trials_s": times,
    }


def _measure_fleet(ticks: dict[str, Callable[[int], Any]], active: int, s: BenchSettings) -> Any:
    """Tick 0 of every contender runs from zero states on the same samples: their outputs
    must agree (a check that they do the same work, not a timing). Then warm-up, and
    trials of about ``trial_seconds`` each, contenders in alternating order."""
    first = {k: np.asarray(t(0), np.float64) for k, t in ticks.items()}
    diff = max(DEFAULT_RULE.excess(v, first["pool"]) for v in first.values())
    count, nxt = {}, dict.fromkeys(ticks, 3)
    for name, t in ticks.items():
        warm = float(np.median(_time_each(t, range(1, 3), 2)))
        count[name] = int(np.clip(s.trial_seconds / max(warm, 1e-9), 1, s.max_ticks))
    means: dict[str, list[float]] = {k: [] for k in ticks}
    every: dict[str, list[np.ndarray]] = {k: [] for k in ticks}
    for trial in range(s.fleet_trials):
        for name in _rotated(list(ticks), trial):
            gc.collect()
            t = _time_each(ticks[name], range(nxt[name], nxt[name] + count[name]), count[name])
            nxt[name] += count[name]
            means[name].append(float(t.mean()))
            every[name].append(t)
    out = {
        k: {
            "tick_ms_p50": float(np.median(means[k])) * 1e3,
            "tick_ms_p99": float(np.percentile(np.concatenate(every[k]), 99)) * 1e3,
            "steps_per_s": active / float(np.median(means[k])),
            "ticks_per_trial": count[k],
        }
        for k in ticks
    }
    return out, diff


# -- one model, the whole run ----------------------------------------------------------
def _samples(spec: ModelSpec, n: int, rng: np.random.Generator) -> Any:
    mean = np.asarray(spec.normalization.get("feature_mean") or 0.0, np.float32)
    std = np.asarray(spec.normalization.get("feature_std") or 1.0, np.float32)
    x = rng.standard_normal((n, *spec.sample_shape), dtype=np.float32) * std + mean
    return np.ascontiguousarray(x, np.float32)


def _load_torch(case: ModelCase, spec: ModelSpec) -> tuple[Any, Any]:
    if case.checkpoint is None:
        return None, None
    try:
        import torch
    except ImportError:
        return None, None
    from ...training.network import load_checkpoint

    net = load_checkpoint(case.checkpoint)
    c = net.config
    if (c.cell, c.input_size, c.hidden_size, c.num_layers, c.output_size) != (
        spec.cell,
        spec.input_size,
        spec.hidden_size,
        spec.num_layers,
        spec.output_size,
    ):
        raise ValueError(f"{case.checkpoint} does not have the sizes of {case.path}")
    return net, torch


@contextlib.contextmanager
def _torch_one_thread(torch: Any) -> Iterator[None]:
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            yield
    finally:
        torch.set_num_threads(before)


def bench_model(case: ModelCase, s: BenchSettings, log: Callable[[str], None]) -> dict[str, Any]:
    """Latency, chunks and fleets of one model (see the module's docstring)."""
    model = load(case.path, provider="cpu", threads=1)
    spec = model.spec
    check_layout(spec)
    sess = plain_session(case.path)
    net, torch = _load_torch(case, spec)
    rng = np.random.default_rng(0)
    rows = list(_samples(spec, 1000, rng))
    result: dict[str, Any] = {
        "name": case.name,
        "file": str(case.path),
        "builtin": case.builtin,
        "cell": spec.cell,
        "input_size": spec.input_size,
        "hidden_size": spec.hidden_size,
        "num_layers": spec.num_layers,
        "output_size": spec.output_size,
        "torch": net is not None,
    }
    with _torch_one_thread(torch):
        log(f"{case.name}: latency at batch 1")
        lat = {"step": model.stream().step, "session_run": by_hand_step(sess, spec)}
        if net is not None:
            lat["torch"] = torch_step(net, torch)
        result["latency"] = _measure_latency(lat, rows, s)
        log(f"{case.name}: chunks of {s.chunk_steps:,} steps")
        result["chunks"] = _measure_chunks(model, _samples(spec, s.chunk_steps, rng), s)
        fleets, biggest, max_diff = [], max(s.pool_sizes), 0.0
        configs = [(n, n) for n in s.pool_sizes]
        configs.append((biggest, max(1, round(biggest * s.active_fraction))))
        for n, k in configs:
            log(f"{case.name}: fleet of {n:,} streams, {k:,} per tick")
            sets = 1 if k == n else 8
            active = [rng.permutation(n)[:k] if k < n else np.arange(n) for _ in range(sets)]
            xs = [_samples(spec, k, rng) for _ in range(max(sets, 4))]
            active = [active[i % sets] for i in range(len(xs))]
            ticks = {
                "pool": pool_fleet(model, n, active, xs),
                "by_hand": by_hand_fleet(sess, spec, n, active, xs),
            }
            if net is not None:
                ticks["torch"] = torch_fleet(net, torch, n, active, xs)
            timing, diff = _measure_fleet(ticks, k, s)
            max_diff = max(max_diff, diff)
            fleets.append({"streams": n, "active": k, "contenders": timing})
            del ticks
        result["fleets"] = fleets
        result["contenders_excess"] = max_diff  # in limits of the agreement rule
    return result


def _measure_memory(case: ModelCase, s: BenchSettings, note: Callable[[str], None]) -> Any:
    """RSS growth over a long run of one stream and of a full pool; idle CPU."""
    model = load(case.path, provider="cpu", threads=1)
    note(f"{case.name}: RSS over {s.memory_steps:,} steps of one stream")
    stream, rows = model.stream(), list(_samples(model.spec, 1000, np.random.default_rng(1)))
    one = rss_growth(lambda i: stream.step(rows[i % 1000]), s.memory_steps, s.memory_steps // 50)
    note(f"{case.name}: RSS over {s.memory_ticks:,} ticks of {s.memory_pool:,} streams")
    xs = [_samples(model.spec, s.memory_pool, np.random.default_rng(i)) for i in range(4)]
    tick = pool_fleet(model, s.memory_pool, [np.arange(s.memory_pool)] * 4, xs)
    fleet = rss_growth(tick, s.memory_ticks, max(3, s.memory_ticks // 50))
    note(f"{case.name}: CPU of an idle process holding the model ({s.idle_seconds} s)")
    idle = measure_idle_cpu(case.path, s.idle_seconds)
    memory = {"model": case.name, "stream": one, "pool": fleet, "pool_streams": s.memory_pool}
    return memory, {"model": case.name, "seconds": s.idle_seconds, **idle}


def run_benchmark(
    model: str | os.PathLike[str] | None = None,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    quick: bool = False,
    out_dir: str | os.PathLike[str] = Path("benchmarks/results"),
    settings: BenchSettings | None = None,
    log: Callable[[str], None] | None = None,
) -> BenchOutcome:
    """Run the benchmark and write ``bench.json``, ``bench.txt`` and ``bench.png`` into
    ``out_dir``. Without ``model`` it makes the built-in models (needs torch); with one,
    PyTorch eager runs only where ``checkpoint`` is given."""
    from .report import write_outputs

    s = settings or (QUICK if quick else FULL)
    start = time.perf_counter()

    def note(msg: str) -> None:
        (log or (lambda m: print(m, file=sys.stderr, flush=True)))(
            f"[{time.perf_counter() - start:6.1f} s] {msg}"
        )

    # Objects that exist before the run (torch's, the test session's) are frozen out of
    # the collector, so the gc.collect() before each trial costs microseconds, not 0.1 s.
    gc.collect()
    gc.freeze()
    try:
        with tempfile.TemporaryDirectory(prefix="stream-gru-bench-") as tmp:
            if model is None:
                note("making the built-in models (random weights)")
                cases = make_builtin_models(Path(tmp))
            else:
                ckpt = None if checkpoint is None else Path(checkpoint)
                cases = [ModelCase(Path(model).stem, Path(model), ckpt)]
            specs = [load(c.path, provider="cpu").spec for c in cases]
            ceiling_args = (s.gemm_batch, s.gemm_seconds, s.gemm_reference)
            note("single-thread GEMM ceiling (subprocess, BLAS held to one thread)")
            gemm = [measure_ceilings(specs, *ceiling_args)]
            models = [bench_model(case, s, note) for case in cases]
            note("GEMM ceiling again, after the fleets")
            gemm.append(measure_ceilings(specs, *ceiling_args))
            for i, (spec, entry) in enumerate(zip(specs, models, strict=True)):
                apply_ceiling(entry, spec, i, gemm)
            memory, idle = _measure_memory(cases[0], s, note)
    finally:
        gc.unfreeze()
    results: dict[str, Any] = {
        "benchmark": "stream-gru",
        "format": 1,
        "quick": s != FULL,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "versions": versions(),
        "settings": asdict(s),
        "models": models,
        "memory": memory,
        "idle_cpu": idle,
        "wall_s": time.perf_counter() - start,
    }
    table, files = write_outputs(results, Path(out_dir))
    return BenchOutcome(results, table, files)
