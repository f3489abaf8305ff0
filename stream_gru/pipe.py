"""The line protocol of ``stream-gru run``: CSV lines in, one CSV line out per line.

Two layouts. Without a header, a line is ``key,f1,...,fI`` and the output
``key,y1,...,yO``. With a header (a CSV file of one's own, say), the key and the
features are found by column name: the key in ``key_column`` (default: the column the
model's recordings were cut by in training, else the first column that is not a
feature), the features in the model's feature names (or ``columns``); other columns
are ignored, and the output starts with a header line ``key,out1,...``. Fields are
read as CSV reads them, so a quoted key (``"PUMP,03"``) keeps its comma; an output key
that needs quotes gets them. ``label=True`` appends a classifier's predicted class.

One stream per key in a ``StreamPool``, opened on the key's first good line. Lines
that arrive together are stepped together, in one batched call per tick (a key seen
twice in one arrival goes into the next tick, so its samples stay in order), and the
outputs are written in input order, flushed at once. A bad line gets one message on
the error stream naming its 1-based line number and the problem; it changes no
stream, and the lines after it are processed as usual.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, TextIO

import numpy as np

from .pool import StreamPool
from .runtime import StreamingModel
from .spec import ModelSpec

__all__ = [
    "HeaderMode",
    "LineLayout",
    "PipeError",
    "PipeStats",
    "format_output",
    "read_arrivals",
    "serve_lines",
]

HeaderMode = Literal["auto", "yes", "no"]

_READ_SIZE = 1 << 16
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_NEEDS_QUOTES = frozenset(',"\r\n')


class PipeError(ValueError):
    """The header does not fit the model (a missing column, say): nothing can be run."""


@dataclass
class PipeStats:
    """Counters of one ``serve_lines`` run."""

    lines: int = 0
    outputs: int = 0
    rejected: int = 0
    streams: int = 0
    ticks: int = 0

    @property
    def all_refused(self) -> bool:
        """Lines came, and not one gave an output."""
        return self.rejected > 0 and self.outputs == 0


@dataclass(frozen=True)
class LineLayout:
    """Where a line's key and features are: ``key`` and ``features`` index the fields;
    ``width`` is the number of fields a line has (None: a key and the features, no
    more). ``key_name`` heads the output's key column."""

    key: int = 0
    features: tuple[int, ...] | None = None
    width: int | None = None
    key_name: str = "key"

    @classmethod
    def from_header(
        cls,
        header: Sequence[str],
        spec: ModelSpec,
        *,
        key_column: str | None = None,
        columns: Sequence[str] | None = None,
    ) -> LineLayout:
        """The layout a header row names; ``PipeError`` naming a column it lacks."""
        names = list(columns) if columns is not None else list(spec.feature_names)
        if not names:
            raise PipeError("the model names no features: give --columns A,B,.. with the header")
        if len(names) != spec.input_size:
            raise PipeError(
                f"--columns names {len(names)} columns; the model takes {spec.input_size}"
            )
        missing = [n for n in names if n not in header]
        if missing:
            raise PipeError(
                f"the header has no column(s) {', '.join(map(repr, missing))} that the model "
                f"takes as features; its columns: {', '.join(header)}"
            )
        if key_column is None:
            recorded = spec.sequence_column
            if recorded is not None and recorded in header:
                key_column = recorded
            else:
                key_column = next((h for h in header if h not in names), None)
                if key_column is None:
                    raise PipeError("every column of the header is a feature: no key column")
        elif key_column not in header:
            raise PipeError(
                f"the header has no key column {key_column!r}; its columns: {', '.join(header)}"
            )
        return cls(
            key=header.index(key_column),
            features=tuple(header.index(n) for n in names),
            width=len(header),
            key_name=key_column,
        )


def _is_header(fields: Sequence[str], spec: ModelSpec, key_column: str | None) -> bool:
    """A first line is a header where it names every feature of the model (or the key
    column asked for) and its feature fields are not numbers."""
    if key_column is not None and key_column in fields:
        return True
    names = set(spec.feature_names)
    return bool(names) and names <= set(fields)


def format_output(key: str, y: np.ndarray, label: str | None = None) -> str:
    """``key,y1,...[,label]`` with ``%.9g`` (enough digits for float32 to round-trip);
    a key with a comma, quote or line break is quoted as CSV quotes it."""
    if _NEEDS_QUOTES.intersection(key):
        key = '"' + key.replace('"', '""') + '"'
    line = key + "," + ",".join(f"{v:.9g}" for v in np.asarray(y, np.float64).ravel())
    return line if label is None else f"{line},{label}"


def _fields(line: str) -> list[str]:
    try:
        return next(csv.reader([line], strict=True), [])
    except csv.Error as e:
        raise ValueError(f"not a CSV line: {e}") from None


def _parse(
    line: str, layout: LineLayout, n_features: int, names: tuple[str, ...]
) -> tuple[str, list[float]]:
    fields = _fields(line)
    if layout.width is None:
        if len(fields) - 1 != n_features:
            raise ValueError(
                f"expected a key and {n_features} features, got {len(fields) - 1} feature fields"
            )
        columns: Sequence[int] = range(1, n_features + 1)
    else:
        if len(fields) != layout.width:
            raise ValueError(f"expected {layout.width} fields as the header has, got {len(fields)}")
        assert layout.features is not None
        columns = layout.features
    key = fields[layout.key].strip()
    if not key:
        raise ValueError(f"the key (column {layout.key + 1}) is empty")
    values = []
    for i, column in enumerate(columns):
        field = fields[column]
        # 1-based like the line number
        label = (
            f"feature '{names[i]}'" if i < len(names) else "feature"
        ) + f" (column {column + 1})"
        try:
            v = float(field)
        except ValueError:
            raise ValueError(f"{label} is not a number: {field.strip()!r}") from None
        if not math.isfinite(v):
            raise ValueError(f"{label} is {field.strip()}, expected a finite number")
        if abs(v) > _FLOAT32_MAX:
            raise ValueError(f"{label} is {field.strip()}, which overflows float32")
        values.append(v)
    return key, values


def read_arrivals(source: TextIO | Iterable[str]) -> Iterator[list[str]]:
    """Group the lines of ``source`` by arrival: each item holds the complete lines
    that were available together. A real file or pipe is read with ``os.read``, which
    returns what has arrived without waiting for more; other iterables give one line
    per arrival."""
    fileno = getattr(source, "fileno", None)
    try:
        fd = fileno() if callable(fileno) else None
    except (OSError, ValueError):  # io.StringIO and friends have no descriptor
        fd = None
    if fd is None:
        lines = iter(source.readline, "") if hasattr(source, "readline") else iter(source)
        for line in lines:
            yield [line]
        return
    pending = b""
    while True:
        chunk = os.read(fd, _READ_SIZE)
        if not chunk:
            break
        pending += chunk
        *complete, pending = pending.split(b"\n")
        if complete:
            yield [c.decode("utf-8", errors="replace") for c in complete]
    if pending:
        yield [pending.decode("utf-8", errors="replace")]


def serve_lines(
    model: StreamingModel,
    source: TextIO | Iterable[str],
    out: TextIO,
    err: TextIO,
    *,
    pool: StreamPool | None = None,
    header: HeaderMode = "auto",
    key_column: str | None = None,
    columns: Sequence[str] | None = None,
    label: bool = False,
) -> PipeStats:
    """Serve ``source`` until it ends; returns the counters. ``header``: whether the
    first non-blank line is a header ("auto": where it names the model's features or
    ``key_column``). ``PipeError`` where the header does not fit the model."""
    if header not in ("auto", "yes", "no"):
        raise ValueError(f"header must be 'auto', 'yes' or 'no', got {header!r}")
    spec = model.spec
    names = tuple(columns) if columns is not None else spec.feature_names
    if label and (spec.task != "classification" or not spec.output_names):
        raise PipeError("label: the model is not a classifier with class names")
    pool = pool if pool is not None else model.pool()
    shape = spec.sample_shape
    n_features = int(np.prod(shape))
    layout: LineLayout | None = None if header != "no" else LineLayout()
    stats = PipeStats()
    for arrival in read_arrivals(source):
        # Parse the arrival, then cut it into ticks in which each key appears once.
        ticks: list[dict[str, tuple[int, np.ndarray]]] = [{}]
        for raw in arrival:
            stats.lines += 1
            text = raw.strip("\r\n")
            if not text.strip():
                continue
            if layout is None:  # the first line: a header, or the first data line
                first = _fields(text) if text.strip() else []
                if header == "yes" or _is_header(first, spec, key_column):
                    layout = LineLayout.from_header(
                        first, spec, key_column=key_column, columns=columns
                    )
                    heads = spec.output_names or [f"y{j}" for j in range(spec.output_size or 0)]
                    head = [layout.key_name, *heads, *(["label"] if label else [])]
                    out.write(",".join(head) + "\n")
                    continue
                layout = LineLayout()
            try:
                key, values = _parse(text, layout, n_features, names)
            except ValueError as e:
                stats.rejected += 1
                err.write(f"line {stats.lines}: {e}\n")
                continue
            if key in ticks[-1]:
                ticks.append({})
            ticks[-1][key] = (stats.lines, np.asarray(values).reshape(shape))
        for tick in ticks:
            if not tick:
                continue
            for key in tick:
                if key not in pool:
                    pool.open(key)
                    stats.streams += 1
            keys = list(tick)
            ys = pool.step_batch(keys, np.stack([x for _, x in tick.values()]))
            out.write(
                "".join(
                    format_output(k, y, spec.output_names[int(np.argmax(y))] if label else None)
                    + "\n"
                    for k, y in zip(keys, ys, strict=True)
                )
            )
            stats.outputs += len(keys)
            stats.ticks += 1
        out.flush()
        err.flush()
    return stats
