"""``StreamingModel``: a ``Model`` that also makes pools, and ``load``, which makes one.

``import stream_gru as sg; sg.load(path)`` gives a ``StreamingModel``: everything a
``core.model.Model`` does (streams, snapshots, its graphs) plus ``pool()`` and
``load_pool()``. The pool needs only the model's public contract, so
``StreamPool(model)`` works with any ``Model`` too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from ..core.model import Model
from ..core.session import Provider, SessionOptions
from ..core.spec import ModelIO
from .graphs import GraphChoice
from .pool import StreamPool

__all__ = ["StreamingModel", "load", "load_bytes"]


class StreamingModel(Model):
    """A loaded model: one shared session, from which streams and pools are made.

    ``spec`` describes the model; ``provider`` is the execution provider in use;
    ``session`` is the underlying ``onnxruntime.InferenceSession``.
    """

    def pool(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        graph: GraphChoice = "auto",
        state_on_device: bool | None = None,
    ) -> StreamPool:
        """A ``StreamPool``: many streams of this model, one batched call per tick.

        ``graph``: "step" runs the one-step graph the file carries (faster at large
        batch), "sequence" the file's main graph (the one streams run, so a pool's
        results equal its streams' bit for bit), "auto" the first where there is one.
        ``state_on_device``: keep the states in device memory between ticks (default:
        on CUDA, for models that carry the pooled one-step graph).
        """
        return StreamPool(self, clock=clock, graph=graph, state_on_device=state_on_device)

    def load_pool(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.monotonic,
        graph: GraphChoice = "auto",
        state_on_device: bool | None = None,
    ) -> StreamPool:
        """A pool saved by ``StreamPool.save``; its streams continue bit-exact."""
        return StreamPool.load(
            self, path, clock=clock, graph=graph, state_on_device=state_on_device
        )


def load(
    path: str | os.PathLike[str],
    *,
    provider: Provider = "auto",
    threads: int = 1,
    spinning: bool = False,
    io: ModelIO | None = None,
) -> StreamingModel:
    """Load an ONNX model for streaming.

    ``provider`` is "auto" (CUDA where usable, else CPU), "cpu" or "cuda"; ``threads``
    the intra-op threads; ``spinning`` lets idle threads spin (costs CPU while idle).
    This project's models describe themselves in their metadata; for any other stateful
    model pass ``io`` to say which tensors carry data and state.

    Raises ``ModelError`` for a file that is not a model this runtime can run (a
    directory, a pipe or a device among them), ``FileNotFoundError`` for a missing one.
    """
    return StreamingModel.load(path, provider=provider, threads=threads, spinning=spinning, io=io)


def load_bytes(
    data: bytes,
    *,
    source: str = "model",
    options: SessionOptions | None = None,
    io: ModelIO | None = None,
    path: Path | None = None,
) -> StreamingModel:
    """A model from the bytes of an ONNX file (see ``Model.from_bytes``)."""
    return StreamingModel.from_bytes(data, source=source, options=options, io=io, path=path)
