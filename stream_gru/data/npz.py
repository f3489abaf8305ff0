"""NPZ files -> ``SensorDataset`` (``load_npz``), and what both file readers share:
the task, the horizon, label encoding, target shifting, the dataset's final checks.
CSV files are read by ``csv_files.load_csv``.

This module needs only numpy (no torch).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .recordings import TASKS, Recording, SensorDataset, Task

__all__ = [
    "check_horizon",
    "encode_labels",
    "load_npz",
    "make_dataset",
    "resolve_task",
    "shift_target",
]


# --------------------------------------------------------------------------- NPZ


def load_npz(
    path: str | os.PathLike[str], *, task: str | None = None, horizon: int = 0
) -> SensorDataset:
    """Read ``x`` (N, T, I) and ``y`` from an ``.npz`` file.

    ``y`` is (N,) one label per recording (broadcast to every step), (N, T) one
    label or regression target per step, or (N, T, O) regression targets. Optional:
    ``lengths`` (N,) for recordings padded to T, ``feature_names`` (I,) and
    ``output_names``: for string labels they fix the class order, for integer labels
    they name class indices 0..K-1. ``task`` defaults to classification for integer,
    bool or string ``y``, regression otherwise.
    """
    path = Path(path)
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: np.asarray(z[k]) for k in z.files}
    for key in ("x", "y"):
        if key not in arrays:
            raise ValueError(f"{path}: no array {key!r}; the file has {sorted(arrays)}")
    x, y = arrays["x"], arrays["y"]
    if x.ndim != 3 or min(x.shape) < 1 or x.dtype.kind not in "fiu":
        raise ValueError(f"{path}: x must be a numeric (N, T, I) array, got {x.dtype} {x.shape}")
    n, steps, n_in = x.shape
    lengths = _npz_lengths(path, arrays.get("lengths"), n, steps)

    if y.shape[:1] != (n,) or y.ndim > 3 or (y.ndim >= 2 and y.shape[1] != steps):
        raise ValueError(
            f"{path}: y must be ({n},), ({n}, {steps}) or ({n}, {steps}, O) for x {x.shape}, "
            f"got {y.shape}"
        )
    if y.dtype.kind not in "biufUS":
        raise ValueError(f"{path}: y has unsupported dtype {y.dtype}")
    default: Task = "classification" if y.dtype.kind in "biuUS" else "regression"
    kind = resolve_task(task, default=default)
    horizon = check_horizon(horizon, kind)

    feature_names = _npz_names(path, arrays.get("feature_names"), "feature_names", n_in)
    if feature_names is None:
        feature_names = tuple(f"x{i}" for i in range(n_in))
    bad = _first_non_finite(x, lengths)
    if bad is not None:
        i, t, j = bad
        raise ValueError(
            f"{path}: x[{i}, {t}, {j}] (feature {feature_names[j]!r}) is "
            f"{x[i, t, j]!r}; features must be finite"
        )
    x = x.astype(np.float32)

    if y.ndim == 1:
        y = np.broadcast_to(y[:, None], (n, steps))
    if kind == "classification":
        if y.ndim == 3:
            raise ValueError(
                f"{path}: classification needs y of shape (N,) or (N, T), got {y.shape}"
            )
        names_given = _npz_names(path, arrays.get("output_names"), "output_names", None)
        valid = np.concatenate([y[i, : lengths[i]] for i in range(n)])
        codes, output_names = _encode_npz_labels(path, valid, names_given)
        bounds = np.cumsum([0, *lengths])
        recordings = [
            Recording(
                x[i, : lengths[i]],
                codes[bounds[i] : bounds[i + 1]],
                np.ones(lengths[i], dtype=bool),
                f"{path.stem}[{i}]",
            )
            for i in range(n)
        ]
        target = "y"
    else:
        if y.dtype.kind in "US":
            raise ValueError(f"{path}: regression needs numeric y, got {y.dtype}")
        if y.ndim == 2:
            y = y[:, :, None]
        n_out = y.shape[2]
        bad = _first_non_finite(y, lengths)
        if bad is not None:
            i, t, j = bad
            raise ValueError(f"{path}: y[{i}, {t}, {j}] is {y[i, t, j]!r}; targets must be finite")
        names = _npz_names(path, arrays.get("output_names"), "output_names", n_out)
        output_names = names or (("y",) if n_out == 1 else tuple(f"y{j}" for j in range(n_out)))
        recordings = []
        for i in range(n):
            yi, mask = shift_target(y[i, : lengths[i]].astype(np.float32), horizon)
            recordings.append(Recording(x[i, : lengths[i]], yi, mask, f"{path.stem}[{i}]"))
        target = "y"
    return make_dataset(recordings, feature_names, output_names, kind, target, horizon, path)


def _npz_lengths(path: Path, lengths: np.ndarray | None, n: int, steps: int) -> list[int]:
    if lengths is None:
        return [steps] * n
    if lengths.shape != (n,) or lengths.dtype.kind not in "iu":
        raise ValueError(
            f"{path}: lengths must be ({n},) integers, got {lengths.dtype} {lengths.shape}"
        )
    bad = np.flatnonzero((lengths < 1) | (lengths > steps))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{path}: lengths[{i}] = {int(lengths[i])} is outside [1, {steps}]")
    return [int(v) for v in lengths]


def _npz_names(
    path: Path, names: np.ndarray | None, key: str, size: int | None
) -> tuple[str, ...] | None:
    if names is None:
        return None
    if names.ndim != 1 or (size is not None and names.shape[0] != size):
        want = f"({size},)" if size is not None else "1-D"
        raise ValueError(f"{path}: {key} must be {want}, got shape {names.shape}")
    out = tuple(str(v) for v in names.tolist())
    if len(set(out)) != len(out):
        raise ValueError(f"{path}: {key} has duplicates: {list(out)}")
    return out


def _encode_npz_labels(
    path: Path, labels: np.ndarray, names: tuple[str, ...] | None
) -> tuple[np.ndarray, tuple[str, ...]]:
    if labels.dtype.kind in "US":
        labels = labels.astype(str)
        if names is None:
            return encode_labels(labels)
        index = {n: i for i, n in enumerate(names)}
        unknown = sorted(set(np.unique(labels).tolist()) - set(index))
        if unknown:
            raise ValueError(f"{path}: labels {unknown} are not in output_names {list(names)}")
        return np.asarray([index[v] for v in labels.tolist()], dtype=np.int64), names
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise ValueError(f"{path}: y has non-finite labels")
    if names is None:
        return encode_labels(labels)
    codes = labels.astype(np.int64)
    if (codes != labels).any() or codes.min() < 0 or codes.max() >= len(names):
        raise ValueError(
            f"{path}: with output_names given, integer labels must be class indices in "
            f"[0, {len(names)}); found values from {labels.min()} to {labels.max()}"
        )
    return codes, names


# --------------------------------------------------------------------------- shared


def resolve_task(task: str | None, *, default: Task) -> Task:
    if task is None:
        return default
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    return task  # type: ignore[return-value]


def check_horizon(horizon: int, task: str) -> int:
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 0:
        raise ValueError(f"horizon must be an int >= 0, got {horizon!r}")
    if horizon and task != "regression":
        raise ValueError(f"horizon={horizon} needs task 'regression', got {task!r}")
    return int(horizon)


def _label_name(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def encode_labels(labels: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class indices into the sorted unique labels (numbers numerically, strings lexically)."""
    classes, codes = np.unique(labels, return_inverse=True)
    names = tuple(_label_name(v) for v in classes.tolist())
    if len(set(names)) != len(names):
        raise ValueError(f"labels {names} are not distinct once written as text")
    return codes.reshape(-1).astype(np.int64), names


def shift_target(y: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """``y[t] = target[t + horizon]``; the last ``horizon`` steps are masked out."""
    steps = y.shape[0]
    mask = np.arange(steps) < steps - horizon
    if horizon == 0:
        return np.ascontiguousarray(y, dtype=np.float32), mask
    out = np.zeros_like(y, dtype=np.float32)
    if steps > horizon:
        out[: steps - horizon] = y[horizon:]
    return out, mask


def make_dataset(
    recordings: Sequence[Recording],
    feature_names: Sequence[str],
    output_names: Sequence[str],
    task: Task,
    target: str,
    horizon: int,
    path: Path,
) -> SensorDataset:
    """The loaded dataset, refused where no step has a valid target."""
    ds = SensorDataset(
        recordings=tuple(recordings),
        feature_names=tuple(feature_names),
        output_names=tuple(output_names),
        task=task,
        target=target,
        horizon=horizon,
        source=str(path),
    )
    _check_has_valid_steps(ds)
    return ds


def _check_has_valid_steps(ds: SensorDataset) -> None:
    if ds.num_valid_steps == 0:
        longest = max(len(r) for r in ds.recordings)
        raise ValueError(
            f"{ds.source}: no step has a valid target (horizon {ds.horizon}, "
            f"longest recording {longest} steps)"
        )


def _first_non_finite(a: np.ndarray, lengths: Sequence[int]) -> tuple[int, int, int] | None:
    """(recording, step, column) of the first value of ``a`` (N, T, C), within each
    recording's length, that is not finite as float32; None where all are."""
    for i, length in enumerate(lengths):
        bad = np.argwhere(~np.isfinite(a[i, :length].astype(np.float32)))
        if bad.size:
            t, j = (int(v) for v in bad[0])
            return i, t, j
    return None
