"""The line protocol of ``stream-gru run``: ``key,f1,...,fI`` in, ``key,y1,...,yO`` out.

One stream per key in a ``StreamPool``, opened on the key's first good line. Lines
that arrive together are stepped together, in one batched call per tick (a key seen
twice in one arrival goes into the next tick, so its samples stay in order), and the
outputs are written in input order, flushed at once. A bad line gets one message on
the error stream naming its 1-based line number and the problem; it changes no
stream, and the lines after it are processed as usual.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TextIO

import numpy as np

from .pool import StreamPool
from .runtime import StreamingModel

__all__ = ["PipeStats", "format_output", "read_arrivals", "serve_lines"]

_READ_SIZE = 1 << 16
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass
class PipeStats:
    """Counters of one ``serve_lines`` run."""

    lines: int = 0
    outputs: int = 0
    rejected: int = 0
    streams: int = 0
    ticks: int = 0


def format_output(key: str, y: np.ndarray) -> str:
    """``key,y1,...`` with ``%.9g``: enough digits for float32 to round-trip."""
    return key + "," + ",".join(f"{v:.9g}" for v in np.asarray(y, np.float64).ravel())


def _parse(line: str, n_features: int, names: tuple[str, ...]) -> tuple[str, list[float]]:
    key, sep, rest = line.partition(",")
    key = key.strip()
    if not key:
        raise ValueError("the key (before the first comma) is empty")
    fields = rest.split(",") if sep else []
    if len(fields) != n_features:
        raise ValueError(
            f"expected a key and {n_features} features, got {len(fields)} feature fields"
        )
    values = []
    for i, field in enumerate(fields):
        # 1-based like the line number: the key is column 1, feature i is column i + 2
        label = (f"feature '{names[i]}'" if i < len(names) else "feature") + f" (column {i + 2})"
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
) -> PipeStats:
    """Serve ``source`` until it ends; returns the counters."""
    pool = pool if pool is not None else model.pool()
    shape = model.spec.sample_shape
    n_features = int(np.prod(shape))
    names = model.spec.feature_names
    stats = PipeStats()
    for arrival in read_arrivals(source):
        # Parse the arrival, then cut it into ticks in which each key appears once.
        ticks: list[dict[str, tuple[int, np.ndarray]]] = [{}]
        for raw in arrival:
            stats.lines += 1
            text = raw.strip()
            if not text:
                continue
            try:
                key, values = _parse(text, n_features, names)
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
            out.write("".join(format_output(k, y) + "\n" for k, y in zip(keys, ys, strict=True)))
            stats.outputs += len(keys)
            stats.ticks += 1
        out.flush()
        err.flush()
    return stats
