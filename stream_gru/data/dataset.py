"""Recorded sensor data: CSV / NPZ files -> recordings -> training and validation splits.

A recording is one uninterrupted stream (one machine run, one subject, one file):
features ``x`` of shape (T, input_size), targets ``y`` for every step, and a ``mask``
of the steps that have a valid target. The model sees a recording as it would see
a live stream, one step after another, so recordings are never shuffled row by row.

This module needs only numpy (no torch), so data can be checked without the
``train`` extra's heavy dependencies.

The types live in ``recordings`` and the file readers in ``csv_files`` and ``npz``;
this module holds ``load_dataset``, the splits and the normalization, and re-exports
the rest.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..formats.files import open_regular
from ..formats.sniff import looks_like
from .csv_files import Missing, load_csv
from .npz import load_npz
from .recordings import TASKS as TASKS
from .recordings import Recording, SensorDataset
from .recordings import Task as Task

__all__ = [
    "MIN_RECORDINGS_FOR_RECORDING_SPLIT",
    "Recording",
    "SensorDataset",
    "compute_normalization",
    "data_format",
    "describe_dataset",
    "load_csv",
    "load_dataset",
    "load_npz",
    "load_training_data",
    "options_given",
    "split_dataset",
]

#: ``split_dataset`` holds out whole recordings from this many recordings on; with
#: fewer it holds out the end of every recording.
MIN_RECORDINGS_FOR_RECORDING_SPLIT = 5


# --------------------------------------------------------------------------- shared


DataFormat = Literal["csv", "npz"]


def data_format(path: str | os.PathLike[str]) -> DataFormat:
    """How ``load_dataset`` reads ``path``: "npz" for a NumPy archive (by its suffix or
    its content), "csv" for text (whatever the suffix: .csv, .tsv, .txt, ...).
    ``ValueError`` saying what the file seems to be where it is neither."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        return "npz"
    with open_regular(path) as f:  # OSError for a missing file, a folder, a pipe...
        head = f.read(4096)
        if head.startswith(b"PK\x03\x04"):  # a zip: an .npz, or a spreadsheet, or ...
            head += f.read()
    seems = looks_like(head)
    if seems == "a NumPy .npz archive":
        return "npz"
    if not head or seems.startswith(("text", "JSON text", "UTF-16 text")):
        return "csv"  # read_csv_table says what it can't decode
    raise ValueError(
        f"{path}: cannot read it as data: it looks like {seems}; stream-gru reads CSV text "
        f"with a header row (.csv, .tsv, .txt, ...) or NumPy .npz archives with x and y"
    )


def load_dataset(path: str | os.PathLike[str], **kw: Any) -> SensorDataset:
    """``load_csv`` or ``load_npz``, as ``data_format`` tells."""
    if data_format(path) == "npz":
        return load_npz(path, **kw)
    return load_csv(path, **kw)


def options_given(**options: Any) -> list[str]:
    """The data options that are set, as their command-line flags in the order given
    (``sequence_column`` -> ``--sequence-column``; ``missing`` counts when not its
    default "error"), for a message naming the options that do not apply."""
    return [
        "--" + name.replace("_", "-")
        for name, value in options.items()
        if value and not (name == "missing" and value == "error")
    ]


def load_training_data(
    path: str | os.PathLike[str],
    *,
    target: str | None = None,
    features: Sequence[str] | None = None,
    sequence_column: str | None = None,
    task: str | None = None,
    horizon: int = 0,
    missing: Missing = "error",
    delimiter: str | None = None,
) -> SensorDataset:
    """A data file as ``stream-gru train`` reads it, with its options checked against
    the file's format: a CSV needs ``target``; the column options (``target``,
    ``features``, ``sequence_column``, ``missing``, ``delimiter``) apply to CSV only
    (an .npz carries x and y). ``ValueError`` names the option that does not apply."""
    kind = data_format(path)
    if kind == "csv":
        if not target:
            raise ValueError(f"{path}: a CSV needs --target COLUMN (the column to predict)")
        return load_csv(
            path,
            target=target,
            features=features,
            sequence_column=sequence_column,
            task=task,
            horizon=horizon,
            missing=missing,
            delimiter=delimiter,
        )
    given = options_given(
        target=target,
        features=features,
        sequence_column=sequence_column,
        missing=missing,
        delimiter=delimiter,
    )
    if given:
        raise ValueError(
            f"{', '.join(given)}: for CSV files only; {path} is an .npz, which carries x and y"
        )
    return load_npz(path, task=task, horizon=horizon)


#: Fewer valid steps than this make ``describe_dataset`` warn that the data is tiny.
FEW_STEPS = 1000


def describe_dataset(ds: SensorDataset) -> list[str]:
    """What was read, as lines for the user: rows and recordings, features, target and
    classes, columns ignored, missing values handled, and warnings (tiny data, a column
    that looks like a device id)."""

    def plural(n: int, word: str) -> str:
        return f"{n:,} {word}{'' if n == 1 else 'es' if word.endswith('s') else 's'}"

    lengths = [len(r) for r in ds.recordings]
    span = f"{min(lengths):,}" if min(lengths) == max(lengths) else (
        f"{min(lengths):,}-{max(lengths):,}")  # fmt: skip
    reading = ds.reading
    rows = f"{plural(reading.rows, 'row')}, " if reading else ""
    cut = f" by {ds.sequence_column!r}" if ds.sequence_column else ""
    if len(ds.recordings) == 1 and reading is not None and not ds.sequence_column:
        cut = " (the whole file)"
    lines = [
        f"data      {ds.source}: {rows}{plural(len(ds.recordings), 'recording')}{cut}, "
        f"{span} steps{' each' if len(ds.recordings) > 1 else ''}",
        f"features  {', '.join(ds.feature_names)} ({len(ds.feature_names)})",
    ]
    if ds.task == "classification":
        lines.append(
            f"target    {ds.target}: classification into {plural(ds.output_size, 'class')}: "
            f"{', '.join(ds.output_names)}"
        )
    else:
        ahead = f", {ds.horizon} steps ahead" if ds.horizon else ""
        lines.append(f"target    {ds.target}: regression{ahead}")
    warnings: list[str] = []
    if reading is not None:
        if reading.ignored:
            lines.append(
                "ignored   " + ", ".join(f"{name} ({why})" for name, why in reading.ignored)
            )
        if reading.delimiter != ",":
            name = {";": "semicolons", "\t": "tabs", "|": "bars"}.get(reading.delimiter)
            lines.append(f"format    columns separated by {name or repr(reading.delimiter)}")
        if reading.dropped_rows or reading.filled_cells:
            done = []
            if reading.filled_cells:
                done.append(f"{plural(reading.filled_cells, 'cell')} filled from the row before")
            if reading.dropped_rows:
                done.append(f"{plural(reading.dropped_rows, 'row')} dropped")
            lines.append(f"missing   {', '.join(done)} (--missing {reading.missing})")
        warnings += reading.warnings
    if ds.num_valid_steps < FEW_STEPS:
        warnings.append(
            f"only {plural(ds.num_valid_steps, 'step')} with a target: a model trained on so "
            f"little data will not generalize; record more before you trust it"
        )
    if len(ds.recordings) < MIN_RECORDINGS_FOR_RECORDING_SPLIT:
        warnings.append(
            f"{plural(len(ds.recordings), 'recording')}: validation takes the last part of "
            f"each (a split by time), not whole recordings"
        )
    lines += [f"warning   {w}" for w in warnings]
    return lines


# --------------------------------------------------------------------------- splits


def split_dataset(
    ds: SensorDataset, *, validation_fraction: float = 0.2, seed: int = 0
) -> tuple[SensorDataset, SensorDataset]:
    """Training and validation datasets, never mixing rows of one time range.

    With at least ``MIN_RECORDINGS_FOR_RECORDING_SPLIT`` recordings, whole recordings
    are held out (a seeded random choice; stratified by class when every recording
    has one label, so each class keeps a training recording where it can).
    Otherwise every recording is cut in time: its first ``1 - validation_fraction``
    trains and the rest validates; training steps whose target lies past the cut
    are masked, so no target is in both splits.
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction!r}")
    recs = ds.recordings
    if len(recs) >= MIN_RECORDINGS_FOR_RECORDING_SPLIT:
        n_val = min(len(recs) - 1, max(1, round(len(recs) * validation_fraction)))
        val_idx = _choose_validation(ds, n_val, np.random.default_rng(seed))
        train = tuple(r for i, r in enumerate(recs) if i not in val_idx)
        val = tuple(r for i, r in enumerate(recs) if i in val_idx)
    else:
        train_list, val_list = [], []
        for r in recs:
            steps = len(r)
            if steps < 2:
                train_list.append(r)
                continue
            cut = min(steps - 1, max(1, round(steps * (1.0 - validation_fraction))))
            keep = r.mask[:cut] & (np.arange(cut) + ds.horizon < cut)
            train_list.append(Recording(r.x[:cut], r.y[:cut], keep, f"{r.name}[:{cut}]"))
            val_list.append(Recording(r.x[cut:], r.y[cut:], r.mask[cut:], f"{r.name}[{cut}:]"))
        train, val = tuple(train_list), tuple(val_list)
    parts = []
    for part, label in ((train, "training"), (val, "validation")):
        if not part or sum(int(r.mask.sum()) for r in part) == 0:
            raise ValueError(
                f"{ds.source}: the {label} split has no valid steps; use more or longer "
                f"recordings, or another validation fraction (now {validation_fraction:g}; "
                f"--validation-fraction, TrainOptions.validation_fraction)"
            )
        parts.append(replace(ds, recordings=part))
    return parts[0], parts[1]


def _choose_validation(ds: SensorDataset, n_val: int, rng: np.random.Generator) -> set[int]:
    n = len(ds.recordings)
    labels = _recording_labels(ds)
    if labels is None:
        return {int(i) for i in rng.permutation(n)[:n_val]}
    # Stratify: within each class a random order, spread evenly over [0, 1), so taking
    # the lowest keys takes about the same fraction of every class.
    keys = np.empty(n)
    counts = {c: int((labels == c).sum()) for c in np.unique(labels).tolist()}
    for c, count in counts.items():
        members = np.flatnonzero(labels == c)
        keys[rng.permutation(members)] = (np.arange(count) + rng.random()) / count
    order = np.lexsort((rng.random(n), keys))
    chosen: set[int] = set()
    left = dict(counts)
    for i in order.tolist():
        if len(chosen) == n_val:
            break
        if left[labels[i]] > 1:
            chosen.add(i)
            left[labels[i]] -= 1
    for i in order.tolist():  # every class is down to one training recording
        if len(chosen) == n_val:
            break
        chosen.add(i)
    return chosen


def _recording_labels(ds: SensorDataset) -> np.ndarray | None:
    """One class per recording, or None when any recording's label changes over time."""
    if ds.task != "classification":
        return None
    out = []
    for r in ds.recordings:
        values = np.unique(r.y[r.mask])
        if values.size != 1:
            return None
        out.append(int(values[0]))
    return np.asarray(out)


def compute_normalization(ds: SensorDataset) -> dict[str, list[float]]:
    """Per-feature (and for regression per-target) mean and std over the valid steps.

    The keys match ``network.Normalization``; a std of zero becomes 1. Compute it on
    the training split only.
    """
    if ds.num_valid_steps == 0:
        raise ValueError(f"{ds.source}: no valid steps to compute a normalization from")
    x = np.concatenate([r.x[r.mask] for r in ds.recordings]).astype(np.float64)
    out = {
        "feature_mean": x.mean(axis=0).tolist(),
        "feature_std": _std(x),
        "target_mean": [],
        "target_std": [],
    }
    if ds.task == "regression":
        y = np.concatenate([r.y[r.mask] for r in ds.recordings]).astype(np.float64)
        out["target_mean"] = y.mean(axis=0).tolist()
        out["target_std"] = _std(y)
    return out


def _std(values: np.ndarray) -> list[float]:
    std = values.std(axis=0)
    return [float(s) if s > 1e-12 else 1.0 for s in std]
