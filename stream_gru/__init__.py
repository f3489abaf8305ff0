"""stream-gru: run recurrent ONNX models step by step, one stream or thousands.

The runtime needs only numpy and onnxruntime::

    import stream_gru as sg
    model = sg.load("model.onnx")
    s = model.stream()
    y = s.step(x)

Training and export live in ``stream_gru.training`` and ``stream_gru.export`` (the
``train`` extra: torch and onnx); they are never imported from here.
"""

from ._version import __version__
from .core.spec import ModelIO, ModelSpec, StatePair
from .core.stream import Stream
from .errors import ModelError, SnapshotError, StreamGRUError
from .fleet.model import StreamingModel, load
from .fleet.pool import StreamPool
from .fleet.ticks import PoolStats, TickResult

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
