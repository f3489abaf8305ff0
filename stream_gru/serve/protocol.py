"""The KServe Open Inference Protocol v2 over HTTP, as ``stream-gru serve`` speaks it,
with Triton's sequence parameters and binary tensor data extension, so that an
unmodified ``tritonclient.http`` client works.

A request steps one stream: its data input (named as the model's, ``spec.io.input``),
datatype ``FP32``, shape ``[1, I]`` for one step or ``[1, T, I]`` for ``T`` steps in
order; ``parameters.sequence_id`` (a uint64 or a string: every key on the server is a
string, so id 42 is key ``"42"``; Triton's clients send no id for 0, which is refused),
``sequence_start`` (restart from a zero state) and ``sequence_end`` (close after this
request). The tensor comes as JSON (``"data"``: the numbers, flat or nested in row-major
order) or as binary data after the JSON header (``parameters.binary_data_size``, with the
``Inference-Header-Content-Length`` HTTP header). The response has the model's data
output, ``[1, O]`` or ``[1, T, O]``, as JSON or, where asked
(``parameters.binary_data_output`` or an output's ``parameters.binary_data``), binary.

Everything here is parsing and encoding, checked whole before anything runs: a malformed
request raises ``ServeError`` (status 400) naming the problem. No web framework here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.checks import as_samples
from ..core.spec import ModelSpec
from ..errors import ServeError

__all__ = [
    "HEADER_LENGTH",
    "InferRequest",
    "check_key",
    "encode_infer_response",
    "model_metadata",
    "parse_infer_request",
]

HEADER_LENGTH = "Inference-Header-Content-Length"
MAX_KEY_BYTES = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class InferRequest:
    """One checked infer request: the stream's ``key``, its samples ``(T, *sample)``
    float32, whether it was one step (``[1, I]``), the sequence flags, and how to answer."""

    key: str
    samples: np.ndarray
    one_step: bool
    start: bool
    end: bool
    binary_output: bool
    request_id: str | None


def check_key(key: Any) -> str:
    """A stream key as the server takes it: a non-empty string of at most 1,024 UTF-8
    bytes without control characters (``ServeError`` 400 naming it otherwise)."""
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        raise ServeError(
            f"sequence_id must be a uint64 or a string, got {type(key).__name__} {key!r:.40}",
            code="bad_key",
        )
    if isinstance(key, int):
        if not 0 < key < 2**64:
            raise ServeError(
                f"sequence_id {key} is not a uint64 > 0 (0 means none: say which stream)",
                code="bad_key",
            )
        return str(key)
    if not key:
        raise ServeError("the stream key is empty", code="bad_key")
    size = len(key.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_BYTES:
        raise ServeError(
            f"the stream key has {size:,} bytes, over {MAX_KEY_BYTES:,}", code="bad_key"
        )
    if _CONTROL.search(key):
        raise ServeError(f"the stream key {key[:40]!r} holds a control character", code="bad_key")
    return key


def _flag(parameters: Mapping[str, Any], name: str) -> bool:
    value = parameters.get(name, False)
    if not isinstance(value, bool):
        raise ServeError(f"parameter {name} must be true or false, got {value!r:.40}")
    return value


def parse_infer_request(body: bytes, header_length: int | None, spec: ModelSpec) -> InferRequest:
    """Parse and check an infer request's body (``header_length``: the value of the
    ``Inference-Header-Content-Length`` header, where the body carries binary data)."""
    if header_length is not None and not 0 <= header_length <= len(body):
        raise ServeError(
            f"{HEADER_LENGTH} is {header_length}, but the body has {len(body):,} bytes"
        )
    head = body if header_length is None else body[:header_length]
    binary = b"" if header_length is None else body[header_length:]
    try:
        request = json.loads(head)
    except (ValueError, RecursionError) as e:
        raise ServeError(f"the request is not valid JSON: {str(e)[:120]}") from None
    if not isinstance(request, dict):
        raise ServeError("the request must be a JSON object")
    parameters = request.get("parameters", {})
    if not isinstance(parameters, dict):
        raise ServeError("parameters must be an object")
    if "sequence_id" not in parameters:
        raise ServeError(
            "parameters.sequence_id is missing: every request names its stream "
            "(tritonclient: infer(..., sequence_id=ID); an id of 0 means none)",
            code="bad_key",
        )
    key = check_key(parameters["sequence_id"])
    samples, one_step = _data(request.get("inputs"), binary, spec)
    request_id = request.get("id")
    return InferRequest(
        key=key,
        samples=samples,
        one_step=one_step,
        start=_flag(parameters, "sequence_start"),
        end=_flag(parameters, "sequence_end"),
        binary_output=_binary_output(request, parameters, spec),
        request_id=str(request_id)[:256] if request_id is not None else None,
    )


def _data(inputs: Any, binary: bytes, spec: ModelSpec) -> tuple[np.ndarray, bool]:
    name = spec.io.input
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise ServeError(f"inputs must be a list of one tensor, the model's input {name!r}")
    tensor = inputs[0]
    if tensor.get("name") != name:
        raise ServeError(f"unknown input {tensor.get('name')!r:.60}; the model's input is {name!r}")
    if tensor.get("datatype") != "FP32":
        raise ServeError(
            f"input {name!r} has datatype {tensor.get('datatype')!r:.20}, expected FP32"
        )
    shape = tensor.get("shape")
    sample = spec.sample_shape
    if (
        not isinstance(shape, list)
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
        or len(shape) not in (1 + len(sample), 2 + len(sample))
        or shape[0] != 1
        or tuple(shape[-len(sample) :]) != sample
        or any(d < 0 for d in shape)
    ):
        dims = ", ".join(map(str, sample))
        raise ServeError(
            f"input {name!r} has shape {shape!r:.60}; expected [1, {dims}] for one step or "
            f"[1, T, {dims}] for T steps of one stream"
        )
    one_step = len(shape) == 1 + len(sample)
    steps = 1 if one_step else shape[1]
    count = steps * int(np.prod(sample))
    parameters = tensor.get("parameters") or {}
    size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size != 4 * count:
            raise ServeError(
                f"input {name!r}: binary_data_size {size!r:.20} for {count:,} FP32 values "
                f"({4 * count:,} bytes)"
            )
        if len(binary) != size:
            raise ServeError(f"the body holds {len(binary):,} bytes of binary data, not {size:,}")
        values: Any = np.frombuffer(binary, dtype="<f4")
    else:
        if binary:
            raise ServeError("binary data after the JSON, but no input has binary_data_size")
        values = tensor.get("data")
        if not isinstance(values, list):
            raise ServeError(f"input {name!r} has no data list (or binary_data_size)")
        try:
            values = np.asarray(values, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise ServeError(f"input {name!r}: data must be numbers (FP32)") from None
    if values.size != count:
        raise ServeError(f"input {name!r} has {values.size:,} values for shape {shape}")
    try:
        samples = as_samples(
            values.reshape(steps, *sample), sample, what=f"input {name!r}", leading=("step",),
            feature_names=spec.feature_names,
        )  # fmt: skip
    except (TypeError, ValueError) as e:
        raise ServeError(str(e), code="bad_sample") from None
    return samples, one_step


def _binary_output(
    request: Mapping[str, Any], parameters: Mapping[str, Any], spec: ModelSpec
) -> bool:
    binary = _flag(parameters, "binary_data_output")
    outputs = request.get("outputs")
    if outputs is None:
        return binary
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise ServeError("outputs must be a list of objects")
    for output in outputs:
        if output.get("name") != spec.io.output:
            raise ServeError(
                f"unknown output {output.get('name')!r:.60}; the model's output is "
                f"{spec.io.output!r}"
            )
        wanted = output.get("parameters") or {}
        if isinstance(wanted, dict) and wanted.get("binary_data") is True:
            binary = True
    return binary


def encode_infer_response(
    model_name: str,
    request: InferRequest,
    outputs: np.ndarray,
    output_name: str,
    parameters: Mapping[str, Any] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The response body and its extra headers for ``outputs`` ``(T, *output)``."""
    ys = np.ascontiguousarray(outputs, dtype="<f4")
    shape = [1, *ys.shape[1:]] if request.one_step else [1, *ys.shape]
    tensor: dict[str, Any] = {"name": output_name, "datatype": "FP32", "shape": shape}
    response: dict[str, Any] = {"model_name": model_name, "model_version": "1"}
    if request.request_id is not None:
        response["id"] = request.request_id
    if parameters:
        response["parameters"] = dict(parameters)
    if not request.binary_output:
        tensor["data"] = [float(v) for v in ys.ravel()]
        response["outputs"] = [tensor]
        return json.dumps(response).encode(), {"Content-Type": "application/json"}
    data = ys.tobytes()
    tensor["parameters"] = {"binary_data_size": len(data)}
    response["outputs"] = [tensor]
    head = json.dumps(response).encode()
    headers = {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(head))}
    return head + data, headers


def model_metadata(model_name: str, spec: ModelSpec) -> dict[str, Any]:
    """``GET /v2/models/{name}``: the data input and output (the state stays inside)."""
    sample = list(spec.sample_shape)
    out = [] if spec.output_size is None else [spec.output_size]
    return {
        "name": model_name,
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": spec.io.input, "datatype": "FP32", "shape": [1, -1, *sample]}],
        "outputs": [{"name": spec.io.output, "datatype": "FP32", "shape": [1, -1, *out]}],
        "parameters": {
            "sequence": True,
            "fingerprint": spec.fingerprint,
            "feature_names": list(spec.feature_names),
            "output_names": list(spec.output_names),
        },
    }
