"""The embedded default data: BasicMotions from the UEA multivariate archive.

Four students wore a smartwatch and recorded four activities (Standing, Walking,
Running, Badminton) five times each: 3-axis accelerometer and 3-axis gyroscope,
10 Hz, 10 seconds, so 100 steps of 6 channels per recording; 40 training and 40
test recordings, 10 of each class in each split. The archive's ``.ts`` files were
converted once to ``stream_gru/resources/basic_motions.npz`` (see ``resources/README.md``)::

    python -m stream_gru.datasets convert DIR_WITH_TS_FILES stream_gru/resources/basic_motions.npz

Needs only numpy.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .dataset import Recording, SensorDataset

__all__ = [
    "BASIC_MOTIONS_FEATURES",
    "basic_motions_misfit",
    "convert_basic_motions",
    "load_basic_motions",
    "main",
    "read_ts",
]

#: Channel order of the archive's files: accelerometer x, y, z, then gyroscope x, y, z.
#: The ``.ts`` header only says "3D accelerometer and a 3D gyroscope"; the order is
#: inferred from the data (the first three channels carry the per-class offsets of
#: an accelerometer, the last three have the near-zero means of a gyroscope).
BASIC_MOTIONS_FEATURES = ("accel_x", "accel_y", "accel_z", "gyro_x", "gyro_y", "gyro_z")
_NPZ = "basic_motions.npz"


def read_ts(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read a sktime/UEA ``.ts`` classification file.

    Returns ``x`` float32 of shape (cases, length, dimensions) (time before
    channels, as the rest of this package uses) and the class labels as a str
    array. Supports equal-length series without timestamps or missing values;
    anything else raises ``ValueError`` naming the line.
    """
    path = Path(path)
    header: dict[str, str] = {}
    declared: list[str] | None = None
    cases: list[np.ndarray] = []
    labels: list[str] = []
    in_data = False
    with open(path, encoding="utf-8") as f:
        for number, raw in enumerate(f, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            where = f"{path}, line {number}"
            if not in_data:
                if not line.startswith("@"):
                    raise ValueError(f"{where}: expected a '@' header line before @data: {line!r}")
                tag, _, value = line[1:].partition(" ")
                tag, value = tag.lower(), value.strip()
                if tag == "data":
                    in_data = True
                    declared = _check_ts_header(path, header)
                    continue
                header[tag] = value
                continue
            parts = line.split(":")
            if len(parts) < 2:
                raise ValueError(f"{where}: expected dimensions separated by ':' and a label")
            label = parts[-1].strip()
            if not label:
                raise ValueError(f"{where}: missing class label")
            if declared and label not in declared:
                raise ValueError(f"{where}: label {label!r} is not one of {declared}")
            try:
                dims = [[float(v) for v in p.split(",")] for p in parts[:-1]]
            except ValueError as e:
                raise ValueError(f"{where}: a value is not a number ({e})") from e
            lengths = {len(d) for d in dims}
            if len(lengths) != 1:
                raise ValueError(f"{where}: dimensions of different lengths {sorted(lengths)}")
            case = np.asarray(dims, dtype=np.float64).T
            if not np.isfinite(case).all():
                raise ValueError(f"{where}: missing or non-finite values are not supported")
            if cases and case.shape != cases[0].shape:
                raise ValueError(
                    f"{where}: {case.shape[1]} dimensions of length {case.shape[0]}, but the "
                    f"first case has {cases[0].shape[1]} of length {cases[0].shape[0]}"
                )
            _check_declared_shape(where, header, case)
            cases.append(case)
            labels.append(label)
    if not in_data:
        raise ValueError(f"{path}: no @data line")
    if not cases:
        raise ValueError(f"{path}: no cases after @data")
    return np.stack(cases).astype(np.float32), np.asarray(labels, dtype=str)


def _check_ts_header(path: Path, header: dict[str, str]) -> list[str] | None:
    if header.get("timestamps", "false").lower() != "false":
        raise ValueError(f"{path}: series with timestamps are not supported")
    if header.get("equallength", "true").lower() != "true":
        raise ValueError(f"{path}: series of unequal length are not supported")
    class_label = header.get("classlabel", "").split()
    if not class_label or class_label[0].lower() != "true":
        raise ValueError(f"{path}: not a classification file (@classLabel true ... missing)")
    return class_label[1:] or None


def _check_declared_shape(where: str, header: dict[str, str], case: np.ndarray) -> None:
    for tag, actual in (("dimensions", case.shape[1]), ("serieslength", case.shape[0])):
        if tag in header and header[tag].isdigit() and int(header[tag]) != actual:
            raise ValueError(f"{where}: @{tag} is {header[tag]} but the case has {actual}")


def convert_basic_motions(ts_dir: str | os.PathLike[str], out_path: str | os.PathLike[str]) -> Path:
    """Convert ``BasicMotions_{TRAIN,TEST}.ts`` in ``ts_dir`` into the shipped ``.npz``."""
    ts_dir, out_path = Path(ts_dir), Path(out_path)
    arrays: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        x, y = read_ts(ts_dir / f"BasicMotions_{split.upper()}.ts")
        if x.shape[1:] != (100, 6):
            raise ValueError(f"BasicMotions {split}: expected (N, 100, 6), got {x.shape}")
        arrays[f"x_{split}"] = x
        arrays[f"y_{split}"] = y
    arrays["feature_names"] = np.asarray(BASIC_MOTIONS_FEATURES, dtype=str)
    np.savez_compressed(out_path, **arrays)  # type: ignore[arg-type]
    return out_path


def load_basic_motions(split: Literal["train", "test"] = "train") -> SensorDataset:
    """The shipped BasicMotions split as a classification dataset.

    Each recording's activity label is repeated at every step: the model is asked
    for the activity at every step as the stream arrives.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    blob = resources.files("stream_gru").joinpath("resources", _NPZ).read_bytes()
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        x = z[f"x_{split}"].astype(np.float32)
        labels = z[f"y_{split}"].astype(str)
        features = tuple(str(v) for v in z["feature_names"].tolist())
    classes = tuple(sorted(set(labels.tolist())))
    index = {c: i for i, c in enumerate(classes)}
    steps = x.shape[1]
    recordings = tuple(
        Recording(
            x[i],
            np.full(steps, index[label], dtype=np.int64),
            np.ones(steps, dtype=bool),
            f"basic_motions-{split}-{i:02d}-{label}",
        )
        for i, label in enumerate(labels.tolist())
    )
    return SensorDataset(
        recordings=recordings,
        feature_names=features,
        output_names=classes,
        task="classification",
        target="activity",
        horizon=0,
        source="BasicMotions (UEA)",
    )


def basic_motions_misfit(spec: Any) -> str | None:
    """Why a model (its ``ModelSpec``) cannot classify the embedded BasicMotions
    recordings, as one sentence; None where it can: a classifier that takes the six
    channels by name, in order, and names the four activities."""
    classes = set(load_basic_motions("test").output_names)
    problems = []
    if spec.task != "classification":
        problems.append(f"it is a {spec.task or 'third-party'} model, not a classifier")
    if tuple(spec.feature_names) != BASIC_MOTIONS_FEATURES:
        taken = ", ".join(spec.feature_names) or "unnamed ones"
        problems.append(
            f"it takes {spec.input_size} features ({taken}), not the six channels "
            f"{', '.join(BASIC_MOTIONS_FEATURES)}"
        )
    if spec.task == "classification" and set(spec.output_names) != classes:
        problems.append(
            f"its classes are {', '.join(spec.output_names)}, not the activities "
            f"{', '.join(sorted(classes))}"
        )
    return "; ".join(problems) or None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m stream_gru.datasets convert DIR OUT``."""
    parser = argparse.ArgumentParser(prog="python -m stream_gru.datasets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convert", help="convert BasicMotions_{TRAIN,TEST}.ts to .npz")
    conv.add_argument("ts_dir", type=Path, help="folder with BasicMotions_TRAIN.ts and _TEST.ts")
    conv.add_argument("out", type=Path, help="the .npz file to write")
    args = parser.parse_args(argv)
    try:
        out = convert_basic_motions(args.ts_dir, args.out)
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: {e}") from e
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
