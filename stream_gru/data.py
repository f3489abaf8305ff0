"""Recorded sensor data: CSV / NPZ files -> recordings -> training and validation splits.

A recording is one uninterrupted stream (one machine run, one subject, one file):
features ``x`` of shape (T, input_size), targets ``y`` for every step, and a ``mask``
of the steps that have a valid target. The model sees a recording as it would see
a live stream, one step after another, so recordings are never shuffled row by row.

This module needs only numpy (no torch), so data can be checked without the
``train`` extra's heavy dependencies.

The types live in ``recordings`` and the file readers in ``loaders``; this module
holds ``load_dataset``, the splits and the normalization, and re-exports the rest.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .loaders import load_csv, load_npz
from .recordings import TASKS as TASKS
from .recordings import Recording, SensorDataset
from .recordings import Task as Task

__all__ = [
    "MIN_RECORDINGS_FOR_RECORDING_SPLIT",
    "Recording",
    "SensorDataset",
    "compute_normalization",
    "load_csv",
    "load_dataset",
    "load_npz",
    "split_dataset",
]

#: ``split_dataset`` holds out whole recordings from this many recordings on; with
#: fewer it holds out the end of every recording.
MIN_RECORDINGS_FOR_RECORDING_SPLIT = 5


# --------------------------------------------------------------------------- shared


def load_dataset(path: str | os.PathLike[str], **kw: Any) -> SensorDataset:
    """``load_csv`` or ``load_npz`` by the file's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return load_csv(path, **kw)
    if suffix == ".npz":
        return load_npz(path, **kw)
    raise ValueError(f"{path}: unsupported data file {suffix or '(no suffix)'!r}; use .csv or .npz")


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
                f"recordings, or another validation_fraction"
            )
        parts.append(
            SensorDataset(
                part, ds.feature_names, ds.output_names, ds.task, ds.target, ds.horizon, ds.source
            )
        )
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
