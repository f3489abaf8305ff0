"""``stream-gru demo``: the whole pipeline on the embedded BasicMotions data
(``train`` extra).

Train a GRU on the archive's training split, export it, verify the ONNX file against
PyTorch, then stream every held-out recording through the runtime sample by sample,
the way a device would, and show how each classification firms up over time.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np

from ..data.basic_motions import load_basic_motions
from ..export.onnx_export import export_onnx, verify
from ..fleet.model import load
from ..formats.files import atomic_write_bytes
from ..training.loop import GRUConfig, TrainOptions, evaluate, train

__all__ = ["run_demo"]

_CHECKPOINTS = (1, 5, 10, 25, 50, 100)


def run_demo(
    *,
    out_dir: Path,
    epochs: int = TrainOptions.epochs,
    hidden: int = GRUConfig.hidden_size,
    seed: int = TrainOptions.seed,
    quiet: bool = False,
) -> int:
    """Run the demo; returns the exit code (1 if verify fails). ``quiet`` drops the
    progress bars; training still prints one line per epoch."""
    start = time.perf_counter()
    train_ds = load_basic_motions("train")
    test_ds = load_basic_motions("test")
    classes = train_ds.output_names
    print(
        "stream-gru demo: BasicMotions (UEA archive), smartwatch accelerometer + gyroscope, "
        f"{train_ds.input_size} channels at 10 Hz, {len(classes)} activities: {', '.join(classes)}"
    )
    print(
        f"  {len(train_ds.recordings)} training recordings (a validation split is held out by "
        f"recording), {len(test_ds.recordings)} held-out test recordings of "
        f"{len(test_ds.recordings[0])} steps\n"
    )

    print(f"[1/4] train a GRU (hidden {hidden}) -> {out_dir}/checkpoint.pt", flush=True)
    config = GRUConfig.for_data(train_ds, hidden_size=hidden, task="classification")
    result = train(
        train_ds,
        config,
        TrainOptions(epochs=epochs, seed=seed, progress=not quiet),
        out_dir=out_dir,
    )
    print(f"      best epoch {result.best_epoch}, loss curve {result.plot}\n")

    print(f"[2/4] export -> {out_dir}/model.onnx", flush=True)
    exported = export_onnx(result.checkpoint, out_dir / "model.onnx")
    print(
        f"      {exported.size_bytes / 1024:.1f} KiB, {len(exported.nodes)} nodes, "
        f"structural checks passed\n"
    )

    print("[3/4] verify: onnxruntime against PyTorch", flush=True)
    report = verify(exported.path, result.checkpoint, progress=not quiet)
    report.write_json(out_dir / "verify.json")
    print(report.format() + "\n")

    print("[4/4] stream the held-out recordings sample by sample through the runtime")
    model = load(exported.path, provider="cpu")
    probs, labels, step_times = [], [], []
    for rec in test_ds.recordings:
        stream = model.stream()
        trace = []
        for x in rec.x:
            t0 = time.perf_counter()
            trace.append(stream.step(x))
            step_times.append(time.perf_counter() - t0)
        probs.append(np.stack(trace))  # class probabilities per step
        labels.append(int(rec.y[-1]))
    p = np.stack(probs)  # (recordings, steps, classes)
    y = np.asarray(labels)
    predicted = p.argmax(axis=-1)
    steps = p.shape[1]
    marks = [t for t in _CHECKPOINTS if t <= steps]

    print("      how the classification evolves (one held-out recording per activity):")
    print("      " + f"{'true activity':<15}" + "".join(f"{f't={t}':>17}" for t in marks))
    for c in range(len(classes)):
        i = int(np.flatnonzero(y == c)[0])
        cells = "".join(
            f"{classes[predicted[i, t - 1]][:10]:>11} {p[i, t - 1].max():.2f}" for t in marks
        )
        print("      " + f"{classes[c]:<15}" + cells)
    acc_by_step = (predicted == y[:, None]).mean(axis=0)
    print(
        "      held-out accuracy after t samples: "
        + ", ".join(f"t={t} {acc_by_step[t - 1]:.2f}" for t in marks)
    )
    streamed = float(acc_by_step[-1])
    torch_metrics = evaluate(result.model, test_ds)
    plot = _plot(p, y, acc_by_step, classes, out_dir / "streaming.png")
    print(
        f"\nheld-out accuracy: {streamed:.3f} ({int((predicted[:, -1] == y).sum())}/{len(y)} "
        f"recordings right after all {steps} samples, streamed through the runtime; "
        f"PyTorch on full sequences: {torch_metrics['accuracy_last']:.3f})"
    )
    print(
        f"verify: {'PASSED' if report.passed else 'FAILED'}, max |dy| "
        f"{report.max_abs_output:.1e}, max |dstate| {report.max_abs_state:.1e} "
        f"(atol {report.atol:g}, rtol {report.rtol:g}; PyTorch's own float32 noise on the same "
        f"inputs up to {report.float32_noise:.1e})"
    )
    print(
        f"runtime: {len(step_times)} steps, median {np.median(step_times) * 1e6:.0f} us per "
        f"step(), p99 {np.percentile(step_times, 99) * 1e6:.0f} us"
    )
    if plot is not None:
        print(f"plot: {plot}")
    print(f"demo wall time {time.perf_counter() - start:.0f} s")
    return 0 if report.passed else 1


def _plot(
    p: np.ndarray, y: np.ndarray, acc: np.ndarray, classes: tuple[str, ...], path: Path
) -> Path | None:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    steps = np.arange(1, p.shape[1] + 1)
    fig = Figure(figsize=(11, 4), layout="tight")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    axes[0].plot(steps, acc, color="black")
    axes[0].set(
        xlabel="samples seen (10 Hz)",
        ylabel="accuracy",
        ylim=(0, 1.02),
        title="held-out accuracy while streaming",
    )
    axes[0].grid(alpha=0.3)
    i = int(np.flatnonzero(y == y.max())[0])
    for c, name in enumerate(classes):
        axes[1].plot(steps, p[i, :, c], label=name)
    axes[1].set(
        xlabel="samples seen (10 Hz)",
        ylabel="probability",
        ylim=(0, 1.02),
        title=f"one held-out '{classes[y[i]]}' recording",
    )
    axes[1].legend(loc="center right")
    axes[1].grid(alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return atomic_write_bytes(path, buf.getvalue())  # a reader never sees half a PNG
