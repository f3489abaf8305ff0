"""Training (``train`` extra): truncated BPTT over recordings, early stopping, checkpoint.

    from stream_gru.training import GRUConfig, GRUModel, train, load_checkpoint

    result = train(load_dataset("data.csv", target="label"), out_dir="run")
    result.metrics        # validation metrics of the best epoch
    net = load_checkpoint(result.checkpoint)

Recordings are batched whole (padded to the longest in the batch, padding masked)
and cut along time into windows of ``TrainOptions.window`` steps; the hidden state
is carried from one window to the next and detached between them, with one
optimizer step per window. Validation runs each recording whole, as a stream.
"""

from __future__ import annotations

import copy
import io
import os
import sys
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data.dataset import (
    MIN_RECORDINGS_FOR_RECORDING_SPLIT,
    SensorDataset,
    compute_normalization,
    split_dataset,
)
from ..formats.files import atomic_write_bytes
from .config import TrainOptions
from .network import GRUConfig, GRUModel, Normalization, load_checkpoint, save_checkpoint

__all__ = [
    "GRUConfig",
    "GRUModel",
    "TrainOptions",
    "TrainResult",
    "evaluate",
    "load_checkpoint",
    "train",
]


@dataclass(frozen=True)
class TrainResult:
    """What ``train`` made.

    checkpoint: the written ``checkpoint.pt``.
    model: the network with the best epoch's weights, in eval mode.
    history: one dict per epoch run: ``epoch``, ``train_loss``, ``val_loss`` and
        ``val_<metric>`` for each metric of ``evaluate``.
    best_epoch: the epoch (from 1) whose weights were kept.
    metrics: ``evaluate`` on the validation data with those weights.
    plot: the loss-curve PNG, or None where matplotlib is not installed.
    """

    checkpoint: Path
    model: GRUModel
    history: tuple[dict[str, float], ...]
    best_epoch: int
    metrics: dict[str, float]
    plot: Path | None


def train(
    data: SensorDataset,
    config: GRUConfig | None = None,
    options: TrainOptions | None = None,
    *,
    out_dir: str | os.PathLike[str],
    validation: SensorDataset | None = None,
) -> TrainResult:
    """Train a network on ``data`` and write ``out_dir/checkpoint.pt`` and ``loss_curve.png``.

    Without ``config`` the network is a one-layer GRU of 64 units sized by the data.
    Without ``validation`` the data is split with ``split_dataset``. The input (and,
    for regression, target) normalization comes from the training split only.
    Classification needs at least two classes among the labels of ``data``.
    """
    options = options or TrainOptions()
    _check_classes(data)
    if config is None:
        config = GRUConfig.for_data(data, hidden_size=64, num_layers=1)
    _check_fits(config, data, "data")
    if validation is None:
        train_ds, val_ds = split_dataset(
            data, validation_fraction=options.validation_fraction, seed=options.seed
        )
        split = (
            "by recording"
            if len(data.recordings) >= MIN_RECORDINGS_FOR_RECORDING_SPLIT
            else "by time"
        )
    else:
        _check_fits(config, validation, "validation")
        if (validation.feature_names, validation.output_names) != (
            data.feature_names,
            data.output_names,
        ):
            raise ValueError(
                "validation data has other feature or output names than the training data: "
                f"{validation.feature_names} / {validation.output_names} vs "
                f"{data.feature_names} / {data.output_names}"
            )
        train_ds, val_ds, split = data, validation, "given"

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.seed)
        rng = np.random.default_rng(options.seed)
        model = GRUModel(config, Normalization.from_dict(compute_normalization(train_ds)))
        history, best_epoch = _fit(model, train_ds, val_ds, options, rng)
    model.eval()
    metrics = evaluate(model, val_ds)

    checkpoint = save_checkpoint(
        out / "checkpoint.pt",
        model,
        feature_names=data.feature_names,
        output_names=data.output_names,
        metrics={**{f"val_{k}": v for k, v in metrics.items()}, "best_epoch": best_epoch},
        training={
            "source": data.source,
            "target": data.target,
            "sequence_column": data.sequence_column,
            "horizon": data.horizon,
            "task": data.task,
            "options": asdict(options),
            "history": [dict(h) for h in history],
            "split": split,
            "train_recordings": len(train_ds.recordings),
            "val_recordings": len(val_ds.recordings),
            "train_steps": train_ds.num_valid_steps,
            "val_steps": val_ds.num_valid_steps,
            "seed": options.seed,
            "best_epoch": best_epoch,
            "epochs_run": len(history),
            "torch_version": str(torch.__version__),
        },
    )
    plot = _plot_history(history, best_epoch, out / "loss_curve.png")
    return TrainResult(checkpoint, model, tuple(history), best_epoch, metrics, plot)


def _check_classes(data: SensorDataset) -> None:
    """A classifier of one class learns nothing (its loss is 0 from the start)."""
    if data.task != "classification":
        return
    present = sorted({int(c) for r in data.recordings for c in np.unique(r.y[r.mask])})
    if len(present) < 2:
        names = [data.output_names[c] if 0 <= c < data.output_size else c for c in present]
        raise ValueError(
            f"classification needs at least 2 classes; the data has {len(present)}: {names}"
        )


def _check_fits(config: GRUConfig, data: SensorDataset, what: str) -> None:
    mismatches = [
        f"{name} {getattr(config, name)!r} vs {actual!r}"
        for name, actual in (
            ("input_size", data.input_size),
            ("output_size", data.output_size),
            ("task", data.task),
        )
        if getattr(config, name) != actual
    ]
    if mismatches:
        raise ValueError(f"GRUConfig does not fit the {what}: " + "; ".join(mismatches))


def _fit(
    model: GRUModel,
    train_ds: SensorDataset,
    val_ds: SensorDataset,
    options: TrainOptions,
    rng: np.random.Generator,
) -> tuple[list[dict[str, float]], int]:
    """The epoch loop; leaves the best epoch's weights in ``model``."""
    from tqdm import tqdm

    x_all, y_all, mask_all, lengths = _pad(train_ds, model)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=options.lr, weight_decay=options.weight_decay
    )
    history: list[dict[str, float]] = []
    best_loss, best_epoch, best_state = float("inf"), 0, copy.deepcopy(model.state_dict())
    bar = tqdm(
        range(1, options.epochs + 1), desc="train", unit="epoch", disable=not options.progress
    )
    for epoch in bar:
        model.train()
        total, count = 0.0, 0
        for idx in np.array_split(
            rng.permutation(len(lengths)), -(-len(lengths) // options.batch_size)
        ):
            steps = int(lengths[idx].max())
            xb, yb, mb = x_all[idx, :steps], y_all[idx, :steps], mask_all[idx, :steps]
            state = None
            for start in range(0, steps, options.window):
                stop = start + options.window
                out, state = model.forward_normalized(xb[:, start:stop], state)
                state = _detach(state)
                valid = mb[:, start:stop]
                n = int(valid.sum())
                if n == 0:
                    continue
                loss = _loss(model, out, yb[:, start:stop], valid)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                torch.nn.utils.clip_grad_norm_(model.parameters(), options.clip_norm)
                optimizer.step()
                total += float(loss.detach()) * n
                count += n
        val = evaluate(model, val_ds)
        row = {"epoch": float(epoch), "train_loss": total / max(count, 1)}
        row.update({f"val_{k}": v for k, v in val.items()})
        history.append(row)
        if val["loss"] < best_loss:
            best_loss, best_epoch = val["loss"], epoch
            best_state = copy.deepcopy(model.state_dict())
        if options.epoch_lines:
            tqdm.write(_epoch_line(row, best=epoch == best_epoch), file=sys.stdout)
        if epoch - best_epoch >= options.patience:
            break
    bar.close()
    model.load_state_dict(best_state)
    return history, best_epoch


_SHORT = {"accuracy": "acc", "accuracy_last": "acc_last"}


def _epoch_line(row: Mapping[str, float], *, best: bool) -> str:
    parts = [f"epoch {int(row['epoch']):3d}"]
    for key, value in row.items():
        if key == "epoch":
            continue
        name = key
        if key.startswith("val_") and key[4:] in _SHORT:
            name = "val_" + _SHORT[key[4:]]
        digits = 3 if "acc" in key else 4
        parts.append(f"{name} {value:.{digits}f}")
    return "  ".join(parts) + ("  *" if best else "")


def _detach(state: Any) -> Any:
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def _pad(
    ds: SensorDataset, model: GRUModel
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray]:
    """All recordings padded to the longest: x, targets (normalized for regression), mask."""
    lengths = np.asarray([len(r) for r in ds.recordings])
    n, steps = len(lengths), int(lengths.max())
    x = np.zeros((n, steps, ds.input_size), dtype=np.float32)
    mask = np.zeros((n, steps), dtype=bool)
    if ds.task == "classification":
        y = np.zeros((n, steps), dtype=np.int64)
    else:
        y = np.zeros((n, steps, ds.output_size), dtype=np.float32)
    for i, r in enumerate(ds.recordings):
        x[i, : len(r)], y[i, : len(r)], mask[i, : len(r)] = r.x, r.y, r.mask
    yt = torch.from_numpy(y)
    if ds.task == "regression":
        yt = (yt - model.target_mean) / model.target_std
    return torch.from_numpy(x), yt, torch.from_numpy(mask), lengths


def _loss(model: GRUModel, out: torch.Tensor, y: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean loss over the valid steps: cross-entropy, or MSE on normalized targets."""
    if model.config.task == "classification":
        return F.cross_entropy(out[valid], y[valid])
    return F.mse_loss(out[valid], y[valid])


@torch.no_grad()
def evaluate(model: GRUModel, data: SensorDataset, *, batch_size: int = 64) -> dict[str, float]:
    """Loss and metrics on ``data``, each recording run whole from a zero state.

    Classification: ``loss`` (cross-entropy), ``accuracy`` over valid steps and
    ``accuracy_last`` at each recording's last valid step. Regression: ``loss``
    (MSE on normalized targets, as in training) and ``mae`` in the data's units.
    """
    _check_fits(model.config, data, "data")
    if data.num_valid_steps == 0:
        raise ValueError(f"{data.source}: no valid steps to evaluate on")
    was_training = model.training
    model.eval()
    try:
        loss_sum, steps_total, abs_err, correct, last_correct, with_last = 0.0, 0, 0.0, 0, 0, 0
        for start in range(0, len(data.recordings), batch_size):
            part = SensorDataset(
                data.recordings[start : start + batch_size],
                data.feature_names,
                data.output_names,
                data.task,
                data.target,
                data.horizon,
                data.source,
            )
            x, y, mask, _ = _pad(part, model)
            n = int(mask.sum())
            if n == 0:
                continue
            out, _ = model.forward_normalized(x)
            loss_sum += float(_loss(model, out, y, mask)) * n
            steps_total += n
            if data.task == "classification":
                pred = out.argmax(dim=-1)
                correct += int((pred == y)[mask].sum())
                has_valid = mask.any(dim=1)
                last = mask.shape[1] - 1 - mask.flip(1).int().argmax(dim=1)
                rows = torch.nonzero(has_valid).flatten()
                last_correct += int((pred[rows, last[rows]] == y[rows, last[rows]]).sum())
                with_last += len(rows)
            else:
                err = (out - y)[mask] * model.target_std
                abs_err += float(err.abs().sum())
        metrics = {"loss": loss_sum / steps_total}
        if data.task == "classification":
            metrics["accuracy"] = correct / steps_total
            metrics["accuracy_last"] = last_correct / with_last
        else:
            metrics["mae"] = abs_err / (steps_total * data.output_size)
        return metrics
    finally:
        model.train(was_training)


def _plot_history(history: list[dict[str, float]], best_epoch: int, path: Path) -> Path | None:
    """Train/val loss per epoch with the best epoch marked, and the validation metric."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        warnings.warn("matplotlib is not installed: no loss_curve.png", stacklevel=3)
        return None
    epochs = [int(h["epoch"]) for h in history]
    metric = "val_accuracy" if "val_accuracy" in history[0] else "val_mae"
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_metric = fig.subplots(1, 2)
    ax_loss.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax_loss.plot(epochs, [h["val_loss"] for h in history], label="validation")
    ax_loss.axvline(best_epoch, color="grey", linestyle="--", label=f"best epoch {best_epoch}")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend()
    for key in (metric, "val_accuracy_last"):
        if key in history[0]:
            ax_metric.plot(epochs, [h[key] for h in history], label=key)
    ax_metric.axvline(best_epoch, color="grey", linestyle="--")
    ax_metric.set(xlabel="epoch", title="validation " + metric[4:])
    ax_metric.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return atomic_write_bytes(path, buf.getvalue())  # a reader never sees half a PNG
