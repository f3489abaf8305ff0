"""The file formats: snapshots, pool files (one binary record format), the weights'
fingerprint, atomic writes, and what a wrong file looks like. Files written by
stream-gru 0.1.0, before the package took its layered shape, load and continue
exactly (``tests/formats/files``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import stream_gru as sg
from stream_gru.agreement import assert_agree
from stream_gru.errors import SnapshotError
from stream_gru.formats import snapshot
from stream_gru.formats.fingerprint import fingerprint_model_bytes
from stream_gru.formats.sniff import looks_like

FILES = Path(__file__).resolve().parent / "files"


def test_a_stream_snapshot_of_0_1_0_restores_and_continues_exactly(gru_model):
    """Written by stream-gru 0.1.0 (commit 1841acf) from tests/models/gru.onnx."""
    expected = np.load(FILES / "expected-0.1.0.npz")
    s = sg.load(gru_model.onnx).restore((FILES / "gru-stream-0.1.0.snapshot").read_bytes())
    assert s.steps == 10
    got = np.stack([s.step(x) for x in expected["x"][10:]])
    np.testing.assert_array_equal(got, expected["stream_next"])


@pytest.mark.parametrize("graph", ["auto", "sequence"])
def test_a_pool_file_of_0_1_0_loads_and_continues_exactly(gru_model, graph):
    expected = np.load(FILES / "expected-0.1.0.npz")
    pool = sg.load(gru_model.onnx).load_pool(FILES / "gru-pool-0.1.0.sgpool", graph=graph)
    keys = ["pump-1", 7, ("site", 3)]
    assert [repr(k) for k in pool] == expected["pool_keys"].tolist()
    assert all(pool.steps(k) == 5 for k in keys)
    got = pool.step_batch(keys, expected["x"][5:8])
    if graph == "auto":  # the graph 0.1.0's pool ran (the one-step graph): bit for bit
        np.testing.assert_array_equal(got, expected["pool_next"])
    else:  # the sequence graph: the same numbers by the agreement rule
        assert_agree(got, expected["pool_next"], what="outputs")


def test_snapshots_round_trip_and_name_what_they_are():
    arrays = {"h0": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.array([7], np.int64)}
    blob = snapshot.encode(b"STRM", "f" * 64, arrays, {"steps": 3})
    got, extra = snapshot.decode(blob, b"STRM", "f" * 64)
    assert extra == {"steps": 3} and got.keys() == arrays.keys()
    for name, a in arrays.items():
        np.testing.assert_array_equal(got[name], a)
        assert got[name].dtype == a.dtype
    with pytest.raises(SnapshotError, match=r"expected a stream-gru pool file.*model\.restore"):
        snapshot.decode(blob, b"POOL", "f" * 64, what="pool file")
    with pytest.raises(SnapshotError, match=r"another model|fingerprint"):
        snapshot.decode(blob, b"STRM", "e" * 64)
    with pytest.raises(SnapshotError, match="checksum"):
        snapshot.decode(blob[:-1] + bytes([blob[-1] ^ 1]), b"STRM", "f" * 64)
    with pytest.raises(TypeError, match="cannot snapshot array 'b' of dtype bool"):
        snapshot.encode(b"STRM", "f", {"b": np.zeros(2, bool)})


@pytest.mark.parametrize(
    ("data", "phrase"),
    [
        (b"PK\x03\x04" + b"\0" * 40, "zip"),
        (b"\x93NUMPY\x01\x00", "NumPy .npy"),
        (b"time,machine_id,temp\n1,2,3\n", "text: 'time,machine_id,temp"),
        (b"", "an empty file"),
        (b"RIFF\0\0\0\0WAVE", ".wav"),
    ],
)
def test_a_wrong_file_is_named_for_what_it_looks_like(data, phrase):
    assert phrase in looks_like(data)
    assert "machine_id" not in looks_like(data, quote=False)


def test_the_committed_models_fingerprints_are_their_weights():
    for path in sorted((Path(__file__).resolve().parents[1] / "models").glob("*.onnx")):
        spec = sg.load(path).spec
        assert spec.fingerprint == fingerprint_model_bytes(path.read_bytes()), path.name
        assert len(spec.fingerprint) == 64


def test_a_pool_file_is_one_record_of_the_snapshot_format(gru_model, tmp_path):
    pool = sg.load(gru_model.onnx).pool()
    pool.open_many(["a", "b"])
    pool.save(tmp_path / "p.sgpool")
    blob = (tmp_path / "p.sgpool").read_bytes()
    assert blob[:8] == b"SGRUPOOL"
    header_length = int.from_bytes(blob[12:16], "little")
    header = json.loads(blob[16 : 16 + header_length])
    assert header["fingerprint"] == pool.model.spec.fingerprint


def test_atomic_writes_keep_or_give_normal_permissions(tmp_path):
    import os
    import stat

    from stream_gru.formats.files import atomic_write_bytes

    umask = os.umask(0o022)
    try:
        fresh = atomic_write_bytes(tmp_path / "new.bin", b"x")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
        kept = tmp_path / "old.bin"
        kept.write_bytes(b"old")
        kept.chmod(0o640)
        atomic_write_bytes(kept, b"new")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o640 and kept.read_bytes() == b"new"
    finally:
        os.umask(umask)


def test_the_fingerprint_covers_weights_kept_in_constant_nodes():
    """A graph without initializers (Silero VAD keeps its weights in Constant nodes
    inside an If) is fingerprinted by the whole graph, not by the hash of nothing."""
    pytest.importorskip("onnx")
    import hashlib

    from onnx import TensorProto, helper

    from stream_gru.formats.fingerprint import fingerprint_model_bytes

    def model(w: float, **meta: str):
        value = helper.make_tensor("w", TensorProto.FLOAT, [1], [w])
        nodes = [helper.make_node("Constant", [], ["w"], value=value)]
        nodes.append(helper.make_node("Add", ["x", "w"], ["y"]))
        io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in "xy"]
        m = helper.make_model(helper.make_graph(nodes, "g", io[:1], io[1:]))
        helper.set_model_props(m, meta)
        return fingerprint_model_bytes(m.SerializeToString())

    one, two = model(1.0), model(2.0)
    assert one != two and hashlib.sha256(b"").hexdigest() not in (one, two)
    assert model(1.0, note="metadata is not part of the weights") == one
