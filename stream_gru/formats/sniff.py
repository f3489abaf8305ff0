"""What a file seems to be, from its first bytes: for messages about the wrong file.

A user who gives a checkpoint where a model is expected, or a model where a pool file
is, should read "it looks like a PyTorch checkpoint (checkpoint.pt)", not a protobuf
parser's "field number 0". ``looks_like`` names the kinds this project's users meet.
"""

from __future__ import annotations

import io
import zipfile

__all__ = ["looks_like"]

_MAGICS = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\x93NUMPY", "a NumPy .npy array"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"%PDF", "a PDF document"),
    (b"RIFF", "a RIFF file (a .wav recording?)"),
)


def looks_like(data: bytes, *, quote: bool = True) -> str:
    """A noun phrase for what ``data`` (a file's bytes) seems to be, e.g.
    ``"a PyTorch checkpoint (a .pt zip archive)"`` or ``"text: 'time,machine_id,...'"``.
    ``quote=False`` never repeats the file's contents (for files a caller did not choose:
    the names in a manifest, say)."""
    if not data:
        return "an empty file"
    head = bytes(data[:64])
    if head.startswith(b"SGRU"):
        kind = head[4:8]
        if kind == b"POOL":
            return "a stream-gru pool file (StreamPool.save)"
        if kind == b"STRM":
            return "a stream-gru stream snapshot (Stream.snapshot)"
        return "a stream-gru file of an unknown kind"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16 text"
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(data)
    for magic, what in _MAGICS:
        if head.startswith(magic):
            return what
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle (an old-style PyTorch checkpoint?)"
    if _looks_like_onnx(head):
        return "an ONNX model"
    text = _text(bytes(data[:4096]))
    if text is not None and not quote:
        return "text"
    if text is not None:
        first = text.lstrip("\ufeff").splitlines()[0] if text.strip() else ""
        if first.lstrip().startswith(("{", "[")):
            return f"JSON text: {first.strip()!r:.70}"
        return f"text: {first.strip()!r:.70}"
    if _legacy_text(bytes(data[:4096])):
        return "text that is not UTF-8 (Latin-1 or Windows-1252?)"
    return f"binary data starting {head[:8]!r}" if quote else "binary data"


def _zip_kind(data: bytes) -> str:
    try:
        names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return "a zip archive"
    if any(n.endswith("data.pkl") for n in names):
        return "a PyTorch checkpoint (a .pt zip archive)"
    if names and all(n.endswith(".npy") for n in names):
        return "a NumPy .npz archive"
    return "a zip archive"


def _looks_like_onnx(head: bytes) -> bool:
    """A ModelProto starts with its ir_version (field 1, varint: byte 0x08), usually
    followed by opset imports or the producer's name."""
    return len(head) > 2 and head[0] == 0x08 and head[1] < 0x80 and head[2] in (0x12, 0x1A, 0x3A)


def _legacy_text(data: bytes) -> bool:
    """Mostly printable ASCII with a few high bytes: text in an 8-bit encoding."""
    if b"\x00" in data or not data:
        return False
    ascii_text = sum(32 <= b < 127 or b in (9, 10, 13) for b in data)
    return ascii_text >= 0.9 * len(data)


def _text(data: bytes) -> str | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(data) - 4:  # not just a character cut at the end of the sample
            return None
        text = data[: e.start].decode("utf-8")
    printable = sum(c.isprintable() or c in "\r\n\t" for c in text)
    return text if text and printable >= 0.95 * len(text) else None
