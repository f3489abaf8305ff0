"""The PyTorch network and its checkpoint file (``train`` extra).

``GRUModel`` is ``nn.GRU(batch_first=True)`` (or ``nn.LSTM``) with a linear head at
every time step. The input normalization, and for regression the target
de-normalization, are buffers inside the module, so the exported graph takes raw
features and returns user units (or, for classification, class probabilities).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..formats.files import atomic_write_bytes, open_regular
from .config import GRUConfig

__all__ = [
    "CHECKPOINT_FORMAT",
    "GRUConfig",
    "GRUModel",
    "Normalization",
    "default_names",
    "load_checkpoint",
    "model_facts",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = 1
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Normalization:
    """Per-feature mean/std of the training split; per-target ones for regression."""

    feature_mean: tuple[float, ...]
    feature_std: tuple[float, ...]
    target_mean: tuple[float, ...] = field(default_factory=tuple)
    target_std: tuple[float, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, list[float]]:
        return {k: list(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Sequence[float]]) -> Normalization:
        return cls(**{k: tuple(float(x) for x in d.get(k, ())) for k in _NORM_KEYS})

    @classmethod
    def identity(cls, cfg: GRUConfig) -> Normalization:
        targets = cfg.output_size if cfg.task == "regression" else 0
        return cls(
            (0.0,) * cfg.input_size, (1.0,) * cfg.input_size, (0.0,) * targets, (1.0,) * targets
        )


_NORM_KEYS = ("feature_mean", "feature_std", "target_mean", "target_std")


class GRUModel(nn.Module):
    """A recurrent network with a head at every step.

    ``forward(x, h0=None)`` takes raw features ``x`` of shape (B, T, input_size) and
    the initial state (for a GRU ``h0`` of shape (num_layers, B, hidden_size); for an
    LSTM the pair ``(h0, c0)``; zeros when ``None``) and returns ``(y, hn)`` with ``y``
    of shape (B, T, output_size): class probabilities (a softmax over the classes at
    every step) or regression outputs in user units. ``forward_normalized`` gives the
    raw head outputs (logits, or normalized targets) that the training loss sees.
    """

    feature_mean: torch.Tensor
    feature_std: torch.Tensor
    target_mean: torch.Tensor
    target_std: torch.Tensor

    def __init__(self, config: GRUConfig, normalization: Normalization | None = None) -> None:
        super().__init__()
        self.config = config
        rnn_cls = nn.GRU if config.cell == "gru" else nn.LSTM
        self.rnn = rnn_cls(
            config.input_size,
            config.hidden_size,
            num_layers=config.num_layers,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.head = nn.Linear(config.hidden_size, config.output_size)
        targets = config.output_size if config.task == "regression" else 0
        self.register_buffer("feature_mean", torch.zeros(config.input_size))
        self.register_buffer("feature_std", torch.ones(config.input_size))
        self.register_buffer("target_mean", torch.zeros(targets))
        self.register_buffer("target_std", torch.ones(targets))
        self.set_normalization(normalization or Normalization.identity(config))

    def set_normalization(self, norm: Normalization) -> None:
        """Copy the normalization into the buffers; a zero std becomes 1."""
        cfg = self.config
        expected = {
            "feature_mean": cfg.input_size,
            "feature_std": cfg.input_size,
            "target_mean": self.target_mean.numel(),
            "target_std": self.target_std.numel(),
        }
        for key, size in expected.items():
            values = getattr(norm, key)
            if len(values) != size:
                raise ValueError(f"normalization {key} has {len(values)} values, expected {size}")
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"normalization {key} has a non-finite value: {values}")
            t = torch.tensor(values, dtype=torch.float32)
            if key.endswith("_std"):
                t = torch.where(t.abs() < 1e-12, torch.ones_like(t), t)
            getattr(self, key).copy_(t)

    @property
    def normalization(self) -> Normalization:
        return Normalization(
            *(tuple(float(v) for v in getattr(self, k).tolist()) for k in _NORM_KEYS)
        )

    def initial_state(self, batch: int) -> State:
        """Zeros of the state's shape for ``batch`` streams."""
        cfg = self.config
        h = torch.zeros(cfg.num_layers, batch, cfg.hidden_size, device=self.feature_mean.device)
        return h if cfg.cell == "gru" else (h, torch.zeros_like(h))

    def forward_normalized(
        self, x: torch.Tensor, h0: State | None = None
    ) -> tuple[torch.Tensor, State]:
        """Outputs before de-normalization (what the training loss sees)."""
        z = (x - self.feature_mean) / self.feature_std
        out, hn = self.rnn(z, h0)
        return self.head(out), hn

    def forward(self, x: torch.Tensor, h0: State | None = None) -> tuple[torch.Tensor, State]:
        y, hn = self.forward_normalized(x, h0)
        if self.config.task == "regression":
            return y * self.target_std + self.target_mean, hn
        return torch.softmax(y, dim=-1), hn


def save_checkpoint(
    path: str | os.PathLike[str],
    model: GRUModel,
    *,
    feature_names: Sequence[str],
    output_names: Sequence[str],
    metrics: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
) -> Path:
    """Write the checkpoint atomically: config, weights, normalization, names, metrics."""
    cfg = model.config
    if len(feature_names) != cfg.input_size:
        raise ValueError(
            f"{len(feature_names)} feature names for input_size {cfg.input_size}: {feature_names}"
        )
    if len(output_names) != cfg.output_size:
        raise ValueError(
            f"{len(output_names)} output names for output_size {cfg.output_size}: {output_names}"
        )
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": asdict(cfg),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "normalization": model.normalization.to_dict(),
        "feature_names": [str(n) for n in feature_names],
        "output_names": [str(n) for n in output_names],
        "metrics": dict(metrics or {}),
        "training": dict(training or {}),
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike[str]) -> GRUModel:
    """Rebuild the network from a checkpoint, in eval mode.

    The returned module also carries ``feature_names``, ``output_names``, ``metrics``
    and ``training_info`` (a dict of facts about the run) as plain attributes.

    Raises ``ValueError`` naming the file for one that is not a checkpoint, or whose
    config, normalization or weights are invalid or do not fit each other; ``OSError``
    (``FileNotFoundError``, ...) for one that cannot be read.
    """
    path = Path(path)
    try:
        with open_regular(path) as f:  # a pipe or a device is refused, never read
            ckpt = torch.load(f, map_location="cpu", weights_only=True)
    except OSError:  # missing, a directory, unreadable: the caller reports it as such
        raise
    except Exception as e:  # torch's own message is long and suggests weights_only=False
        raise ValueError(
            f"{path} is not a stream-gru checkpoint: it looks like {_looks_like(path)}; "
            f"expected the checkpoint.pt that `stream-gru train` writes (torch.load: "
            f"{type(e).__name__})"
        ) from e
    if not isinstance(ckpt, dict) or "config" not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{path} is not a stream-gru checkpoint (no 'config'/'state_dict')")
    try:
        cfg = GRUConfig(**ckpt["config"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: the checkpoint's config is invalid: {e}") from e
    try:
        model = GRUModel(cfg, Normalization.from_dict(ckpt.get("normalization") or {}))
    except (AttributeError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: the checkpoint's normalization is invalid: {e}") from e
    try:
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, TypeError) as e:
        detail = " ".join(str(e).split())  # torch's message spans lines
        raise ValueError(f"{path}: the weights do not fit the checkpoint's config: {detail}") from e
    model.eval()
    info = {
        "feature_names": list(ckpt.get("feature_names") or default_names("x", cfg.input_size)),
        "output_names": list(ckpt.get("output_names") or default_names("y", cfg.output_size)),
        "metrics": dict(ckpt.get("metrics") or {}),
        "training_info": dict(ckpt.get("training") or {}),
    }
    for name, value in info.items():  # plain attributes, not parameters or buffers
        setattr(model, name, value)
    return model


def _looks_like(path: Path) -> str:
    from ..formats.sniff import looks_like

    try:
        with open_regular(path) as f:
            return looks_like(f.read(1 << 20))
    except OSError:
        return "a file that cannot be read"


def model_facts(model: GRUModel) -> dict[str, Any]:
    """Cell, task, sizes and names: what a model file's metadata must repeat."""
    cfg = model.config
    return {
        "cell": cfg.cell,
        "task": cfg.task,
        "input_size": cfg.input_size,
        "hidden_size": cfg.hidden_size,
        "num_layers": cfg.num_layers,
        "output_size": cfg.output_size,
        "feature_names": list(
            getattr(model, "feature_names", None) or default_names("x", cfg.input_size)
        ),
        "output_names": list(
            getattr(model, "output_names", None) or default_names("y", cfg.output_size)
        ),
    }


def default_names(prefix: str, n: int) -> list[str]:
    """``x0, x1, ...``: names for unnamed features or outputs."""
    return [f"{prefix}{i}" for i in range(n)]
