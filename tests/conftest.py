"""Shared fixtures: the small models in ``tests/models`` (committed, rebuilt by
``tests/models/build.py``), so the runtime's tests need no torch.

Each session copies them into a temporary folder: tests may write beside a model or
tamper with a copy, never with the committed files.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

# STREAM_GRU_TEST_WITHOUT=torch,onnx runs the tests as where those are not installed
# (an import of them raises ImportError): tests/test_layout.py runs tests/core so.
for _name in filter(None, os.environ.get("STREAM_GRU_TEST_WITHOUT", "").split(",")):
    sys.modules[_name.strip()] = None  # type: ignore[assignment]

import numpy as np  # noqa: E402
import pytest  # noqa: E402

MODELS = Path(__file__).resolve().parent / "models"


@dataclass(frozen=True)
class TinyModel:
    onnx: Path
    checkpoint: Path  # a torch checkpoint: only the export and training tests read it
    cell: str
    task: str
    input_size: int
    hidden_size: int
    num_layers: int
    output_size: int


def _copy(
    tmp: Path, name: str, cell: str, task: str, sizes: tuple[int, int, int, int]
) -> TinyModel:
    """``tests/models/NAME.*`` (the model, its checkpoint, PyTorch's reference numbers
    where there are some) copied into ``tmp``."""
    for path in MODELS.glob(f"{name}.*"):
        if path.suffix != ".py":
            shutil.copyfile(path, tmp / path.name)
    return TinyModel(tmp / f"{name}.onnx", tmp / f"{name}.pt", cell, task, *sizes)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def gru_model(models_dir: Path) -> TinyModel:
    """A 2-layer GRU classifier, I=3, H=8, O=2."""
    return _copy(models_dir, "gru", "gru", "classification", (3, 8, 2, 2))


@pytest.fixture(scope="session")
def gru_twin(models_dir: Path) -> TinyModel:
    """Same shapes as ``gru_model``, other weights."""
    return _copy(models_dir, "gru_twin", "gru", "classification", (3, 8, 2, 2))


@pytest.fixture(scope="session")
def lstm_model(models_dir: Path) -> TinyModel:
    """A 2-layer LSTM regressor with target de-normalization, I=3, H=8, O=2."""
    return _copy(models_dir, "lstm", "lstm", "regression", (3, 8, 2, 2))


@pytest.fixture(scope="session")
def fleet_model(models_dir: Path) -> TinyModel:
    """The fleet size the issues measure: a 1-layer GRU, H=64, I=8, O=4."""
    return _copy(models_dir, "fleet", "gru", "classification", (8, 64, 1, 4))


@pytest.fixture(params=["gru", "lstm"])
def any_model(request: pytest.FixtureRequest) -> TinyModel:
    return request.getfixturevalue(f"{request.param}_model")  # type: ignore[no-any-return]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
