"""ShardedPool.load does not trust its manifest: only pool files inside the directory
are read, refusals never quote a file's contents, and the manifest's numbers are
bounded and checked before anything costly (no Ray runtime is started for these)."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

pytest.importorskip("ray")

import stream_gru as sg
from stream_gru.distributed import MANIFEST, ShardedPool

SECRET = "TOPSECRET root:x:0:0 do not print me"


@pytest.fixture
def saved(gru_model, tmp_path):
    """A directory laid out as a save: one real pool file and a manifest to edit."""
    model = sg.load(gru_model.onnx)
    pool = model.pool()
    pool.open("a")
    pool.step({"a": np.ones(3)})
    directory = tmp_path / "fleet"
    directory.mkdir()
    pool.save(directory / "shard-0.abcd.pool")
    (tmp_path / "secret.txt").write_text(SECRET)
    (tmp_path / "elsewhere").mkdir()
    pool.save(tmp_path / "elsewhere" / "shard-0.abcd.pool")  # valid, but outside

    def manifest(**changes):
        doc = {
            "format": 1,
            "fingerprint": model.spec.fingerprint,
            "replicas": 128,
            "shards": [{"id": 0, "file": "shard-0.abcd.pool"}],
        }
        doc.update(changes)
        (directory / MANIFEST).write_text(json.dumps(doc))
        return directory

    return gru_model.onnx, manifest


@pytest.mark.parametrize(
    "name",
    [
        "../secret.txt",
        "/etc/passwd",
        "../elsewhere/shard-0.abcd.pool",
        "shard-0.abcd.pool/..",
        ".",
        "",
        "sub/shard-0.abcd.pool",
        "shard-0.abcd.pool\x00",
    ],
)
def test_only_pool_files_inside_the_directory_are_read(saved, name):
    model, manifest = saved
    directory = manifest(shards=[{"id": 0, "file": name}])
    with pytest.raises(sg.SnapshotError, match="only files inside it are read") as e:
        ShardedPool.load(model, directory)
    assert "TOPSECRET" not in str(e.value) and "root:" not in str(e.value)


def test_a_file_inside_that_is_not_a_pool_file_is_not_quoted(saved):
    model, manifest = saved
    directory = manifest()
    (directory / "shard-0.abcd.pool").write_text(SECRET * 4)
    with pytest.raises(sg.SnapshotError, match=r"it looks like text$") as e:
        ShardedPool.load(model, directory)
    assert "TOPSECRET" not in str(e.value)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"replicas": 1_000_000}, r"replicas must be an int in \[1, 4096\]"),
        ({"replicas": True}, "replicas must be an int"),
        (
            {"shards": [{"id": i, "file": "shard-0.abcd.pool"} for i in range(2000)]},
            "1 to 1024 entries",
        ),
        ({"shards": [{"id": 2**40, "file": "shard-0.abcd.pool"}]}, r"int in \[0, 2\*\*31\)"),
        (
            {
                "replicas": 4096,
                "shards": [{"id": i, "file": f"shard-{i}.a.pool"} for i in range(100)],
            },
            "100 shards x 4096 replicas is over 262,144 points",
        ),
        ({"shards": [{"id": 0, "file": "shard-0.abcd.pool"}] * 2}, "listed twice"),
        ({"format": 9}, "unknown format"),
    ],
    ids=[
        "replicas-a-million",
        "replicas-bool",
        "2000-shards",
        "huge-id",
        "too-many-points",
        "twice",
        "format",
    ],
)
def test_the_manifests_numbers_are_bounded_and_checked_first(saved, changes, message):
    model, manifest = saved
    start = time.perf_counter()
    with pytest.raises(sg.SnapshotError, match=message):
        ShardedPool.load(model, manifest(**changes))
    assert time.perf_counter() - start < 2


def test_a_manifest_that_is_deep_huge_or_a_pipe_is_refused_at_once(saved):
    model, manifest = saved
    directory = manifest()
    path = directory / MANIFEST
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(sg.SnapshotError, match="not a readable manifest"):
        ShardedPool.load(model, directory)
    path.write_text(" " * (2 << 20))
    with pytest.raises(sg.SnapshotError, match="over 1,048,576 bytes"):
        ShardedPool.load(model, directory)
    path.unlink()
    os.mkfifo(path)
    start = time.perf_counter()
    with pytest.raises(sg.SnapshotError, match=r"is a named pipe \(FIFO\)"):
        ShardedPool.load(model, directory)
    assert time.perf_counter() - start < 2
