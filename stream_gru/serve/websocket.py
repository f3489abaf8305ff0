"""``/v1/stream``: one gateway's WebSocket. Frames are read in order, their samples
queued in that order, and every frame is answered after the frames before it, so a
stream's replies come in the order of its samples.

Text frames are JSON: ``{"key": K, "x": [...]}`` or ``{"samples": {K: [...], ...}}``,
answered one text frame per sample: ``{"key": K, "y": [...], "step": n}`` (with
``"stream": "opened"`` or how else the stream was found, where it was not simply
continued) or ``{"key": K, "error": ..., "code": ...}``. Binary frames are the gateway
format of ``gateway.py``, answered one binary frame per frame. A frame that cannot be
read gets ``{"error": ..., "code": "bad_frame"}``; the connection stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..errors import BatcherClosedError, QueueFullError, ServeError
from ..fleet.ticks import check_samples
from .gateway import CODES, RequestKeys, decode_request, encode_reply
from .protocol import check_key
from .service import StreamService, Submitted

__all__ = ["WebSocketSession"]

# A frame's answer as messages, from what was submitted of it.
Render = Callable[["_Frame", "Submitted | None"], list[str | bytes]]


@dataclass(frozen=True)
class _Frame:
    """A frame's samples: its keys in order, the rows refused as read (a bad key, a key
    named twice, a bad sample), and the rest (``good`` rows, their samples ``xs``)."""

    keys: list[str]
    refused: dict[int, Exception]
    good: list[int]
    xs: np.ndarray


class WebSocketSession:
    """One connection to ``/v1/stream``."""

    def __init__(self, websocket: WebSocket, service: StreamService) -> None:
        self.websocket = websocket
        self.service = service
        self.spec = service.model.spec
        self.last_reply: asyncio.Task[None] | None = None
        self._last_keys: RequestKeys | None = None
        self._last_checked: tuple[dict[int, Exception], list[int]] = ({}, [])

    async def run(self) -> None:
        try:
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                started = time.perf_counter()
                try:
                    if message.get("bytes") is not None:
                        frame, render = self._binary_frame(message["bytes"]), self._binary_reply
                    elif message.get("text") is not None:
                        frame, render = self._json_frame(message["text"]), self._json_reply
                    else:
                        continue
                except ServeError as e:
                    self._answer(_Frame([], {}, [], np.zeros(0)), None, started, _frame_error(e))
                    continue
                submitted = await self._submit(frame)
                self._answer(frame, submitted, started, render)
        except WebSocketDisconnect:
            pass
        finally:
            if self.last_reply is not None:
                with contextlib.suppress(Exception):
                    await self.last_reply

    # -- reading frames -----------------------------------------------------------------
    def _json_frame(self, text: str) -> _Frame:
        try:
            message = json.loads(text)
        except (ValueError, RecursionError) as e:
            raise ServeError(
                f"the frame is not valid JSON: {str(e)[:120]}", code="bad_frame"
            ) from None
        if isinstance(message, dict) and isinstance(message.get("samples"), dict):
            raw = message["samples"]
        elif isinstance(message, dict) and "key" in message and "x" in message:
            raw = {message["key"]: message["x"]}
        else:
            raise ServeError('a frame is {"key": K, "x": [...]} or {"samples": {K: [...], ...}}',
                             code="bad_frame")  # fmt: skip
        keys = [str(k) for k in raw]
        refused: dict[int, Exception] = {}
        samples: dict[str, Any] = {}
        for row, (key, x) in enumerate(zip(keys, raw.values(), strict=True)):
            try:
                check_key(key)
            except ServeError as e:
                refused[row] = e
                continue
            samples[key] = np.asarray(x, np.float64) if _is_flat_numbers(x) else x
        good_keys, xs, rejected = check_samples(self.spec, samples)
        row_of = {key: row for row, key in enumerate(keys)}
        for key, why in rejected.items():
            refused[row_of[key]] = ValueError(why)
        return _Frame(keys, refused, [row_of[k] for k in good_keys], xs)

    def _binary_frame(self, data: bytes) -> _Frame:
        keys, xs = decode_request(data, self.spec.input_size, self._last_keys)
        if keys is not self._last_keys:  # new keys: check them (a gateway resends the same)
            self._last_keys = keys
            self._last_checked = self._check_keys(keys.keys)
        refused, good = self._last_checked
        return _Frame(keys.keys, dict(refused), good, xs[good] if refused else xs)

    @staticmethod
    def _check_keys(keys: list[str]) -> tuple[dict[int, Exception], list[int]]:
        refused: dict[int, Exception] = {}
        seen: set[str] = set()
        for row, key in enumerate(keys):
            try:
                check_key(key)
            except ServeError as e:
                refused[row] = e
                continue
            if key in seen:
                refused[row] = ServeError(f"key {key!r:.80} is named twice in one frame",
                                          code="bad_key")  # fmt: skip
            seen.add(key)
        return refused, [row for row in range(len(keys)) if row not in refused]

    async def _submit(self, frame: _Frame) -> Submitted | None:
        if not frame.good:
            return None
        keys = [frame.keys[row] for row in frame.good]
        try:
            return await self.service.submit_rows(keys, frame.xs)
        except (BatcherClosedError, RuntimeError):
            closing = ServeError("the server is shutting down", status=503, code="closing")
            return Submitted(keys, None, dict.fromkeys(range(len(keys)), closing), {})

    # -- answering ----------------------------------------------------------------------
    def _answer(
        self, frame: _Frame, submitted: Submitted | None, started: float, render: Render
    ) -> None:
        """Answer a frame once its samples have run and the frames before it are
        answered."""
        previous = self.last_reply
        self.last_reply = asyncio.get_running_loop().create_task(
            self._reply(frame, submitted, previous, started, render)
        )

    async def _reply(
        self,
        frame: _Frame,
        submitted: Submitted | None,
        previous: asyncio.Task[None] | None,
        started: float,
        render: Render,
    ) -> None:
        if submitted is not None and submitted.future is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait([submitted.future])
        if previous is not None:
            with contextlib.suppress(Exception):
                await previous
        messages = render(frame, submitted)
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            for message in messages:
                if isinstance(message, bytes):
                    await self.websocket.send_bytes(message)
                else:
                    await self.websocket.send_text(message)
        self.service.metrics.request("websocket", time.perf_counter() - started)

    def _results(
        self, frame: _Frame, submitted: Submitted | None
    ) -> tuple[np.ndarray, np.ndarray, dict[int, Exception], Mapping[str, str]]:
        """Every row of the frame: outputs, step counts, the failed rows' exceptions,
        and how the streams not simply continued were found."""
        n = len(frame.keys)
        tail = () if self.spec.output_size is None else (self.spec.output_size,)
        outputs = np.zeros((n, *tail), np.float32)
        steps = np.zeros(n, np.int64)
        errors = dict(frame.refused)
        statuses: Mapping[str, str] = {}
        if submitted is not None:
            ys, counts, failed = submitted.arrays(tail)
            good = np.asarray(frame.good, np.int64)
            outputs[good], steps[good] = ys, counts
            errors.update({frame.good[i]: e for i, e in failed.items()})
            statuses = submitted.statuses
        for error in errors.values():
            if not isinstance(error, ServeError):  # ServeErrors are counted where raised
                self.service.metrics.reject(_reason(error))
        return outputs, steps, errors, statuses

    def _json_reply(self, frame: _Frame, submitted: Submitted | None) -> list[str | bytes]:
        outputs, steps, errors, statuses = self._results(frame, submitted)
        out: list[str | bytes] = []
        for row, key in enumerate(frame.keys):
            error = errors.get(row)
            if error is not None:
                message: dict[str, Any] = {"key": key, "error": _message(error),
                                           "code": _code(error)}  # fmt: skip
            else:
                message = {"key": key, "y": outputs[row].tolist(), "step": int(steps[row])}
                if key in statuses:
                    message["stream"] = statuses[key]
            out.append(json.dumps(message))
        return out

    def _binary_reply(self, frame: _Frame, submitted: Submitted | None) -> list[str | bytes]:
        outputs, steps, errors, statuses = self._results(frame, submitted)
        status = np.zeros(len(frame.keys), np.uint8)
        messages = {}
        for row, error in errors.items():
            code = _code(error)
            status[row] = CODES.index(code) if code in CODES else len(CODES) - 1
            messages[row] = _message(error)
        notes = {}
        if statuses:
            notes = {row: statuses[k] for row, k in enumerate(frame.keys) if k in statuses}
        return [encode_reply(status, steps, outputs, messages, notes)]


def _is_flat_numbers(x: Any) -> bool:
    return isinstance(x, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in x
    )


def _frame_error(error: ServeError) -> Render:
    return lambda _, __: [json.dumps({"error": str(error), "code": error.code})]


def _message(error: BaseException) -> str:
    return str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)


def _code(error: BaseException) -> str:
    if isinstance(error, ServeError):
        return error.code
    if isinstance(error, KeyError):
        return "not_open"
    if isinstance(error, QueueFullError):
        return "queue_full"
    if isinstance(error, BatcherClosedError):
        return "closing"
    return "bad_sample"


def _reason(error: BaseException) -> str:
    code = _code(error)
    return code if code in ("not_open", "queue_full", "closing") else "bad_sample"
