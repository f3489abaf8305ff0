"""stream-gru: run recurrent ONNX models step by step, one stream or thousands.

The runtime needs only numpy and onnxruntime::

    import stream_gru as sg
    model = sg.load("model.onnx")
    s = model.stream()
    y = s.step(x)

Training and export live in ``stream_gru.training`` and ``stream_gru.export`` (the
``train`` extra: torch and onnx); they are never imported from here.
"""

from .errors import ModelError, SnapshotError, StreamGRUError
from .pool import PoolStats, StreamPool, TickResult
from .runtime import Stream, StreamingModel, load
from .spec import ModelIO, ModelSpec, StatePair

__version__ = "0.1.0"

__all__ = [
    "ModelError",
    "ModelIO",
    "ModelSpec",
    "PoolStats",
    "SnapshotError",
    "StatePair",
    "Stream",
    "StreamGRUError",
    "StreamPool",
    "StreamingModel",
    "TickResult",
    "__version__",
    "load",
]
