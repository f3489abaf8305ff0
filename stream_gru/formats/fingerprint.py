"""Read what the runtime needs from an ONNX file without the ``onnx`` package.

An ONNX file is a protobuf ``ModelProto``. The runtime needs two things from it that
onnxruntime does not expose: the weights' fingerprint (the sha256 of the graph's
initializers, so a snapshot can be tied to the exact weights that made it) and a
cheap check that the bytes are a model at all. Walking the protobuf wire format for
the few fields involved takes a few dozen lines and keeps ``onnx`` out of the runtime.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from ..errors import ModelError
from .sniff import looks_like

__all__ = ["fingerprint_model_bytes"]

# Field numbers from onnx.proto (stable since ONNX 1.0).
_MODEL_GRAPH = 7
_GRAPH_INITIALIZER = 5
_GRAPH_SPARSE_INITIALIZER = 15

_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5


class _WireError(ValueError):
    pass


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise _WireError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _WireError("varint longer than 10 bytes")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, memoryview | None]]:
    """Yield (field number, wire type, payload for length-delimited fields)."""
    pos = 0
    end = len(buf)
    while pos < end:
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _WireError("field number 0")
        if wire == _VARINT:
            _, pos = _read_varint(buf, pos)
            yield number, wire, None
        elif wire == _FIXED64:
            pos += 8
            yield number, wire, None
        elif wire == _FIXED32:
            pos += 4
            yield number, wire, None
        elif wire == _LENGTH_DELIMITED:
            size, pos = _read_varint(buf, pos)
            if pos + size > end:
                raise _WireError("length-delimited field runs past the end")
            yield number, wire, buf[pos : pos + size]
            pos += size
        else:
            raise _WireError(f"unsupported wire type {wire}")
        if pos > end:
            raise _WireError("field runs past the end")


def fingerprint_model_bytes(data: bytes, *, source: str = "model") -> str:
    """The sha256 (hex) of the graph's initializers, in graph order.

    Each initializer's serialized ``TensorProto`` (name, dims, type and data) goes into
    the hash, so two models with the same shapes but other weights differ. A graph
    with no initializers keeps its weights in ``Constant`` nodes (Silero VAD: inside
    the branches of an ``If``), so then the whole serialized graph is hashed instead:
    otherwise every such model would share the hash of nothing. Raises ``ModelError``
    where the bytes are not a protobuf with a graph.
    """
    view = memoryview(data)
    digest = hashlib.sha256()
    try:
        graph = None
        for number, wire, payload in _fields(view):
            if number == _MODEL_GRAPH and wire == _LENGTH_DELIMITED:
                graph = payload
        if graph is None:
            raise _WireError("no graph in the file")
        count = 0
        for number, wire, payload in _fields(graph):
            is_init = number in (_GRAPH_INITIALIZER, _GRAPH_SPARSE_INITIALIZER)
            if is_init and wire == _LENGTH_DELIMITED and payload is not None:
                digest.update(len(payload).to_bytes(8, "little"))
                digest.update(payload)
                count += 1
    except _WireError as e:
        seems = looks_like(data)
        if seems == "an ONNX model":  # it starts like one: cut short or damaged
            raise ModelError(
                f"{source} is not a complete ONNX model: it starts like one, but its "
                f"protobuf is damaged or truncated ({e})"
            ) from None
        raise ModelError(
            f"{source} is not an ONNX model: it looks like {seems}; expected the .onnx "
            f"file that `stream-gru export` writes (or another ONNX model)"
        ) from None
    if count == 0:
        digest.update(b"graph without initializers\0")
        digest.update(graph)
    return digest.hexdigest()
