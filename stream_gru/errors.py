"""The package's own errors.

Bad values raise ``ValueError``, wrong types ``TypeError`` and unknown stream keys
``KeyError``, as Python users expect. The classes here cover what the standard ones
do not: a model file this runtime cannot run, and a snapshot or pool file that is
corrupt or belongs to another model.
"""

from __future__ import annotations

__all__ = [
    "BatcherClosedError",
    "CompareError",
    "ExportError",
    "ModelError",
    "PartialTickError",
    "QueueFullError",
    "ServeError",
    "ShardError",
    "SnapshotError",
    "StreamGRUError",
]


class StreamGRUError(Exception):
    """Base class of every error raised by stream_gru itself."""


class ModelError(StreamGRUError):
    """A model file that cannot be run: unreadable, not ONNX, without this
    project's metadata, or with metadata that does not match its graph."""


class SnapshotError(StreamGRUError):
    """A snapshot or pool file that is corrupt, truncated, of an unknown format
    version, or made by another model (its weights' fingerprint differs)."""


class ExportError(StreamGRUError):
    """An exported graph failed the structural checks; nothing was written."""


class CompareError(StreamGRUError):
    """Two models that ``stream-gru compare`` cannot compare (other features, outputs or
    task), or data that lacks the columns they need."""


class PartialTickError(StreamGRUError):
    """onnxruntime failed partway through a tick run in blocks (a tick of more than
    ``block_rows`` streams; inputs are checked before any block runs, so this is a
    failure of the runtime itself, out of memory say). The streams of the blocks before
    the failure stepped, step counts included: ``stepped`` lists their keys; the others
    did not change. The error onnxruntime raised is the ``__cause__``."""

    def __init__(self, message: str, stepped: list[object]) -> None:
        super().__init__(message)
        self.stepped = stepped


class ShardError(StreamGRUError):
    """A shard of a ``ShardedPool`` died and could not be restarted, or refused what the
    driver sent: the pool can no longer vouch for its streams and refuses every call."""


class QueueFullError(StreamGRUError):
    """A ``Batcher``'s queue holds ``max_queue`` samples already: the sample was refused
    at once, nothing queued (a server answers 503 with ``Retry-After``)."""


class BatcherClosedError(StreamGRUError):
    """A sample given to a ``Batcher`` that is closing or closed."""


class ServeError(StreamGRUError):
    """A request ``stream-gru serve`` refuses, with the HTTP status it answers
    (``status``) and a machine-readable ``code`` (``"bad_sample"``, say)."""

    def __init__(self, message: str, status: int = 400, code: str = "bad_request") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
