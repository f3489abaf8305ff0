"""The binary WebSocket frames of ``/v1/stream``, for gateways that relay many devices:
one frame carries a sample for each of many streams, and its answer is one frame.

A request (binary message), all integers little-endian::

    b"SGB1" | n (u32) | I (u32, the model's input size)
    | n keys, each: length (u16) + UTF-8 bytes
    | n x I float32, row by row (row i is key i's sample)

Its reply (one binary message per request, in the order the requests came)::

    b"SGR1" | n (u32) | O (u32, the model's output size)
    | n status bytes (0: stepped; else a code of ``CODES``)
    | n step counts (u64; the stream's count after this sample, 0 where refused)
    | n x O float32 (zeros where refused)
    | m (u32) | m records: row (u32) + message length (u16) + UTF-8 message
    | k (u32) | k records: row (u32) + length (u16) + how the stream was found, for the
      rows whose stream was not simply continued ("opened", "resumed", "expired", ...)

Row i of the reply answers key i of the request. A frame that cannot be read gets a
JSON text frame ``{"error": ..., "code": "bad_frame"}`` instead, and the connection
stays open. Pure numpy: ``encode_request`` and ``decode_reply`` are what a Python
gateway uses; the server uses ``decode_request`` and ``encode_reply``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from ..errors import ServeError

__all__ = [
    "CODES",
    "REPLY_MAGIC",
    "REQUEST_MAGIC",
    "GatewayReply",
    "RequestKeys",
    "decode_reply",
    "decode_request",
    "encode_reply",
    "encode_request",
]

REQUEST_MAGIC = b"SGB1"
REPLY_MAGIC = b"SGR1"
# A refused sample's status byte: its index here (0 is "stepped").
CODES = (
    "ok", "bad_sample", "not_open", "too_many_streams", "queue_full", "closing", "bad_key",
    "not_started", "archive_unreadable", "error",
)  # fmt: skip
_HEAD = struct.Struct("<4sII")
_KEY_LENGTH = struct.Struct("<H")
_ERROR = struct.Struct("<IH")


@dataclass(frozen=True)
class GatewayReply:
    """A decoded reply: per row, its status code (``"ok"`` or a code of ``CODES``),
    its step count and output; the refused rows' messages; and how the streams that
    were not simply continued were found (``{row: "opened"}``, say)."""

    status: list[str]
    steps: np.ndarray
    outputs: np.ndarray
    errors: dict[int, str]
    streams: dict[int, str]


def encode_request(keys: list[str], xs: np.ndarray) -> bytes:
    """A request frame: ``xs`` ``(n, I)`` for ``keys`` (n distinct strings)."""
    xs = np.ascontiguousarray(xs, dtype="<f4")
    if xs.ndim != 2 or len(xs) != len(keys):
        raise ValueError(f"xs must be (n, input_size) for n={len(keys)} keys, got {xs.shape}")
    parts = [_HEAD.pack(REQUEST_MAGIC, len(keys), xs.shape[1])]
    for key in keys:
        raw = key.encode("utf-8")
        parts += [_KEY_LENGTH.pack(len(raw)), raw]
    parts.append(xs.tobytes())
    return b"".join(parts)


@dataclass(frozen=True)
class RequestKeys:
    """A request's keys, with the bytes they were read from (a gateway sends the same
    keys frame after frame: ``decode_request`` then skips reading them again)."""

    section: bytes
    keys: list[str]


def decode_request(
    data: bytes, input_size: int, previous: RequestKeys | None = None
) -> tuple[RequestKeys, np.ndarray]:
    """(keys, samples ``(n, I)`` float32) of a request frame; ``ServeError`` naming
    what is wrong with a frame that cannot be read. Where the frame's keys are byte for
    byte those of ``previous``, they are not read again."""
    if len(data) < _HEAD.size:
        raise ServeError(f"a binary frame of {len(data)} bytes: too short", code="bad_frame")
    magic, n, width = _HEAD.unpack_from(data)
    if magic != REQUEST_MAGIC:
        raise ServeError(f"a binary frame starts with {REQUEST_MAGIC!r}, not {magic!r}",
                         code="bad_frame")  # fmt: skip
    if width != input_size:
        raise ServeError(f"the frame's samples have {width} values; the model takes "
                         f"{input_size}", code="bad_frame")  # fmt: skip
    end = len(data) - 4 * n * width
    if end < _HEAD.size + 2 * n:
        raise ServeError(f"the frame is too short for {n:,} samples of {width} values",
                         code="bad_frame")  # fmt: skip
    section = data[_HEAD.size : end]
    if previous is not None and len(previous.keys) == n and previous.section == section:
        keys = previous
    else:
        keys = RequestKeys(bytes(section), _read_keys(data, n, end))
    xs = np.frombuffer(data, dtype="<f4", count=n * width, offset=end).reshape(n, width)
    return keys, xs


def _read_keys(data: bytes, n: int, end: int) -> list[str]:
    keys, offset = [], _HEAD.size
    for _ in range(n):
        if offset + 2 > end:
            raise ServeError("the frame's keys run into its samples", code="bad_frame")
        (length,) = _KEY_LENGTH.unpack_from(data, offset)
        offset += 2
        if offset + length > end:
            raise ServeError("the frame's keys run into its samples", code="bad_frame")
        try:
            keys.append(data[offset : offset + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise ServeError(f"key {len(keys)} is not UTF-8", code="bad_frame") from None
        offset += length
    if offset != end:
        raise ServeError(f"the frame has {end - offset:,} bytes between its keys and samples",
                         code="bad_frame")  # fmt: skip
    return keys


def encode_reply(
    status: np.ndarray,
    steps: np.ndarray,
    outputs: np.ndarray,
    errors: dict[int, str],
    streams: dict[int, str] | None = None,
) -> bytes:
    """A reply frame: ``status`` (n, uint8 codes), ``steps`` (n), ``outputs`` (n, O),
    the refused rows' messages and the rows' stream notes."""
    outputs = np.ascontiguousarray(outputs, dtype="<f4").reshape(len(status), -1)
    parts = [
        _HEAD.pack(REPLY_MAGIC, len(status), outputs.shape[1]),
        np.asarray(status, np.uint8).tobytes(),
        np.asarray(steps, "<u8").tobytes(),
        outputs.tobytes(),
    ]
    for table in (errors, streams or {}):
        parts.append(struct.pack("<I", len(table)))
        for row, message in table.items():
            raw = message.encode("utf-8")[:65535]
            parts += [_ERROR.pack(row, len(raw)), raw]
    return b"".join(parts)


def decode_reply(data: bytes) -> GatewayReply:
    """A reply frame, decoded (``ValueError`` for bytes that are not one)."""
    magic, n, width = _HEAD.unpack_from(data)
    if magic != REPLY_MAGIC:
        raise ValueError(f"not a reply frame (it starts with {magic!r})")
    offset = _HEAD.size
    status = np.frombuffer(data, np.uint8, n, offset)
    offset += n
    steps = np.frombuffer(data, "<u8", n, offset).astype(np.int64)
    offset += 8 * n
    outputs = np.frombuffer(data, "<f4", n * width, offset).reshape(n, width)
    offset += 4 * n * width
    tables = []
    for _ in range(2):
        (m,) = struct.unpack_from("<I", data, offset)
        offset += 4
        table = {}
        for _ in range(m):
            row, length = _ERROR.unpack_from(data, offset)
            offset += _ERROR.size
            table[row] = data[offset : offset + length].decode("utf-8")
            offset += length
        tables.append(table)
    return GatewayReply([CODES[s] for s in status], steps, outputs, tables[0], tables[1])
