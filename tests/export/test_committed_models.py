"""The committed test models (``tests/models``) are what ``build.py`` makes today, and
their PyTorch reference numbers are PyTorch's: the runtime's torch-free tests cannot
rest on stale files."""

from __future__ import annotations

import json

import numpy as np
import pytest

import stream_gru as sg
from stream_gru.agreement import AgreementRule, assert_agree
from stream_gru.export import verify

from ..conftest import MODELS

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")

STALE = "tests/models is stale: rebuild it with `python tests/models/build.py` and commit"


def _metadata(path):
    proto = onnx.load(str(path))
    props = {p.key: p.value for p in proto.metadata_props}
    meta = json.loads(props.pop("stream_gru"))
    meta.pop("producer")  # the package version: a release does not make the files stale
    return meta, props


@pytest.mark.parametrize("name", ["gru", "gru_twin", "lstm", "fleet"])
def test_build_makes_the_committed_files(name, build_script, tmp_path):
    (recipe,) = [r for r in build_script.RECIPES if r.name == name]
    fresh = build_script.build(recipe, tmp_path)
    committed = MODELS / f"{name}.onnx"
    assert _metadata(fresh) == _metadata(committed), STALE  # weights' fingerprint, graphs' sha256
    fresh_ckpt = torch.load(tmp_path / f"{name}.pt", weights_only=False)
    committed_ckpt = torch.load(MODELS / f"{name}.pt", weights_only=False)
    for key, tensor in fresh_ckpt["state_dict"].items():
        assert torch.equal(tensor, committed_ckpt["state_dict"][key]), STALE


@pytest.mark.parametrize("name", ["gru", "gru_twin", "lstm", "fleet"])
def test_each_committed_model_verifies_against_its_checkpoint(name):
    report = verify(MODELS / f"{name}.onnx", MODELS / f"{name}.pt", steps=500)
    assert report.passed, report


@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_the_committed_reference_is_pytorchs(name, build_script, tmp_path):
    (recipe,) = [r for r in build_script.RECIPES if r.name == name]
    for suffix in (".pt", ".onnx"):
        (tmp_path / f"{name}{suffix}").write_bytes((MODELS / f"{name}{suffix}").read_bytes())
    fresh = np.load(build_script.write_reference(recipe, tmp_path))
    committed = np.load(MODELS / f"{name}.reference.npz")
    assert sorted(fresh.files) == sorted(committed.files)
    np.testing.assert_array_equal(fresh["x"], committed["x"])
    exact_to_float64 = AgreementRule(atol=1e-12, rtol=1e-12)
    for key in fresh.files:
        assert_agree(committed[key], fresh[key], rule=exact_to_float64, what=f"{name} {key}")
    assert sg.load(MODELS / f"{name}.onnx").spec.states  # a stateful model, as the test needs
