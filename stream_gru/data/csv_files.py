"""CSV files -> ``SensorDataset``: columns by name, missing values, recordings.

``load_csv`` reads a CSV with a header row (comma, semicolon, tab or bar separated,
found from the header; UTF-8, with or without a byte-order mark). It picks the
features (default: every numeric column but the target and the sequence column),
handles missing values as asked (refuse, drop the row, or carry the last value of the
same recording forward), cuts the rows into recordings by the sequence column, and
records what it did in ``SensorDataset.reading`` (columns ignored and why, rows
dropped, cells filled, and warnings such as a column that looks like a device id),
so that ``stream-gru train`` can show it. Needs only numpy (no torch).
"""

from __future__ import annotations

import csv
import itertools
import math
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from ..formats.files import read_regular
from .npz import check_horizon, encode_labels, make_dataset, resolve_task, shift_target
from .recordings import DataReading, Recording, SensorDataset

__all__ = [
    "DEFAULT_CSV",
    "MISSING_VALUES",
    "CsvOptions",
    "CsvTable",
    "Missing",
    "load_csv",
    "read_csv_table",
]

Missing = Literal["error", "drop", "ffill"]
#: Cells read as a missing value (compared without case and surrounding spaces).
MISSING_VALUES = frozenset({"", "na", "n/a", "nan", "null", "none"})
_DELIMITERS = (",", ";", "\t", "|")
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "bar"}
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")
_ID_NAME = re.compile(r"(?i)(^|_|\b)(id|device|machine|unit|sensor|run|serial|node|host|asset)")


@dataclass(frozen=True)
class CsvOptions:
    """How to read a CSV's cells: ``missing`` ("error", "drop" or "ffill", see
    ``load_csv``) and the ``delimiter`` (None: the header's)."""

    missing: Missing = "error"
    delimiter: str | None = None


DEFAULT_CSV = CsvOptions()


@dataclass(frozen=True)
class CsvTable:
    """The cells of a CSV file: the header, every non-blank row (stripped cells), each
    row's 1-based line number, and the delimiter used."""

    path: Path
    header: list[str]
    rows: list[list[str]]
    lines: list[int]
    delimiter: str

    def column(self, name: str) -> list[str]:
        """The cells of column ``name``; ``ValueError`` naming the columns there are."""
        try:
            j = self.header.index(name)
        except ValueError:
            raise ValueError(
                f"{self.path}: unknown column {name!r}; available columns: "
                f"{', '.join(self.header)}" + _delimiter_hint(self.header)
            ) from None
        return [row[j] for row in self.rows]


def _delimiter_hint(header: Sequence[str]) -> str:
    if len(header) == 1:
        found = [d for d in _DELIMITERS if d in header[0]]
        if found:
            return f" (one column: is the file {_DELIMITER_NAMES[found[0]]}-separated?)"
    return ""


def _sniff_delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def read_csv_table(path: str | os.PathLike[str], *, delimiter: str | None = None) -> CsvTable:
    """Read a CSV file with a header row. ``delimiter``: one character, or None to take
    the one the header uses most (comma, semicolon, tab or bar)."""
    path = Path(path)
    if delimiter is not None and len(delimiter) != 1:
        raise ValueError(f"delimiter must be one character, got {delimiter!r}")
    data = read_regular(path)
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 with its byte-order mark
            text = data.decode("utf-16")
        else:
            text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path} is not UTF-8 text (byte {e.start + 1} is "
            f"{e.object[e.start : e.start + 1]!r}); save it as UTF-8 CSV"
        ) from None
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = delimiter or _sniff_delimiter(first)
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    reader = csv.reader(text.splitlines(keepends=True), delimiter=delimiter)
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
    return CsvTable(path, header, rows, lines, delimiter)


def is_missing(cell: str) -> bool:
    """Whether a (stripped) cell holds a missing value."""
    return cell.lower() in MISSING_VALUES


def _parse_float(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _is_numeric(cells: Sequence[str]) -> bool:
    """Every cell that is not missing parses as a number, and at least one is there."""
    seen = False
    for c in cells:
        if is_missing(c):
            continue
        if _parse_float(c) is None:
            return False
        seen = True
    return seen


def load_csv(
    path: str | os.PathLike[str],
    *,
    target: str,
    features: Sequence[str] | None = None,
    sequence_column: str | None = None,
    task: str | None = None,
    horizon: int = 0,
    missing: Missing = "error",
    delimiter: str | None = None,
) -> SensorDataset:
    """Read a CSV file with a header row.

    ``features`` defaults to every numeric column except the target and the
    sequence column; the target may also be named as a feature (autoregressive
    forecasting). ``sequence_column`` splits the rows into recordings (in order of
    first appearance). ``task`` defaults to classification for a non-numeric
    target, regression otherwise; ``horizon`` (regression only) makes ``y[t]`` the
    target ``horizon`` rows later within the same recording. ``missing``: what to do
    with a missing value (an empty cell, NA, NaN, null, None) in a feature or the
    target: "error" (refuse, naming it), "drop" (skip the row) or "ffill" (take the
    value of the row before in the same recording; a recording's leading rows without
    one are skipped). ``delimiter``: see ``read_csv_table``.
    """
    if missing not in get_args(Missing):
        raise ValueError(f"missing must be one of {get_args(Missing)}, got {missing!r}")
    table = read_csv_table(path, delimiter=delimiter)
    path, header = table.path, table.header
    table.column(target)  # ValueError naming the columns there are
    seq_cells = table.column(sequence_column) if sequence_column is not None else None
    numeric = {n: _is_numeric(table.column(n)) for n in header}
    ignored: list[tuple[str, str]] = []
    if features is None:
        feature_names = [n for n in header if n not in (target, sequence_column) and numeric[n]]
        for n in header:
            if n not in (target, sequence_column) and not numeric[n]:
                present = [(i, c) for i, c in enumerate(table.column(n)) if not is_missing(c)]
                if present and all(_DECIMAL_COMMA.match(c) for _, c in present):
                    i, c = present[0]
                    raise ValueError(
                        f"{path}: column {n!r} holds numbers written with a decimal comma "
                        f"(line {table.lines[i]} has {c!r}): numbers need a decimal point "
                        f"(save the file with '.' as the decimal separator)"
                    )
                ignored.append((n, "text" if present else "empty"))
        if not feature_names:
            raise ValueError(
                f"{path}: no numeric feature columns besides the target {target!r}; "
                f"columns: {', '.join(header)}" + _delimiter_hint(header)
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
            table.column(n)
        ignored = [
            (n, "not in --features")
            for n in header
            if n not in feature_names and n not in (target, sequence_column)
        ]

    groups, unnamed = _groups(table, seq_cells, sequence_column, missing)
    cells = {n: np.asarray(table.column(n), dtype=object) for n in {*feature_names, target}}
    keep, filled = _handle_missing(table, cells, groups, missing)
    keep[unnamed] = False
    lines = [table.lines[i] for i in np.flatnonzero(keep)]
    cells = {n: c[keep] for n, c in cells.items()}
    kind = resolve_task(task, default="regression" if numeric[target] else "classification")
    horizon = check_horizon(horizon, kind)
    x_all = np.stack(
        [_numbers(path, n, cells[n], lines, role="feature") for n in feature_names], axis=1
    ).astype(np.float32)
    _check_float32(path, x_all, feature_names, lines)
    if kind == "classification":
        y_all, output_names = _labels(path, target, cells[target], lines)
    else:
        y_all = _numbers(path, target, cells[target], lines, role="target").astype(np.float32)
        _check_float32(path, y_all[:, None], [target], lines)
        output_names = (target,)

    position = np.cumsum(keep) - 1  # a kept row's index among the kept rows
    recordings = []
    for name, rows in groups.items():
        idx = position[rows[keep[rows]]]
        if idx.size == 0:
            continue
        x = x_all[idx]
        if kind == "classification":
            recordings.append(Recording(x, y_all[idx], np.ones(len(idx), dtype=bool), name))
        else:
            y, mask = shift_target(y_all[idx][:, None], horizon)
            if horizon:  # a dropped row in between: the target is not `horizon` rows on
                order = np.flatnonzero(keep[rows])  # the kept rows' places in the recording
                mask[: len(idx) - horizon] &= order[horizon:] - order[:-horizon] == horizon
            recordings.append(Recording(x, y, mask, name))
    reading = DataReading(
        rows=len(table.rows),
        delimiter=table.delimiter,
        ignored=tuple(ignored),
        missing=missing,
        dropped_rows=int((~keep).sum()),
        filled_cells=filled,
        warnings=tuple(
            _suggest_sequence_column(table, numeric, feature_names, target, sequence_column)
        ),
    )
    ds = make_dataset(recordings, feature_names, output_names, kind, target, horizon, path)
    return replace(ds, sequence_column=sequence_column, reading=reading)


def _groups(
    table: CsvTable, seq_cells: list[str] | None, sequence_column: str | None, missing: Missing
) -> tuple[dict[str, np.ndarray], list[int]]:
    """Row indices of each recording, in order of first appearance, and the rows whose
    sequence cell is missing and that ``missing`` drops ("drop", or "ffill" before the
    first named row; "ffill" puts the others in the recording of the row before)."""
    if seq_cells is None:
        return {table.path.stem: np.arange(len(table.rows))}, []
    order: dict[str, list[int]] = {}
    unnamed: list[int] = []
    last: str | None = None
    for i, value in enumerate(seq_cells):
        if is_missing(value):
            if missing == "error":
                raise ValueError(
                    f"{table.path}: sequence column {sequence_column!r} has a missing value at "
                    f"line {table.lines[i]} ({value!r}): choose --missing drop to skip such "
                    f"rows, or --missing ffill to give them the recording of the row before"
                )
            if missing == "drop" or last is None:
                unnamed.append(i)
                continue
            value = last
        order.setdefault(value, []).append(i)
        last = value
    return {k: np.asarray(v) for k, v in order.items()}, unnamed


def _handle_missing(
    table: CsvTable,
    cells: dict[str, np.ndarray],
    groups: dict[str, np.ndarray],
    missing: Missing,
) -> tuple[np.ndarray, int]:
    """(rows kept, cells filled); fills ``cells`` in place for "ffill"."""
    names = list(cells)
    holes = {n: np.fromiter(map(is_missing, cells[n]), bool, len(cells[n])) for n in names}
    keep = np.ones(len(table.rows), bool)
    if not any(h.any() for h in holes.values()):
        return keep, 0
    if missing == "error":
        first = min((int(np.argmax(h)), n) for n, h in holes.items() if h.any())
        i, name = first
        what = "an empty cell" if cells[name][i] == "" else repr(cells[name][i])
        count = sum(int(h.sum()) for h in holes.values())
        raise ValueError(
            f"{table.path}: column {name!r} has a missing value at line {table.lines[i]} "
            f"({what}; {count} missing cells in the columns used): choose --missing drop "
            f"to skip such rows, or --missing ffill to carry the last value of the same "
            f"recording forward (load_csv(missing=...))"
        )
    if missing == "drop":
        for h in holes.values():
            keep &= ~h
        return keep, 0
    filled = 0
    for rows in groups.values():
        for name in names:
            hole = holes[name][rows]
            if not hole.any():
                continue
            last = np.maximum.accumulate(np.where(hole, -1, np.arange(len(rows))))
            fill = hole & (last >= 0)
            cells[name][rows[fill]] = cells[name][rows[last[fill]]]
            filled += int(fill.sum())
            keep[rows[hole & (last < 0)]] = False  # nothing before it to carry forward
    return keep, filled


def _numbers(
    path: Path, name: str, cells: np.ndarray, lines: Sequence[int], *, role: str
) -> np.ndarray:
    out = np.empty(len(cells), dtype=np.float64)
    for i, c in enumerate(cells.tolist()):
        value = _parse_float(c)
        if value is None or not math.isfinite(value):
            hint = ""
            if _DECIMAL_COMMA.match(c):
                hint = " (a decimal comma? numbers need a decimal point)"
            elif value is not None:
                hint = " (not finite)"
            raise ValueError(
                f"{path}: {role} column {name!r} must be numeric and finite, but line "
                f"{lines[i]} has {c!r}{hint}"
            )
        out[i] = value
    return out


def _check_float32(
    path: Path, values: np.ndarray, names: Sequence[str], lines: Sequence[int]
) -> None:
    with np.errstate(over="ignore"):
        bad = np.argwhere(~np.isfinite(values.astype(np.float32)))
    if bad.size:
        row, col = bad[0]
        raise ValueError(
            f"{path}: column {names[col]!r} at line {lines[row]} does not fit in float32"
        )


def _labels(
    path: Path, name: str, cells: np.ndarray, lines: Sequence[int]
) -> tuple[np.ndarray, tuple[str, ...]]:
    values = cells.tolist()
    numbers = [_parse_float(c) for c in values]
    if all(v is not None for v in numbers):
        arr = np.asarray(numbers, dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"{path}: target column {name!r} has a non-finite label {values[i]!r} "
                f"at line {lines[i]}"
            )
        return encode_labels(arr)
    return encode_labels(np.asarray(values, dtype=str))


def _suggest_sequence_column(
    table: CsvTable,
    numeric: dict[str, bool],
    features: Sequence[str],
    target: str,
    sequence_column: str | None,
) -> list[str]:
    """Warnings for columns that look like a device or run id while no sequence column
    was given: few distinct values, each in one block of consecutive rows (a file sorted
    by device), or taking turns evenly (a log sorted by time), or, for text, a name that
    says id (machine_id, device, unit, ...)."""
    if sequence_column is not None:
        return []
    out = []
    n = len(table.rows)
    for name in table.header:
        if name == target:
            continue
        cells = table.column(name)
        counts = Counter(cells)
        if not 2 <= len(counts) <= max(2, n // 5):
            continue
        runs = 1 + sum(a != b for a, b in itertools.pairwise(cells))
        if numeric[name]:
            values = [_parse_float(c) for c in cells if not is_missing(c)]
            if not all(v is not None and float(v).is_integer() for v in values):
                continue
        if runs == len(counts):
            how = "each in one block of rows"
        elif max(counts.values()) - min(counts.values()) <= 1:
            how = "taking turns row by row"
        elif not numeric[name] and _ID_NAME.search(name):
            how = "recurring through the file"
        else:
            continue
        role = " (now a feature)" if name in features else ""
        out.append(
            f"column {name!r}{role} has {len(counts)} distinct values, {how}: if each is a "
            f"device or a run, pass --sequence-column {name} (without it, the file is one "
            f"recording)"
        )
    return out
