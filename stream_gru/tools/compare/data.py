"""The data side of ``stream-gru compare``: feature columns found by name in a CSV or
NPZ file, cut into recordings; the target column where there is one; and the metrics
of outputs streamed through the runtime, computed as ``training.evaluate`` computes
them. Needs only numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...core.spec import ModelSpec
from ...data.csv_files import DEFAULT_CSV, CsvOptions, load_csv, read_csv_table
from ...data.npz import load_npz
from ...data.recordings import Recording, SensorDataset
from ...errors import CompareError

__all__ = [
    "FeatureTable",
    "choose_sequence_column",
    "read_features",
    "read_targets",
    "stream_metrics",
]


# -- the data --------------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureTable:
    """The feature columns of the data file, cut into recordings."""

    source: str
    columns: tuple[str, ...]
    recordings: tuple[Recording, ...]  # x has `columns`; y and mask are not used


def _csv_header(path: Path, csv: CsvOptions) -> list[str]:
    try:
        return read_csv_table(path, delimiter=csv.delimiter).header
    except ValueError as e:
        raise CompareError(str(e)) from None


def _format(path: Path) -> str:
    from ...data.dataset import data_format

    try:
        return data_format(path)
    except ValueError as e:
        raise CompareError(str(e)) from None


def _missing(path: Path, available: Sequence[str], wanted: Sequence[str]) -> None:
    missing = [n for n in wanted if n not in available]
    if missing:
        raise CompareError(
            f"{path} has no column(s) {', '.join(missing)} that the models need as features; "
            f"its columns: {', '.join(available)}"
        )


def choose_sequence_column(
    path: Path, given: str | None, specs: Sequence[ModelSpec], csv: CsvOptions = DEFAULT_CSV
) -> tuple[str | None, str]:
    """The column that cuts ``path`` into recordings, and a sentence saying why: the
    one ``given``, else the one the models were trained with (recorded in their
    metadata) where the file has it, else none (the whole file is one recording)."""
    if _format(path) != "csv":
        return given, "one recording per row of x"
    if given is not None:
        return given, f"recordings by column {given!r}"
    recorded_by = {s.sequence_column for s in specs if s.sequence_column}
    recorded = next((s.sequence_column for s in specs if s.sequence_column), None)
    if len(recorded_by) > 1:
        return None, (
            f"the whole file as one recording: the models were trained with recordings by "
            f"different columns ({', '.join(sorted(map(repr, recorded_by)))}); give "
            f"--sequence-column COL"
        )
    if recorded is None:
        return None, (
            "the whole file as one recording (the models record no sequence column: give "
            "--sequence-column COL if the file holds several devices or runs)"
        )
    if recorded in _csv_header(path, csv):
        return recorded, f"recordings by column {recorded!r} (the models' training sequence column)"
    return None, (
        f"the whole file as one recording: the models were trained with recordings by "
        f"{recorded!r}, which this file lacks (give --sequence-column COL)"
    )


def read_features(
    path: Path,
    features: tuple[str, ...],
    sequence_column: str | None,
    csv: CsvOptions = DEFAULT_CSV,
) -> FeatureTable:
    """The columns ``features`` of a CSV (cut into recordings by ``sequence_column``,
    else one recording) or of an NPZ's ``x`` (named by its ``feature_names``, else
    x0, x1, ...; one recording per row, ``lengths`` honoured). ``CompareError`` names
    the missing columns and the ones the file has."""
    if _format(path) == "csv":
        header = _csv_header(path, csv)
        _missing(path, header, features)
        if sequence_column is not None and sequence_column not in header:
            raise CompareError(
                f"{path} has no sequence column {sequence_column!r}; its columns: "
                f"{', '.join(header)}"
            )
        # The loader reads features only when a target is named: the first feature
        # serves (a target may also be a feature); its y is not used.
        ds = load_csv(
            path,
            target=features[0],
            features=features,
            sequence_column=sequence_column,
            task="regression",
            missing=csv.missing,
            delimiter=csv.delimiter,
        )
        return FeatureTable(str(path), ds.feature_names, ds.recordings)
    if sequence_column is not None:
        raise CompareError(
            "--sequence-column applies to CSV files; an .npz has one recording per row of x"
        )
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: np.asarray(z[k]) for k in z.files if k in ("x", "lengths", "feature_names")}
    x = arrays.get("x")
    if x is None or x.ndim != 3 or x.dtype.kind not in "fiu" or min(x.shape) < 1:
        got = "none" if x is None else f"{x.dtype} {x.shape}"
        raise CompareError(f"{path}: needs a numeric array x of shape (N, T, I), got {got}")
    n, steps, width = x.shape
    columns = (
        tuple(str(v) for v in arrays["feature_names"].tolist())
        if "feature_names" in arrays
        else tuple(f"x{i}" for i in range(width))
    )
    if len(columns) != width:
        raise CompareError(f"{path}: {len(columns)} feature_names for x of {width} features")
    _missing(path, columns, features)
    lengths = arrays.get("lengths")
    if lengths is None:
        lengths = np.full(n, steps)
    elif (
        lengths.shape != (n,)
        or lengths.dtype.kind not in "iu"
        or ((lengths < 1) | (lengths > steps)).any()
    ):
        raise CompareError(f"{path}: lengths must be ({n},) integers in [1, {steps}]")
    recordings = []
    for i in range(n):
        xi = x[i, : int(lengths[i])].astype(np.float32)
        if not np.isfinite(xi).all():
            raise CompareError(f"{path}: x[{i}] has values that are not finite (float32)")
        t = len(xi)
        recordings.append(
            Recording(xi, np.zeros(t, np.int64), np.ones(t, bool), f"{path.stem}[{i}]")
        )
    return FeatureTable(str(path), columns, tuple(recordings))


def read_targets(
    path: Path,
    spec: ModelSpec,
    column: str,
    features: tuple[str, ...],
    sequence_column: str | None,
    csv: CsvOptions = DEFAULT_CSV,
) -> SensorDataset | str:
    """The data with the target column for ``spec``'s task and horizon, or why not."""
    try:
        if _format(path) == "csv":
            if column not in _csv_header(path, csv):
                return f"no column {column!r} in {path}: no metrics"
            return load_csv(
                path,
                target=column,
                features=features,
                sequence_column=sequence_column,
                task=spec.task,
                horizon=spec.horizon,
                missing=csv.missing,
                delimiter=csv.delimiter,
            )
        with np.load(path, allow_pickle=False) as z:
            if "y" not in z.files:
                return f"no array y in {path}: no metrics"
        return load_npz(path, task=spec.task, horizon=spec.horizon)
    except ValueError as e:
        return f"the target column cannot be read: {e}"


# -- metrics ---------------------------------------------------------------------------
def stream_metrics(
    outputs: Sequence[np.ndarray],
    data: SensorDataset,
    output_names: Sequence[str],
    task: str,
) -> dict[str, float] | str:
    """A model's metrics from its streamed outputs, one (T, O) array per recording of
    ``data`` (in order), the same as ``training.evaluate`` computes them: classification
    ``accuracy`` over the valid steps and ``accuracy_last`` at each recording's last
    valid step; regression ``mae`` in the data's units. Returns a sentence instead where
    the data's labels or targets do not fit the model's outputs.
    """
    if len(outputs) != len(data.recordings) or any(
        len(y) != len(r) for y, r in zip(outputs, data.recordings, strict=False)
    ):
        return "the target data has other recordings than the features: no metrics"
    if task == "classification":
        index = {n: i for i, n in enumerate(output_names)}
        unknown = [n for n in data.output_names if n not in index]
        used = {int(c) for r in data.recordings for c in np.unique(r.y[r.mask])}
        unknown = [n for i, n in enumerate(data.output_names) if n in unknown and i in used]
        if unknown:
            return f"labels {unknown} of column {data.target!r} are not the models' classes"
        to_model = np.asarray([index.get(n, -1) for n in data.output_names], np.int64)
        correct = valid = last_correct = with_last = 0
        for y, r in zip(outputs, data.recordings, strict=True):
            predicted = np.asarray(y).argmax(axis=-1)
            truth = to_model[r.y]
            correct += int(((predicted == truth) & r.mask).sum())
            valid += int(r.mask.sum())
            steps = np.flatnonzero(r.mask)
            if steps.size:
                last = steps[-1]
                last_correct += int(predicted[last] == truth[last])
                with_last += 1
        return {"accuracy": correct / valid, "accuracy_last": last_correct / with_last}
    if data.output_size != len(output_names):
        return (
            f"the data has {data.output_size} target(s), the models {len(output_names)}: no metrics"
        )
    abs_err, count = 0.0, 0
    for y, r in zip(outputs, data.recordings, strict=True):
        err = np.abs(np.asarray(y, np.float64) - r.y)[r.mask]
        abs_err += float(err.sum())
        count += err.size
    return {"mae": abs_err / count}
