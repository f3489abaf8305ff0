"""File readers: ``load_csv`` and ``load_npz`` turn a CSV or NPZ file into a
``SensorDataset``, with their parsing, label encoding and horizon shifting.

This module needs only numpy (no torch).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .recordings import TASKS, Recording, SensorDataset, Task

__all__ = ["load_csv", "load_npz"]


# --------------------------------------------------------------------------- CSV


def load_csv(
    path: str | os.PathLike[str],
    *,
    target: str,
    features: Sequence[str] | None = None,
    sequence_column: str | None = None,
    task: str | None = None,
    horizon: int = 0,
) -> SensorDataset:
    """Read a CSV file with a header row.

    ``features`` defaults to every numeric column except the target and the
    sequence column; the target may also be named as a feature (autoregressive
    forecasting). ``sequence_column`` splits the rows into recordings (in order of
    first appearance). ``task`` defaults to classification for a non-numeric
    target, regression otherwise; ``horizon`` (regression only) makes ``y[t]`` the
    target ``horizon`` rows later within the same recording.
    """
    path = Path(path)
    header, rows, lines = _read_csv_rows(path)
    columns = {name: [row[j] for row in rows] for j, name in enumerate(header)}

    def column(name: str) -> list[str]:
        if name not in columns:
            raise ValueError(
                f"{path}: unknown column {name!r}; available columns: {', '.join(header)}"
            )
        return columns[name]

    target_cells = column(target)
    seq_cells = column(sequence_column) if sequence_column is not None else None
    if features is None:
        feature_names = [
            n
            for n in header
            if n not in (target, sequence_column) and _is_numeric_column(columns[n])
        ]
        if not feature_names:
            raise ValueError(
                f"{path}: no numeric feature columns besides the target {target!r}; "
                f"columns: {', '.join(header)}"
            )
    else:
        if isinstance(features, str):
            raise TypeError("features must be a sequence of column names, not one string")
        feature_names = [str(n) for n in features]
        if not feature_names:
            raise ValueError("features is empty")
        dupes = sorted({n for n in feature_names if feature_names.count(n) > 1})
        if dupes:
            raise ValueError(f"features names a column more than once: {dupes}")
        for n in feature_names:
            column(n)

    kind = _resolve_task(task, default=_default_csv_task(target_cells))
    horizon = _check_horizon(horizon, kind)
    x_all = np.stack(
        [_numeric_cells(path, n, columns[n], lines, role="feature") for n in feature_names],
        axis=1,
    ).astype(np.float32)
    _check_float32(path, x_all, feature_names, lines)

    if kind == "classification":
        y_all, output_names = _encode_csv_labels(path, target, target_cells, lines)
    else:
        y_all = _numeric_cells(path, target, target_cells, lines, role="target").astype(np.float32)
        _check_float32(path, y_all[:, None], [target], lines)
        output_names = (target,)

    if seq_cells is None:
        groups = {path.stem: np.arange(len(rows))}
    else:
        order: dict[str, list[int]] = {}
        for i, value in enumerate(seq_cells):
            if value == "":
                raise ValueError(
                    f"{path}: sequence column {sequence_column!r} is empty at line {lines[i]}"
                )
            order.setdefault(value, []).append(i)
        groups = {k: np.asarray(v) for k, v in order.items()}

    recordings = []
    for name, idx in groups.items():
        x = x_all[idx]
        if kind == "classification":
            recordings.append(Recording(x, y_all[idx], np.ones(len(idx), dtype=bool), name))
        else:
            y, mask = _shift_target(y_all[idx][:, None], horizon)
            recordings.append(Recording(x, y, mask, name))
    return _dataset(recordings, feature_names, output_names, kind, target, horizon, path)


def _read_csv_rows(path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, stripped cells of every non-blank row, and each row's 1-based line number."""
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        for row in reader:
            cells = [c.strip() for c in row]
            if not any(cells):
                continue
            if header is None:
                header = cells
                if "" in header:
                    raise ValueError(f"{path}: the header has an empty column name: {header}")
                dupes = sorted({n for n in header if header.count(n) > 1})
                if dupes:
                    raise ValueError(f"{path}: duplicate column names in the header: {dupes}")
                continue
            if len(cells) != len(header):
                raise ValueError(
                    f"{path}, line {reader.line_num}: {len(cells)} cells, "
                    f"the header has {len(header)} columns"
                )
            rows.append(cells)
            lines.append(reader.line_num)
    if header is None:
        raise ValueError(f"{path}: empty file (no header row)")
    if not rows:
        raise ValueError(f"{path}: a header but no data rows")
    return header, rows, lines


def _parse_float(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _is_numeric_column(cells: Sequence[str]) -> bool:
    """Every non-empty cell parses as a float, and at least one cell is non-empty."""
    seen = False
    for c in cells:
        if c == "":
            continue
        if _parse_float(c) is None:
            return False
        seen = True
    return seen


def _default_csv_task(target_cells: Sequence[str]) -> Task:
    return "regression" if _is_numeric_column(target_cells) else "classification"


def _numeric_cells(
    path: Path, name: str, cells: Sequence[str], lines: Sequence[int], *, role: str
) -> np.ndarray:
    out = np.empty(len(cells), dtype=np.float64)
    for i, c in enumerate(cells):
        value = _parse_float(c)
        if c == "" or value is None or not math.isfinite(value):
            what = "a missing value" if c == "" else f"{c!r}"
            hint = "" if value is None and c != "" else " (missing values are not supported)"
            raise ValueError(
                f"{path}: {role} column {name!r} must be numeric and finite, "
                f"but line {lines[i]} has {what}{hint}"
            )
        out[i] = value
    return out


def _check_float32(
    path: Path, values: np.ndarray, names: Sequence[str], lines: Sequence[int]
) -> None:
    bad = np.argwhere(~np.isfinite(values.astype(np.float32)))
    if bad.size:
        row, col = bad[0]
        raise ValueError(
            f"{path}: column {names[col]!r} at line {lines[row]} does not fit in float32"
        )


def _encode_csv_labels(
    path: Path, name: str, cells: Sequence[str], lines: Sequence[int]
) -> tuple[np.ndarray, tuple[str, ...]]:
    for i, c in enumerate(cells):
        if c == "":
            raise ValueError(
                f"{path}: target column {name!r} has a missing label at line {lines[i]}"
            )
    numbers = [_parse_float(c) for c in cells]
    if all(v is not None for v in numbers):
        values = np.asarray(numbers, dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"{path}: target column {name!r} has a non-finite label {cells[i]!r} "
                f"at line {lines[i]}"
            )
        return _encode_labels(values)
    return _encode_labels(np.asarray(cells, dtype=str))


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
    kind = _resolve_task(task, default=default)
    horizon = _check_horizon(horizon, kind)

    feature_names = _npz_names(path, arrays.get("feature_names"), "feature_names", n_in)
    if feature_names is None:
        feature_names = tuple(f"x{i}" for i in range(n_in))
    for i in range(n):
        bad = np.argwhere(~np.isfinite(x[i, : lengths[i]].astype(np.float32)))
        if bad.size:
            t, j = (int(v) for v in bad[0])
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
        for i in range(n):
            bad = np.argwhere(~np.isfinite(y[i, : lengths[i]].astype(np.float32)))
            if bad.size:
                t, j = (int(v) for v in bad[0])
                raise ValueError(
                    f"{path}: y[{i}, {t}, {j}] is {y[i, t, j]!r}; targets must be finite"
                )
        names = _npz_names(path, arrays.get("output_names"), "output_names", n_out)
        output_names = names or (("y",) if n_out == 1 else tuple(f"y{j}" for j in range(n_out)))
        recordings = []
        for i in range(n):
            yi, mask = _shift_target(y[i, : lengths[i]].astype(np.float32), horizon)
            recordings.append(Recording(x[i, : lengths[i]], yi, mask, f"{path.stem}[{i}]"))
        target = "y"
    return _dataset(recordings, feature_names, output_names, kind, target, horizon, path)


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
            return _encode_labels(labels)
        index = {n: i for i, n in enumerate(names)}
        unknown = sorted(set(np.unique(labels).tolist()) - set(index))
        if unknown:
            raise ValueError(f"{path}: labels {unknown} are not in output_names {list(names)}")
        return np.asarray([index[v] for v in labels.tolist()], dtype=np.int64), names
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise ValueError(f"{path}: y has non-finite labels")
    if names is None:
        return _encode_labels(labels)
    codes = labels.astype(np.int64)
    if (codes != labels).any() or codes.min() < 0 or codes.max() >= len(names):
        raise ValueError(
            f"{path}: with output_names given, integer labels must be class indices in "
            f"[0, {len(names)}); found values from {labels.min()} to {labels.max()}"
        )
    return codes, names


# --------------------------------------------------------------------------- shared


def _resolve_task(task: str | None, *, default: Task) -> Task:
    if task is None:
        return default
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    return task  # type: ignore[return-value]


def _check_horizon(horizon: int, task: str) -> int:
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


def _encode_labels(labels: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class indices into the sorted unique labels (numbers numerically, strings lexically)."""
    classes, codes = np.unique(labels, return_inverse=True)
    names = tuple(_label_name(v) for v in classes.tolist())
    if len(set(names)) != len(names):
        raise ValueError(f"labels {names} are not distinct once written as text")
    return codes.reshape(-1).astype(np.int64), names


def _shift_target(y: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """``y[t] = target[t + horizon]``; the last ``horizon`` steps are masked out."""
    steps = y.shape[0]
    mask = np.arange(steps) < steps - horizon
    if horizon == 0:
        return np.ascontiguousarray(y, dtype=np.float32), mask
    out = np.zeros_like(y, dtype=np.float32)
    if steps > horizon:
        out[: steps - horizon] = y[horizon:]
    return out, mask


def _dataset(
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
