"""Serving a fleet: the ``Batcher`` (samples from many coroutines, ticked within a
deadline; runtime only), and ``stream-gru serve`` (the ``serve`` extra: the KServe v2
protocol with Triton's sequence extension, a WebSocket endpoint, admin by key,
Prometheus metrics), whose modules import starlette and uvicorn and are not imported
here.
"""

from .batcher import Batcher, TickReport

__all__ = ["Batcher", "TickReport"]
