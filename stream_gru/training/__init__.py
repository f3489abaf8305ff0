"""Training (the ``train`` extra: torch): the network's shape and the options of
training (``config``, torch-free, so the command line reads their defaults without
torch), the PyTorch network and its checkpoint file (``network``), and the training
loop (``loop``).

    from stream_gru.training import GRUConfig, GRUModel, train, load_checkpoint

Imports: torch (not in ``config``); from the package ``data``, ``formats`` and the base
modules. Never the runtime parts (checked by ``make lint``). The names below load their
module, and torch, on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .config import GRUConfig, TrainOptions

__all__ = [
    "GRUConfig",
    "GRUModel",
    "TrainOptions",
    "TrainResult",
    "evaluate",
    "load_checkpoint",
    "train",
]

_LAZY = {
    "GRUModel": "network",
    "load_checkpoint": "network",
    "TrainResult": "loop",
    "evaluate": "loop",
    "train": "loop",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
