"""``stream-gru compare DATA --target COL``: a GRU or an LSTM for this data?

Trains one network of each cell on the same data with the same budget (hidden size,
layers, epochs, patience, seed, so the same training/validation split), exports and
verifies both, then measures both through the runtime, and prints them side by side:
parameters, training time, the held-out metric, the ONNX file's size, the latency of
one ``Stream.step`` and the throughput of a ``StreamPool`` tick over a fleet.

    from stream_gru.tools.compare.cells import compare_cells, load_compare_data

    data, test = load_compare_data("basicmotions")
    result = compare_cells(data, test=test, out_dir="runs/compare")
    print(result.format())

Training, export and verify need the train extra (torch and onnx), imported when
``compare_cells`` runs; the measurements use only the runtime. Timings follow the
benchmark's method (warm-up, the models in alternating order, medians), on one thread
on the CPU; absolute times move between runs on a shared machine, so read them as
ratios of one run.
"""

from __future__ import annotations

import gc
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ...data.csv_files import Missing
from ...data.dataset import load_training_data, options_given
from ...data.recordings import SensorDataset
from ...fleet.model import StreamingModel, load
from ...formats.files import atomic_write_bytes
from ...training.config import GRUConfig, TrainOptions
from .data import stream_metrics

__all__ = [
    "BUILTIN_DATA",
    "CellComparison",
    "CellResult",
    "compare_cells",
    "load_compare_data",
]

#: The names ``DATA`` may take for the embedded BasicMotions data (any case).
BUILTIN_DATA = ("basicmotions", "basic_motions", "basic-motions")


@dataclass(frozen=True)
class CellResult:
    """One trained, exported and measured network.

    val_metrics: ``train``'s validation metrics of the best epoch (PyTorch).
    test_metrics: on the separate test data, streamed through the runtime (None
        without test data).
    step_us: median (and p99) microseconds of one ``Stream.step`` call.
    fleet_steps_per_s: stream-steps per second of ``StreamPool.step_batch`` over
        ``fleet_streams`` streams (the median tick); ``pool_graph`` the graph that
        served the ticks ("step" or "sequence", see ``StreamingModel.pool``).
    """

    cell: str
    parameters: int
    train_seconds: float
    epochs_run: int
    best_epoch: int
    val_metrics: dict[str, float]
    test_metrics: dict[str, float] | None
    onnx: str
    onnx_bytes: int
    verify_passed: bool
    verify_max_abs: float
    step_us: float = float("nan")
    step_p99_us: float = float("nan")
    fleet_tick_ms: float = float("nan")
    fleet_steps_per_s: float = float("nan")
    pool_graph: str = ""


@dataclass(frozen=True)
class CellComparison:
    """The result of ``compare_cells``: one row per cell, and the settings used."""

    data: str
    task: str
    rows: tuple[CellResult, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """Every model's ONNX file verified against its checkpoint."""
        return all(r.verify_passed for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        return d

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        return atomic_write_bytes(path, json.dumps(self.to_dict(), indent=2).encode() + b"\n")

    def format(self) -> str:
        """The side-by-side table."""
        s = self.settings
        metric_keys = ["accuracy", "accuracy_last"] if self.task == "classification" else ["mae"]
        short = {"accuracy": "acc", "accuracy_last": "last", "mae": "mae"}
        cols: list[tuple[str, Callable[[CellResult], str]]] = [
            ("cell", lambda r: r.cell.upper()),
            ("params", lambda r: f"{r.parameters:,}"),
            ("train s", lambda r: f"{r.train_seconds:.1f}"),
            ("epochs", lambda r: f"{r.best_epoch}/{r.epochs_run}"),
        ]
        splits = ["val", "test"] if any(r.test_metrics is not None for r in self.rows) else ["val"]
        cols += [
            (f"{split} {short[k]}", _metric(split, k)) for split in splits for k in metric_keys
        ]
        cols += [
            ("ONNX KiB", lambda r: f"{r.onnx_bytes / 1024:.1f}"),
            ("step us", lambda r: f"{r.step_us:.1f}"),
            ("steps/s", lambda r: _si(r.fleet_steps_per_s)),
        ]
        widths = [max(len(name), *(len(fmt(r)) for r in self.rows)) + 2 for name, fmt in cols]
        lines = [
            f"GRU vs LSTM on {self.data} ({self.task})",
            f"data: {s.get('train_recordings')} training + {s.get('val_recordings')} validation "
            f"recordings (split {s.get('split')})"
            + (f", {s['test_recordings']} test recordings" if s.get("test_recordings") else ""),
            f"same budget: hidden {s.get('hidden')}, {s.get('layers')} layer(s), at most "
            f"{s.get('epochs')} epochs (patience {s.get('patience')}), seed {s.get('seed')}",
            "",
            "".join(
                f"{name:<{w}}" if i == 0 else f"{name:>{w}}"
                for i, ((name, _), w) in enumerate(zip(cols, widths, strict=True))
            ),
        ]
        lines.append("-" * sum(widths))
        for r in self.rows:
            lines.append(
                "".join(
                    f"{fmt(r):<{w}}" if i == 0 else f"{fmt(r):>{w}}"
                    for i, ((_, fmt), w) in enumerate(zip(cols, widths, strict=True))
                )
            )
        has_test = any(r.test_metrics is not None for r in self.rows)
        graphs = ", ".join(f"{r.cell.upper()} {r.pool_graph}" for r in self.rows)
        lines += [
            "",
            "params: trainable weights. train s: wall time of training after a warm-up "
            "(epochs: best/run).",
            "val: the validation split train holds out (PyTorch, best epoch)"
            + ("; test: the runtime on the test data." if has_test else "."),
            "acc: accuracy over every step; last: at each recording's last step."
            if self.task == "classification"
            else "mae: mean absolute error in the target's units.",
            "ONNX KiB: the whole file, with the one-step graphs its pools run.",
            f"step us: median of {s.get('latency_steps')} Stream.step calls, one thread, CPU. "
            "steps/s: stream-steps per second",
            f"of a StreamPool tick of {s.get('fleet_streams')} streams (median of "
            f"{s.get('fleet_ticks')} ticks; graphs: {graphs}).",
            "verify: "
            + ", ".join(
                f"{r.cell.upper()} {'PASSED' if r.verify_passed else 'FAILED'} "
                f"(max |dy| {r.verify_max_abs:.1e})"
                for r in self.rows
            )
            + f"; {self.seconds:.0f} s in all",
        ]
        return "\n".join(lines)


def _metric(split: str, key: str) -> Callable[[CellResult], str]:
    """The cell of metric ``key`` of ``split`` ("val" or "test") in a row."""

    def cell(r: CellResult) -> str:
        metrics = r.val_metrics if split == "val" else r.test_metrics
        if metrics is None or key not in metrics:
            return "-"
        return f"{metrics[key]:.3f}" if "acc" in key else f"{metrics[key]:.4g}"

    return cell


def _si(value: float) -> str:
    if not np.isfinite(value):
        return "-"
    for scale, unit in ((1e6, " M"), (1e3, " k"), (1.0, "")):
        if value >= scale:
            v = value / scale
            return f"{v:.{0 if v >= 100 else 1 if v >= 10 else 2}f}{unit}"
    return f"{value:.3g}"


# -- data ------------------------------------------------------------------------------
def load_compare_data(
    data: str | os.PathLike[str],
    *,
    target: str | None = None,
    features: Sequence[str] | None = None,
    sequence_column: str | None = None,
    task: str | None = None,
    horizon: int = 0,
    missing: Missing = "error",
    delimiter: str | None = None,
) -> tuple[SensorDataset, SensorDataset | None]:
    """The training data and, for the embedded BasicMotions, its test split.

    ``data``: a CSV (needs ``target``), an NPZ (carries x and y), or one of
    ``BUILTIN_DATA`` for the embedded BasicMotions recordings (train on its training
    split, report the test split as well).
    """
    path = Path(data)
    if str(data).lower() in BUILTIN_DATA and not path.exists():
        given = options_given(
            target=target,
            features=features,
            sequence_column=sequence_column,
            task=task,
            horizon=horizon,
            missing=missing,
            delimiter=delimiter,
        )
        if given:
            raise ValueError(
                f"{', '.join(given)} do(es) not apply to {data}: it carries its features, "
                "its recordings and its target (activity, classification)"
            )
        from ...data.basic_motions import load_basic_motions

        return load_basic_motions("train"), load_basic_motions("test")
    if not path.exists() and path.suffix.lower() not in (".csv", ".npz"):
        raise FileNotFoundError(
            f"no such data file: {path} (a .csv, an .npz, or 'basicmotions' for the embedded data)"
        )
    dataset = load_training_data(
        path,
        target=target,
        features=features,
        sequence_column=sequence_column,
        task=task,
        horizon=horizon,
        missing=missing,
        delimiter=delimiter,
    )
    return dataset, None


# -- measurements (runtime only) -------------------------------------------------------
def _rotated(names: Sequence[str], trial: int) -> list[str]:
    k = trial % len(names)
    return [*names[k:], *names[:k]]


def _samples(data: SensorDataset, n: int) -> np.ndarray:
    """``n`` real samples from the recordings, in order, repeated as needed."""
    rows = np.concatenate([r.x for r in data.recordings]).astype(np.float32)
    return np.ascontiguousarray(np.resize(rows, (max(n, 1), rows.shape[1])))


def measure_runtime(
    models: dict[str, StreamingModel],
    samples: np.ndarray,
    *,
    latency_steps: int = 2000,
    fleet_streams: int = 1024,
    fleet_ticks: int = 21,
    trials: int = 5,
) -> dict[str, dict[str, Any]]:
    """Per model: median and p99 microseconds of one ``Stream.step``, over
    ``latency_steps`` calls after a warm-up; the median ``StreamPool.step_batch`` tick
    over ``fleet_streams`` streams, of ``fleet_ticks`` ticks, and its stream-steps per
    second. The models alternate order between trials."""
    names = list(models)
    clock = time.perf_counter
    streams = {k: m.stream() for k, m in models.items()}
    step_times: dict[str, list[float]] = {k: [] for k in names}
    for k in names:  # warm-up
        for x in samples[:200]:
            streams[k].step(x)
    done = 0
    for trial in range(trials):
        count = latency_steps // trials + (trial < latency_steps % trials)
        rows = [samples[(done + i) % len(samples)] for i in range(count)]
        done += count
        for k in _rotated(names, trial):
            gc.collect()
            step = streams[k].step
            for x in rows:
                t0 = clock()
                step(x)
                step_times[k].append(clock() - t0)

    keys = list(range(fleet_streams))
    batch = np.ascontiguousarray(np.resize(samples, (fleet_streams, samples.shape[1])))
    pools = {}
    for k, m in models.items():
        pools[k] = m.pool()
        for key in keys:
            pools[k].open(key)
        for _ in range(3):  # warm-up
            pools[k].step_batch(keys, batch)
    tick_times: dict[str, list[float]] = {k: [] for k in names}
    for trial in range(trials):
        count = fleet_ticks // trials + (trial < fleet_ticks % trials)
        for k in _rotated(names, trial):
            gc.collect()
            for _ in range(count):
                t0 = clock()
                pools[k].step_batch(keys, batch)
                tick_times[k].append(clock() - t0)
    out = {}
    for k in names:
        t = np.asarray(step_times[k]) * 1e6
        tick = float(np.median(tick_times[k]))
        out[k] = {
            "step_us": float(np.median(t)),
            "step_p99_us": float(np.percentile(t, 99)),
            "fleet_tick_ms": tick * 1e3,
            "fleet_steps_per_s": fleet_streams / tick,
            "pool_graph": pools[k].graph,
        }
    return out


def _stream_outputs(model: StreamingModel, data: SensorDataset) -> list[np.ndarray]:
    """Each recording through a fresh stream (``feed`` equals steps, exactly)."""
    return [model.stream().feed(r.x) for r in data.recordings]


# -- the comparison --------------------------------------------------------------------
def _warm_up(
    data: SensorDataset,
    cells: Sequence[str],
    hidden: int,
    layers: int,
    options: TrainOptions,
    train: Callable[..., Any],
) -> None:
    """One silent epoch of each cell, thrown away: the first training in a process
    pays for imports and first-use setup (matplotlib, torch's kernels), which would
    otherwise be charged to whichever cell trains first."""
    quiet = replace(options, epochs=1, progress=False, epoch_lines=False)
    with tempfile.TemporaryDirectory(prefix="stream-gru-warm-up-") as tmp:
        for cell in cells:
            config = GRUConfig.for_data(data, hidden_size=hidden, num_layers=layers, cell=cell)
            train(data, config, quiet, out_dir=Path(tmp) / cell)


def compare_cells(
    data: SensorDataset,
    *,
    test: SensorDataset | None = None,
    hidden: int = GRUConfig.hidden_size,
    layers: int = GRUConfig.num_layers,
    dropout: float = GRUConfig.dropout,
    options: TrainOptions | None = None,
    out_dir: str | os.PathLike[str],
    cells: Sequence[str] = ("gru", "lstm"),
    verify_steps: int = 10_000,
    latency_steps: int = 2000,
    fleet_streams: int = 1024,
    fleet_ticks: int = 21,
    log: Callable[[str], None] = print,
) -> CellComparison:
    """Train, export, verify and measure one network per cell in ``cells``, each with
    the same sizes and ``options`` (one seed: the same split and batch order), into
    ``out_dir/<cell>/`` (checkpoint.pt, loss_curve.png, model.onnx, verify.json).
    ``log`` gets the progress lines; ``options.progress`` shows the bars."""
    from ...export.onnx_export import export_onnx, verify
    from ...training.loop import train

    start = time.perf_counter()
    options = options or TrainOptions()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, expected a directory")
    stages = len(cells) + 1
    _warm_up(data, cells, hidden, layers, options, train)
    rows = []
    for n, cell in enumerate(cells, start=1):
        config = GRUConfig.for_data(
            data,
            hidden_size=hidden,
            num_layers=layers,
            cell=cell,
            dropout=dropout,
        )
        where = out / cell
        log(
            f"[{n}/{stages}] {cell.upper()}: train (hidden {hidden}, {layers} layer(s), at most "
            f"{options.epochs} epochs), export, verify -> {where}/"
        )
        t0 = time.perf_counter()
        result = train(data, config, options, out_dir=where)
        seconds = time.perf_counter() - t0
        exported = export_onnx(result.checkpoint, where / "model.onnx")
        report = verify(
            exported.path, result.checkpoint, steps=verify_steps, progress=options.progress
        )
        report.write_json(where / "verify.json")
        metrics = ", ".join(f"val {k} {v:.4g}" for k, v in result.metrics.items())
        log(
            f"      {seconds:.1f} s, best epoch {result.best_epoch} of {len(result.history)}: "
            f"{metrics}; {exported.size_bytes / 1024:.1f} KiB; verify "
            f"{'PASSED' if report.passed else 'FAILED'}"
        )
        rows.append(
            CellResult(
                cell=cell,
                parameters=sum(p.numel() for p in result.model.parameters() if p.requires_grad),
                train_seconds=seconds,
                epochs_run=len(result.history),
                best_epoch=result.best_epoch,
                val_metrics=dict(result.metrics),
                test_metrics=None,
                onnx=str(exported.path),
                onnx_bytes=exported.path.stat().st_size,
                verify_passed=report.passed,
                verify_max_abs=report.max_abs_output,
            )
        )

    log(
        f"[{stages}/{stages}] runtime: {latency_steps} Stream.step calls and "
        f"{fleet_ticks} StreamPool ticks of {fleet_streams} streams per model (one thread, CPU)"
    )
    models = {r.cell: load(r.onnx, provider="cpu", threads=1) for r in rows}
    timings = measure_runtime(
        models,
        _samples(data, max(latency_steps, fleet_streams)),
        latency_steps=latency_steps,
        fleet_streams=fleet_streams,
        fleet_ticks=fleet_ticks,
    )
    final = []
    for r in rows:
        model = models[r.cell]
        test_metrics = None
        if test is not None:
            got = stream_metrics(
                _stream_outputs(model, test), test, model.spec.output_names, data.task
            )
            test_metrics = got if isinstance(got, dict) else None
        final.append(replace(r, test_metrics=test_metrics, **timings[r.cell]))

    from ...data.dataset import MIN_RECORDINGS_FOR_RECORDING_SPLIT, split_dataset

    train_part, val_part = split_dataset(
        data, validation_fraction=options.validation_fraction, seed=options.seed
    )
    by_time = len(data.recordings) < MIN_RECORDINGS_FOR_RECORDING_SPLIT
    settings = {
        "hidden": hidden,
        "layers": layers,
        "dropout": dropout,
        **{k: v for k, v in asdict(options).items() if k not in ("progress", "epoch_lines")},
        "split": "by time" if by_time else "by recording",
        "train_recordings": len(train_part.recordings),
        "val_recordings": len(val_part.recordings),
        "test_recordings": len(test.recordings) if test is not None else 0,
        "verify_steps": verify_steps,
        "latency_steps": latency_steps,
        "fleet_streams": fleet_streams,
        "fleet_ticks": fleet_ticks,
        "provider": next(iter(models.values())).provider,
        "threads": 1,
    }
    return CellComparison(
        data=data.source or "data",
        task=data.task,
        rows=tuple(final),
        settings=settings,
        seconds=time.perf_counter() - start,
    )
