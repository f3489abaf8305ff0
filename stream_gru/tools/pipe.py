"""The line protocol of ``stream-gru run``: CSV lines in, one CSV line out per line.

Two layouts. Without a header, a line is ``key,f1,...,fI`` and the output
``key,y1,...,yO``. With a header (a CSV file of one's own, say), the key and the
features are found by column name: the key in ``key_column`` (default: the column the
model's recordings were cut by in training, else the first column that is not a
feature), the features in the model's feature names (or ``columns``); other columns are
ignored, and the output starts with a header line ``key,out1,...``. ``label`` appends a
classifier's predicted class.

The protocol works on bytes, whatever the locale. A key is taken byte for byte as sent
(spaces, case and bytes that are not UTF-8 included: two keys are one stream only where
their bytes are equal) and written back the same; a key with a control character is
refused. Fields follow RFC 4180 quoting (``"PUMP,03"`` keeps its comma, ``""`` is a
quote); the delimiter is the header's (comma, semicolon, tab or bar), or a comma. A
number is ASCII: an optional sign, digits with an optional point, an optional exponent
(``-1.5e3``, ``.5``, ``7.``); NaN and infinities are refused by name, and a value is
refused only where its float32 is not finite (``3.4028235e38`` is float32's largest).

One stream per key in a ``StreamPool``, opened on the key's first good line, at most
``max_streams`` of them; ``idle_timeout`` closes streams idle that long (their state is
dropped: a key that comes back starts afresh). Lines that arrive together are stepped
together, in one batched call per tick (a key seen twice in one arrival goes into the
next tick, so its samples stay in order), and the outputs are written in input order,
flushed at once. Reading is linear in the input, and a line longer than
``max_line_bytes`` is skipped unread. A bad line gets one message on the error stream
naming its 1-based line number and the problem; it changes no stream, and the lines
after it are processed as usual.
"""

from __future__ import annotations

import io
import math
import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Literal

import numpy as np

from ..core.spec import ModelSpec
from ..fleet.model import StreamingModel
from ..fleet.pool import StreamPool

__all__ = [
    "DEFAULT_MAX_KEY_BYTES",
    "DEFAULT_MAX_LINE_BYTES",
    "DEFAULT_MAX_STREAMS",
    "HeaderMode",
    "LineLayout",
    "PipeError",
    "PipeOptions",
    "PipeStats",
    "format_output",
    "parse_number",
    "read_arrivals",
    "serve_lines",
    "split_fields",
]

HeaderMode = Literal["auto", "yes", "no"]
DEFAULT_MAX_LINE_BYTES = 1 << 20
DEFAULT_MAX_STREAMS = 1_000_000
DEFAULT_MAX_KEY_BYTES = 1024
_NOT_DELIMITERS = frozenset('0123456789.+-eE "\r\n')
_READ_SIZE = 1 << 16
_DELIMITERS = (",", ";", "\t", "|")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_NOT_FINITE = frozenset(
    s + w for s in ("", "+", "-") for w in ("nan", "inf", "infinity", "snan", "qnan")
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_EXPIRE_EVERY = 1.0  # seconds between idle sweeps


class PipeError(ValueError):
    """The options or the header do not fit the model (a missing column, say)."""


class TooLong(bytes):
    """What ``read_arrivals`` gives for a line over the limit: its first bytes only."""

    length: int


@dataclass(frozen=True)
class PipeOptions:
    """How ``serve_lines`` reads its input (see the module docstring).

    ``header``: is the first non-blank line a header ("auto": where it names the
    features, ``columns`` or ``key_column``). ``key_column``/``columns``: names, with a
    header only. ``label``: append a classifier's predicted class. ``delimiter``: one
    character, or None for the header's (a comma without one). ``max_line_bytes``: a
    longer line is skipped with a message. ``max_streams``: the most streams open at
    once; a new key beyond it is refused with a message (None: no limit).
    ``idle_timeout``: seconds after which an idle stream is closed and its state
    dropped (None: never). ``max_key_bytes``: a longer key is refused, so that
    ``max_streams`` bounds memory.
    """

    header: HeaderMode = "auto"
    key_column: str | None = None
    columns: tuple[str, ...] | None = None
    label: bool = False
    delimiter: str | None = None
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    max_streams: int | None = DEFAULT_MAX_STREAMS
    idle_timeout: float | None = None
    max_key_bytes: int = DEFAULT_MAX_KEY_BYTES

    def __post_init__(self) -> None:
        if self.columns is not None:
            object.__setattr__(self, "columns", tuple(str(c) for c in self.columns))
        if self.header not in ("auto", "yes", "no"):
            raise PipeError(f"header must be 'auto', 'yes' or 'no', got {self.header!r}")
        if self.header == "no" and (self.key_column is not None or self.columns is not None):
            raise PipeError("--key-column and --columns name columns of a header: not with "
                            "--header no")  # fmt: skip
        if self.delimiter is not None and (
            len(self.delimiter) != 1 or self.delimiter in _NOT_DELIMITERS
            or (not self.delimiter.isprintable() and self.delimiter != "\t")
        ):  # fmt: skip
            raise PipeError(
                f"the delimiter must be one character that no number or quoted field holds "
                f"(not a digit, '.', '+', '-', 'e', 'E', a space or a quote), got "
                f"{self.delimiter!r}"
            )
        if self.columns is not None:
            twice = sorted({c for c in self.columns if self.columns.count(c) > 1})
            if twice:
                raise PipeError(f"--columns names {twice} more than once")
            if self.key_column is not None and self.key_column in self.columns:
                raise PipeError(f"the key column {self.key_column!r} is also a feature column")
        if not (isinstance(self.max_key_bytes, int) and self.max_key_bytes >= 1):
            raise PipeError(f"max_key_bytes must be an int >= 1, got {self.max_key_bytes!r}")
        if not (isinstance(self.max_line_bytes, int) and self.max_line_bytes >= 16):
            raise PipeError(f"max_line_bytes must be an int >= 16, got {self.max_line_bytes!r}")
        if self.max_streams is not None and not (
            isinstance(self.max_streams, int) and self.max_streams >= 1
        ):
            raise PipeError(f"max_streams must be an int >= 1, got {self.max_streams!r}")
        if self.idle_timeout is not None and not (
            isinstance(self.idle_timeout, (int, float)) and self.idle_timeout > 0
        ):
            raise PipeError(f"idle_timeout must be a positive number, got {self.idle_timeout!r}")


@dataclass
class PipeStats:
    """Counters of one ``serve_lines`` run."""

    lines: int = 0
    outputs: int = 0
    rejected: int = 0
    streams: int = 0
    ticks: int = 0
    expired: int = 0

    @property
    def all_refused(self) -> bool:
        """Lines came, and not one gave an output."""
        return self.rejected > 0 and self.outputs == 0


@dataclass(frozen=True)
class LineLayout:
    """Where a line's key and features are: ``key`` and ``features`` index the fields;
    ``width`` is the number of fields a line has (None: a key and the features, no
    more). ``key_name`` heads the output's key column; ``delimiter`` separates fields."""

    key: int = 0
    features: tuple[int, ...] | None = None
    width: int | None = None
    key_name: str = "key"
    delimiter: str = ","

    @classmethod
    def from_header(
        cls, header: Sequence[str], spec: ModelSpec, options: PipeOptions, delimiter: str
    ) -> LineLayout:
        """The layout a header row names; ``PipeError`` naming what it lacks."""
        names = list(options.columns or spec.feature_names)
        if not names:
            raise PipeError("the model names no features: give --columns A,B,.. with the header")
        if len(names) != spec.input_size:
            raise PipeError(f"--columns names {len(names)} columns; the model takes "
                            f"{spec.input_size}")  # fmt: skip
        twice = sorted({h for h in header if header.count(h) > 1})
        if twice:
            raise PipeError(f"the header names column(s) {twice} more than once")
        missing = [n for n in names if n not in header]
        if missing:
            raise PipeError(
                f"the header has no column(s) {', '.join(map(repr, missing))} that the model "
                f"takes as features; its columns: {', '.join(header)}"
            )
        key_column = options.key_column
        if key_column is not None and key_column in names:
            raise PipeError(f"the key column {key_column!r} is also a feature the model takes")
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
            delimiter=delimiter,
        )


def split_fields(text: str, delimiter: str = ",") -> list[str]:
    """The fields of one CSV line (RFC 4180 quoting: a field that starts with a quote
    runs to the next lone quote, ``""`` inside it is a quote). ``ValueError`` for a
    quote that is not closed, text after a closing quote, or a quote in an unquoted
    field (which CSV writers never make: it means a field was cut or run together)."""
    if '"' not in text:
        return text.split(delimiter)
    fields: list[str] = []
    i, n = 0, len(text)
    while True:
        column = len(fields) + 1
        if i < n and text[i] == '"':
            parts, j = [], i + 1
            while True:
                q = text.find('"', j)
                if q < 0:
                    raise ValueError(f"column {column}: a quoted field is not closed")
                parts.append(text[j:q])
                if text.startswith('"', q + 1):  # "" inside quotes: a quote
                    parts.append('"')
                    j = q + 2
                    continue
                break
            fields.append("".join(parts))
            i = q + 1
            if i == n:
                return fields
            if text[i] != delimiter:
                raise ValueError(f"column {column}: text after the closing quote")
            i += 1
            continue
        end = text.find(delimiter, i)
        value = text[i:] if end < 0 else text[i:end]
        if '"' in value:
            raise ValueError(
                f"column {column}: a quote inside a field that does not start with one "
                f"(a field with a quote, the delimiter or a line break is written in quotes)"
            )
        fields.append(value)
        if end < 0:
            return fields
        i = end + 1


def parse_number(field: str) -> float:
    """A value of the protocol's number grammar (module docstring), as a float whose
    float32 is finite; ``ValueError`` saying what is wrong."""
    text = field.strip(" \t")
    if not _NUMBER.match(text):
        if text.lower() in _NOT_FINITE:
            raise ValueError(f"is {text}, expected a finite number")
        shown = _shown(text)
        hint = ""
        if "_" in text or any(c.isdigit() and not c.isascii() for c in text):
            hint = " (ASCII digits only, no separators)"
        elif "," in text:
            hint = " (a decimal comma? numbers need a decimal point)"
        raise ValueError(f"is not a number: {shown}{hint}")
    value = float(text)
    with np.errstate(over="ignore"):
        if not math.isfinite(float(np.float32(value))):
            raise ValueError(f"is {_shown(text)}, which overflows float32 (largest 3.4028235e38)")
    return value


def _shown(text: str, limit: int = 40) -> str:
    """A field for a message, quoted and shortened: bytes that are not UTF-8 as \\xNN,
    other unprintable characters escaped as Python writes them."""
    out = []
    for c in text[:limit]:
        code = ord(c)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif c in "'\\":
            out.append("\\" + c)
        elif c.isprintable():
            out.append(c)
        else:
            out.append(repr(c)[1:-1])
    return "'" + "".join(out) + ("...'" if len(text) > limit else "'")


def format_output(key: str, y: np.ndarray, label: str | None = None, delimiter: str = ",") -> str:
    """``key,y1,...[,label]`` with ``%.9g`` (enough digits for float32 to round-trip);
    a key or label that holds the delimiter, a quote or a line break is quoted."""
    numbers = delimiter.join(f"{v:.9g}" for v in np.asarray(y, np.float64).ravel())
    line = _quoted(key, delimiter) + delimiter + numbers
    return line if label is None else line + delimiter + _quoted(label, delimiter)


def _quoted(text: str, delimiter: str) -> str:
    if delimiter in text or '"' in text or "\n" in text or "\r" in text:
        return '"' + text.replace('"', '""') + '"'
    return text


# -- reading ---------------------------------------------------------------------------
def _chunks(source: Any) -> Iterator[bytes]:
    """The bytes of ``source`` as they arrive: ``os.read`` on a real file or pipe (what
    has arrived, without waiting for more), else ``read`` or the items of an iterable
    (text is encoded as UTF-8)."""
    fileno = getattr(source, "fileno", None)
    try:
        fd = fileno() if callable(fileno) else None
    except (OSError, ValueError, io.UnsupportedOperation):  # io.StringIO and friends
        fd = None
    if fd is not None:
        while chunk := os.read(fd, _READ_SIZE):
            yield chunk
        return
    if hasattr(source, "read"):
        while chunk := source.read(_READ_SIZE):
            yield chunk.encode("utf-8", "surrogateescape") if isinstance(chunk, str) else chunk
        return
    for item in source:
        yield item.encode("utf-8", "surrogateescape") if isinstance(item, str) else item


def read_arrivals(
    source: IO[Any] | Iterable[str | bytes], max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Iterator[list[bytes]]:
    """Group the lines of ``source`` by arrival: each item holds the complete lines that
    were available together, as bytes without their line break. A line longer than
    ``max_line_bytes`` comes as a ``TooLong`` (its first bytes, and its ``length``),
    and is never held whole. Linear in the input."""
    pending = bytearray()
    skipped = -1  # bytes of an overlong line seen so far, or -1
    for chunk in _chunks(source):
        lines: list[bytes] = []
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            piece = chunk[start:end]
            if skipped >= 0:
                lines.append(_too_long(bytes(pending), skipped + len(piece)))
            elif len(pending) + len(piece) > max_line_bytes:
                lines.append(_too_long(bytes(pending) + piece, len(pending) + len(piece)))
            else:
                lines.append(bytes(pending) + piece if pending else piece)
            pending.clear()
            skipped = -1
            start = end + 1
        rest = chunk[start:]
        if skipped >= 0:
            skipped += len(rest)
        elif len(pending) + len(rest) > max_line_bytes:
            skipped = len(pending) + len(rest)
            del pending[64:]  # keep the start, for the message
            pending += rest[: max(0, 64 - len(pending))]
        else:
            pending += rest
        if lines:
            yield lines
    if skipped >= 0:
        yield [_too_long(bytes(pending), skipped)]
    elif pending:
        yield [bytes(pending)]


def _too_long(head: bytes, length: int) -> TooLong:
    line = TooLong(head[:64])
    line.length = length
    return line


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
    pool: StreamPool
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
        delimiter = options.delimiter or _sniff(text)
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
        self.out.write(delimiter.join(_quoted(h, delimiter) for h in head) + "\n")
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
                f"the key {_shown(key)} (column {layout.key + 1}) has {size:,} bytes, over "
                f"--max-key-bytes {self.options.max_key_bytes:,}"
            )
        control = _CONTROL.search(key)
        if control:
            raise ValueError(
                f"the key {_shown(key)} (column {layout.key + 1}) holds the control "
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
                        f"key {_shown(key)} would open stream {len(self.pool) + 1:,}, over "
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


def _sniff(line: str) -> str:
    counts = {d: line.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def serve_lines(
    model: StreamingModel,
    source: IO[Any] | Iterable[str | bytes],
    out: IO[Any],
    err: IO[Any],
    *,
    pool: StreamPool | None = None,
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
