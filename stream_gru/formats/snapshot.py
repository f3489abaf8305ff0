"""The binary format of stream snapshots (and, later, pool files).

A blob is::

    b"SGRU" | kind (4 bytes, e.g. b"STRM") | format version (u32 LE)
    | header length (u32 LE) | header (UTF-8 JSON) | array bytes | sha256 of all before

The header names the model's fingerprint, any extra fields, and each array's name,
dtype and shape, in the order their bytes follow. Decoding checks the length, magic,
checksum, version and fingerprint before it trusts anything, and every failure is a
``SnapshotError`` that says which check failed.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import SnapshotError
from .sniff import looks_like

__all__ = ["FORMAT_VERSION", "decode", "encode"]

MAGIC = b"SGRU"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<4s4sII")
_DIGEST = 32
_DTYPES = {"float32", "float64", "float16", "int64", "int32", "uint64", "uint8"}
_EXPECTED = {
    b"POOL": "a stream-gru pool file (written by StreamPool.save)",
    b"STRM": "a stream-gru stream snapshot (Stream.snapshot)",
}
_HINTS = {
    b"POOL": "; load a pool file with model.load_pool(path)",
    b"STRM": "; restore a stream snapshot with model.restore(blob) or pool.restore(key, blob)",
}


def encode(
    kind: bytes,
    fingerprint: str,
    arrays: Mapping[str, np.ndarray],
    extra: Mapping[str, Any] | None = None,
) -> bytes:
    """Serialize named arrays (plus JSON-able ``extra``) tied to a model fingerprint."""
    entries = []
    chunks = []
    for name, arr in arrays.items():
        a = np.ascontiguousarray(arr)
        if a.dtype.name not in _DTYPES:
            raise TypeError(f"cannot snapshot array '{name}' of dtype {a.dtype}")
        entries.append({"name": name, "dtype": a.dtype.name, "shape": list(a.shape)})
        chunks.append(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
    header = json.dumps(
        {"fingerprint": fingerprint, "arrays": entries, "extra": dict(extra or {})},
        separators=(",", ":"),
    ).encode()
    body = b"".join([_PREFIX.pack(MAGIC, kind, FORMAT_VERSION, len(header)), header, *chunks])
    return body + hashlib.sha256(body).digest()


def decode(
    blob: Any, kind: bytes, fingerprint: str, *, what: str = "snapshot", quote: bool = True
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Check and parse a blob made by ``encode``; returns (arrays, extra). ``quote``:
    whether a message about the wrong kind of file may quote its first bytes."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be bytes, got {type(blob).__name__}")
    data = bytes(blob)
    if len(data) < _PREFIX.size + _DIGEST:
        raise SnapshotError(
            f"{what} is truncated: {len(data)} bytes, a valid one has at least "
            f"{_PREFIX.size + _DIGEST}"
        )
    magic, got_kind, version, header_len = _PREFIX.unpack_from(data)
    expected = _EXPECTED.get(kind, f"a stream-gru {kind!r} record")
    if magic != MAGIC:
        raise SnapshotError(
            f"{what} is not {expected}: it looks like {looks_like(data, quote=quote)}"
        )
    body, digest = data[:-_DIGEST], data[-_DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise SnapshotError(f"{what} is corrupt or truncated: its sha256 checksum does not match")
    if _PREFIX.size + header_len > len(body):
        raise SnapshotError(
            f"{what} has a header of {header_len:,} bytes in a body of {len(body):,}: malformed"
        )
    if got_kind != kind:
        raise SnapshotError(
            f"{what} is {looks_like(data, quote=quote)}, expected {expected}"
            f"{_HINTS.get(got_kind, '')}"
        )
    if version != FORMAT_VERSION:
        raise SnapshotError(
            f"{what} has format version {version}; this runtime reads version {FORMAT_VERSION}"
        )
    try:
        header = json.loads(body[_PREFIX.size : _PREFIX.size + header_len])
        their_fp = str(header["fingerprint"])
        entries = list(header["arrays"])
        extra = dict(header.get("extra", {}))
    except Exception as e:  # whatever a crafted header makes json or the lookups raise
        raise SnapshotError(f"{what} has a malformed header: {e!r}") from None
    if their_fp != fingerprint:
        raise SnapshotError(
            f"{what} was made by another model: weights fingerprint {their_fp[:16]}..., "
            f"this model's is {fingerprint[:16]}..."
        )
    arrays: dict[str, np.ndarray] = {}
    pos = _PREFIX.size + header_len
    try:
        for entry in entries:
            dtype = np.dtype(str(entry["dtype"])).newbyteorder("<")
            if dtype.name not in _DTYPES:
                raise ValueError(f"dtype {dtype}")
            shape = tuple(int(d) for d in entry["shape"])
            if any(d < 0 for d in shape):
                raise ValueError(f"shape {shape}")
            with np.errstate(all="raise"):
                size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if pos + size > len(body):
                raise ValueError(f"array '{entry['name']}' runs past the end")
            arr = np.frombuffer(body, dtype=dtype, count=size // dtype.itemsize, offset=pos)
            arrays[str(entry["name"])] = arr.reshape(shape).astype(dtype.newbyteorder("="))
            pos += size
    except Exception as e:  # numpy raises OverflowError, SyntaxError, ... for crafted entries
        raise SnapshotError(f"{what} has a malformed array table: {e!r}") from None
    if pos != len(body):
        raise SnapshotError(f"{what} has {len(body) - pos} unexpected trailing bytes")
    return arrays, extra
