"""The export tests export afresh: ``gru_model``, ``gru_twin`` and ``lstm_model`` here
are built by ``tests/models/build.py`` in this session (the committed copies the other
tests use are checked against these in ``test_committed_models.py``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from ..conftest import MODELS, TinyModel

pytest.importorskip("torch")
pytest.importorskip("onnx")


def _build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_test_models", MODELS / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def build_script() -> ModuleType:
    return _build_script()


@pytest.fixture(scope="session")
def fresh_dir(tmp_path_factory: pytest.TempPathFactory, build_script: ModuleType) -> Path:
    out = tmp_path_factory.mktemp("fresh-models")
    for recipe in build_script.RECIPES:
        if recipe.name != "fleet":
            build_script.build(recipe, out)
    return out


def _fresh(out: Path, name: str, cell: str, task: str) -> TinyModel:
    return TinyModel(out / f"{name}.onnx", out / f"{name}.pt", cell, task, 3, 8, 2, 2)


@pytest.fixture(scope="session")
def gru_model(fresh_dir: Path) -> TinyModel:
    return _fresh(fresh_dir, "gru", "gru", "classification")


@pytest.fixture(scope="session")
def gru_twin(fresh_dir: Path) -> TinyModel:
    return _fresh(fresh_dir, "gru_twin", "gru", "classification")


@pytest.fixture(scope="session")
def lstm_model(fresh_dir: Path) -> TinyModel:
    return _fresh(fresh_dir, "lstm", "lstm", "regression")
