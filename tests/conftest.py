"""Shared fixtures: tiny models exported once per test session.

Models are built from seeded random weights with a non-trivial normalization, so the
normalization inside the graph is exercised; nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest


@dataclass(frozen=True)
class TinyModel:
    onnx: Path
    checkpoint: Path
    cell: str
    task: str
    input_size: int
    hidden_size: int
    num_layers: int
    output_size: int


def _make(tmp: Path, name: str, *, cell: str, task: str, seed: int, layers: int = 2) -> TinyModel:
    torch = pytest.importorskip("torch")
    from stream_gru.export import export_onnx
    from stream_gru.training.network import GRUConfig, GRUModel, Normalization, save_checkpoint

    torch.manual_seed(seed)
    cfg = GRUConfig(
        input_size=3, hidden_size=8, num_layers=layers, output_size=2, task=task, cell=cell
    )
    targets = ((100.0, -5.0), (20.0, 0.5)) if task == "regression" else ((), ())
    net = GRUModel(cfg, Normalization((1.0, -2.0, 0.5), (2.0, 0.5, 3.0), *targets))
    ckpt = save_checkpoint(
        tmp / f"{name}.pt",
        net,
        feature_names=["ax", "ay", "az"],
        output_names=["walk", "rest"] if task == "classification" else ["t1", "t2"],
        training={"target": "label" if task == "classification" else "t", "horizon": 0},
    )
    out = export_onnx(ckpt, tmp / f"{name}.onnx").path
    return TinyModel(out, ckpt, cell, task, 3, 8, layers, 2)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def gru_model(models_dir: Path) -> TinyModel:
    """A 2-layer GRU classifier, I=3, H=8, O=2."""
    return _make(models_dir, "gru", cell="gru", task="classification", seed=1)


@pytest.fixture(scope="session")
def gru_twin(models_dir: Path) -> TinyModel:
    """Same shapes as ``gru_model``, other weights."""
    return _make(models_dir, "gru_twin", cell="gru", task="classification", seed=2)


@pytest.fixture(scope="session")
def lstm_model(models_dir: Path) -> TinyModel:
    """A 2-layer LSTM regressor with target de-normalization, I=3, H=8, O=2."""
    return _make(models_dir, "lstm", cell="lstm", task="regression", seed=3)


@pytest.fixture(params=["gru", "lstm"])
def any_model(request: pytest.FixtureRequest) -> TinyModel:
    return request.getfixturevalue(f"{request.param}_model")  # type: ignore[no-any-return]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def fleet_model(models_dir: Path) -> TinyModel:
    """The fleet size the issues measure: a 1-layer GRU, H=64, I=8, O=4."""
    torch = pytest.importorskip("torch")
    from stream_gru.export import export_onnx
    from stream_gru.training.network import GRUConfig, GRUModel, save_checkpoint

    torch.manual_seed(11)
    net = GRUModel(GRUConfig(input_size=8, hidden_size=64, num_layers=1, output_size=4))
    ckpt = save_checkpoint(
        models_dir / "fleet.pt",
        net,
        feature_names=[f"f{i}" for i in range(8)],
        output_names=["a", "b", "c", "d"],
    )
    out = export_onnx(ckpt, models_dir / "fleet.onnx").path
    return TinyModel(out, ckpt, "gru", "classification", 8, 64, 1, 4)
