"""Lines grouped by arrival, read as bytes in linear time, never holding a line over
the limit whole."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from typing import IO, Any

from .options import DEFAULT_MAX_LINE_BYTES

__all__ = ["TooLong", "read_arrivals"]

_READ_SIZE = 1 << 16


class TooLong(bytes):
    """What ``read_arrivals`` gives for a line over the limit: its first bytes only."""

    length: int


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
