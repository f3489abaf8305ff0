"""The line protocol of ``stream-gru run``: ``key,f1,...,fI`` in, ``key,y1,...,yO`` out.

One stream per key, opened on first sight. Every output line is flushed at once, so
the pipe can sit between a sensor reader and a consumer in real time. A bad line gets
one message on the error stream naming its 1-based line number and the problem; it
changes no stream, and the lines after it are processed as usual.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TextIO

import numpy as np

from .runtime import Stream, StreamingModel

__all__ = ["PipeStats", "format_output", "serve_lines"]


@dataclass
class PipeStats:
    """Counters of one ``serve_lines`` run."""

    lines: int = 0
    outputs: int = 0
    rejected: int = 0
    streams: int = 0


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
        label = f"feature {i + 1}" + (f" ('{names[i]}')" if i < len(names) else "")
        try:
            v = float(field)
        except ValueError:
            raise ValueError(f"{label} is not a number: {field.strip()!r}") from None
        if not math.isfinite(v):
            raise ValueError(f"{label} is {field.strip()}, expected a finite number")
        values.append(v)
    return key, values


def serve_lines(
    model: StreamingModel, source: TextIO | Iterable[str], out: TextIO, err: TextIO
) -> PipeStats:
    """Serve ``source`` line by line until it ends; returns the counters."""
    shape = model.spec.sample_shape
    n_features = int(np.prod(shape))
    streams: dict[str, Stream] = {}
    stats = PipeStats()
    lines = iter(source.readline, "") if hasattr(source, "readline") else iter(source)
    for lineno, raw in enumerate(lines, start=1):
        stats.lines = lineno
        text = raw.strip()
        if not text:
            continue
        try:
            key, values = _parse(text, n_features, model.spec.feature_names)
            stream = streams.get(key)
            fresh = stream is None
            if stream is None:
                stream = model.stream()
            y = stream.step(np.asarray(values, np.float32).reshape(shape))
        except (ValueError, TypeError) as e:
            stats.rejected += 1
            err.write(f"line {lineno}: {e}\n")
            err.flush()
            continue
        if fresh:
            streams[key] = stream
            stats.streams += 1
        out.write(format_output(key, y) + "\n")
        out.flush()
        stats.outputs += 1
    return stats
