"""``serve_lines``: the pipe's loop. Parse each arrival, open streams for new keys (up
to ``max_streams``), cut the arrival into ticks in which each key appears once, step
them in one batched call each, write the outputs in input order."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

from ...fleet.interface import FleetPool
from ...fleet.model import StreamingModel
from .fields import format_output, parse_number, quoted, shown, split_fields
from .layout import LineLayout, sniff_delimiter
from .options import PipeError, PipeOptions, PipeStats
from .reading import TooLong, read_arrivals

__all__ = ["serve_lines"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_EXPIRE_EVERY = 1.0  # seconds between idle sweeps


# -- writing ---------------------------------------------------------------------------
class _Writer:
    """Text written as UTF-8 bytes (undecodable key bytes restored as sent) to a binary
    stream, or to the binary buffer under a text one; as text to a text-only stream."""

    def __init__(self, stream: Any) -> None:
        self.text = stream
        self.binary = None
        if not isinstance(stream, io.TextIOBase) and not hasattr(stream, "encoding"):
            self.binary = stream
        elif getattr(stream, "buffer", None) is not None:
            self.binary = stream.buffer

    def write(self, text: str) -> None:
        if self.binary is None:
            self.text.write(text.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
        else:
            if self.binary is not self.text:
                self.text.flush()  # anything written as text before goes first
            self.binary.write(text.encode("utf-8", "surrogateescape"))

    def flush(self) -> None:
        (self.binary or self.text).flush()


# -- serving ---------------------------------------------------------------------------
@dataclass
class _Server:
    model: StreamingModel
    pool: FleetPool
    options: PipeOptions
    out: _Writer
    err: _Writer
    stats: PipeStats = field(default_factory=PipeStats)
    layout: LineLayout | None = None
    last_sweep: float = 0.0

    def report(self, message: str) -> None:
        self.stats.rejected += 1
        self.err.write(f"line {self.stats.lines}: {message}\n")

    def first_line(self, text: str) -> bool:
        """Decide the layout from the first non-blank line; True where it was a header."""
        spec, options = self.model.spec, self.options
        delimiter = options.delimiter or sniff_delimiter(text)
        fields = [f.strip(" \t") for f in split_fields(text, delimiter)]
        names = set(options.columns or spec.feature_names)
        is_header = options.header == "yes" or (
            options.header == "auto"
            and ((bool(names) and names <= set(fields)) or options.key_column in fields)
        )
        if not is_header:
            self.layout = LineLayout(delimiter=delimiter)
            return False
        self.layout = LineLayout.from_header(fields, spec, options, delimiter)
        outputs = spec.output_names or [f"y{j}" for j in range(spec.output_size or 0)]
        head = [self.layout.key_name, *outputs, *(["label"] if options.label else [])]
        self.out.write(delimiter.join(quoted(h, delimiter) for h in head) + "\n")
        return True

    def parse(self, text: str) -> tuple[str, np.ndarray]:
        layout = self.layout
        assert layout is not None
        spec = self.model.spec
        n = spec.input_size
        fields = split_fields(text, layout.delimiter)
        cr = " (a carriage return inside the line: lines end with \\n, not \\r alone)"
        if layout.width is None:
            if len(fields) - 1 != n:
                raise ValueError(
                    f"expected a key and {n} features, got {len(fields) - 1} feature fields"
                    + (cr if "\r" in text else "")
                )
            columns: Sequence[int] = range(1, n + 1)
        else:
            if len(fields) != layout.width:
                raise ValueError(
                    f"expected {layout.width} fields as the header has, got {len(fields)}"
                    + (cr if "\r" in text else "")
                )
            assert layout.features is not None
            columns = layout.features
        key = fields[layout.key]
        if not key:
            raise ValueError(f"the key (column {layout.key + 1}) is empty")
        size = len(key.encode("utf-8", "surrogateescape"))
        if size > self.options.max_key_bytes:
            raise ValueError(
                f"the key {shown(key)} (column {layout.key + 1}) has {size:,} bytes, over "
                f"--max-key-bytes {self.options.max_key_bytes:,}"
            )
        control = _CONTROL.search(key)
        if control:
            raise ValueError(
                f"the key {shown(key)} (column {layout.key + 1}) holds the control "
                f"character {control.group()!r}; keys are taken byte for byte, so it is "
                f"refused rather than guessed at"
            )
        names = self.options.columns or spec.feature_names
        values = np.empty(n, np.float64)
        for i, column in enumerate(columns):
            try:
                values[i] = parse_number(fields[column])
            except ValueError as e:
                name = f"feature {names[i]!r}" if i < len(names) else "feature"
                raise ValueError(f"{name} (column {column + 1}) {e}") from None
        return key, values.reshape(spec.sample_shape)

    def room_for(self, ticks: list[dict[str, np.ndarray]]) -> bool:
        """Whether a new stream may open (under ``max_streams``). When the pool is full
        and streams expire, the ticks parsed so far run first, then idle streams close."""
        limit = self.options.max_streams
        if limit is None or len(self.pool) < limit:
            return True
        if self.options.idle_timeout is not None:
            self.run(ticks)
            ticks[:] = [{}]
            self.sweep(force=True)
        return len(self.pool) < limit

    def sweep(self, force: bool = False) -> None:
        """Close the streams idle for ``idle_timeout`` (at most once a second)."""
        timeout = self.options.idle_timeout
        now = time.monotonic()
        if timeout is None or (not force and now - self.last_sweep < _EXPIRE_EVERY):
            return
        self.last_sweep = now
        self.stats.expired += len(self.pool.expire(timeout))

    def arrival(self, lines: list[bytes]) -> None:
        """Parse an arrival, cut it into ticks in which each key appears once, run them."""
        ticks: list[dict[str, np.ndarray]] = [{}]
        for raw in lines:
            self.stats.lines += 1
            if isinstance(raw, TooLong):
                self.report(f"longer than {self.options.max_line_bytes:,} bytes "
                            f"({raw.length:,}): skipped unread")  # fmt: skip
                continue
            text = raw.decode("utf-8", "surrogateescape").removesuffix("\r")
            if self.stats.lines == 1:
                text = text.removeprefix("\ufeff")  # a byte-order mark (Excel's UTF-8 CSV)
            if not text.strip():
                continue
            try:
                if self.layout is None and self.first_line(text):
                    continue
                key, x = self.parse(text)
            except PipeError:
                raise
            except ValueError as e:
                self.report(str(e))
                continue
            if key not in self.pool:
                if not self.room_for(ticks):
                    self.report(
                        f"key {shown(key)} would open stream {len(self.pool) + 1:,}, over "
                        f"--max-streams {self.options.max_streams:,}: refused (streams idle "
                        f"for --idle-timeout are closed to make room)"
                    )
                    continue
                self.pool.open(key)
                self.stats.streams += 1
            if key in ticks[-1]:
                ticks.append({})
            ticks[-1][key] = x
        self.run(ticks)
        self.out.flush()
        self.err.flush()
        self.sweep()

    def run(self, ticks: list[dict[str, np.ndarray]]) -> None:
        """Step the ticks in order and write their outputs."""
        label = self.options.label
        names = self.model.spec.output_names
        delimiter = self.layout.delimiter if self.layout else ","
        for tick in ticks:
            if not tick:
                continue
            keys = list(tick)
            ys = self.pool.step_batch(keys, np.stack(list(tick.values())))
            self.out.write(
                "".join(
                    format_output(k, y, names[int(np.argmax(y))] if label else None, delimiter)
                    + "\n"
                    for k, y in zip(keys, ys, strict=True)
                )
            )
            self.stats.outputs += len(keys)
            self.stats.ticks += 1


def serve_lines(
    model: StreamingModel,
    source: IO[Any] | Iterable[str | bytes],
    out: IO[Any],
    err: IO[Any],
    *,
    pool: FleetPool | None = None,
    options: PipeOptions | None = None,
    **option_fields: Any,
) -> PipeStats:
    """Serve ``source`` (bytes or text) until it ends; returns the counters. ``options``
    (or its fields as keywords, e.g. ``header="yes"``) say how to read it. ``PipeError``
    where the options or the header do not fit the model."""
    options = options or PipeOptions(**option_fields)
    spec = model.spec
    if options.label and (spec.task != "classification" or not spec.output_names):
        raise PipeError("--label: the model is not a classifier with class names")
    server = _Server(model, pool if pool is not None else model.pool(), options,
                     _Writer(out), _Writer(err))  # fmt: skip
    for arrival in read_arrivals(source, options.max_line_bytes):
        server.arrival(arrival)
    return server.stats
