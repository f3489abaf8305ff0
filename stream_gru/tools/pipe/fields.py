"""One line's fields: RFC 4180 splitting, the protocol's number grammar, the output
line, and fields shown safely in messages."""

from __future__ import annotations

import math
import re

import numpy as np

__all__ = ["format_output", "parse_number", "quoted", "shown", "split_fields"]

_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_NOT_FINITE = frozenset(
    s + w for s in ("", "+", "-") for w in ("nan", "inf", "infinity", "snan", "qnan")
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
    """A value of the protocol's number grammar (``stream_gru.tools.pipe``), as a float whose
    float32 is finite; ``ValueError`` saying what is wrong."""
    text = field.strip(" \t")
    if not _NUMBER.match(text):
        if text.lower() in _NOT_FINITE:
            raise ValueError(f"is {text}, expected a finite number")
        hint = ""
        if "_" in text or any(c.isdigit() and not c.isascii() for c in text):
            hint = " (ASCII digits only, no separators)"
        elif "," in text:
            hint = " (a decimal comma? numbers need a decimal point)"
        raise ValueError(f"is not a number: {shown(text)}{hint}")
    value = float(text)
    with np.errstate(over="ignore"):
        if not math.isfinite(float(np.float32(value))):
            raise ValueError(f"is {shown(text)}, which overflows float32 (largest 3.4028235e38)")
    return value


def shown(text: str, limit: int = 40) -> str:
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
    line = quoted(key, delimiter) + delimiter + numbers
    return line if label is None else line + delimiter + quoted(label, delimiter)


def quoted(text: str, delimiter: str) -> str:
    if delimiter in text or '"' in text or "\n" in text or "\r" in text:
        return '"' + text.replace('"', '""') + '"'
    return text
