"""A ShardedPool's save: a folder with ``sharded-pool.json`` (the manifest) beside one
pool file per shard (``shard-<id>.<tag>.pool``, the pool-file format; docs/formats.md).

``write_save`` writes every shard's file first, then the manifest naming them
(atomically), so until the manifest is replaced a load reads the previous save whole.
``read_save`` reads the manifest first, bounded and checked, then only files of the
save's own name pattern inside the folder, and checks each as a pool of the model, and
each stream as on its shard, before any shard starts.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SnapshotError
from ..fleet.keys import key_token
from ..fleet.model import StreamingModel
from ..fleet.pool import StreamPool
from ..formats.files import NotARegularFile, atomic_write_bytes, open_regular, read_regular
from .ring import MAX_REPLICAS, HashRing, hash64

__all__ = ["MANIFEST", "MANIFEST_FORMAT", "SavedFleet", "read_save", "write_save"]

MANIFEST = "sharded-pool.json"
MANIFEST_FORMAT = 1

_MANIFEST_MAX_BYTES = 1 << 20
_MAX_SHARDS = 1024
_MAX_RING_POINTS = 1 << 18  # a ring of this many points builds in well under a second
_SHARD_FILE = re.compile(r"shard-[0-9]{1,9}\.[0-9a-f]{1,32}\.pool\Z")


def _read_manifest(directory: Path) -> tuple[dict[int, Path], int, str]:
    """A save's manifest, checked before anything else is read: (shard id -> pool file
    in ``directory``, replicas, fingerprint). ``SnapshotError`` naming what is wrong,
    never quoting a file's contents; only plain file names of the save's own pattern
    (``shard-<id>.<tag>.pool``) are accepted, so no path leads outside ``directory``."""
    path = directory / MANIFEST
    try:
        with open_regular(path) as f:
            raw = f.read(_MANIFEST_MAX_BYTES + 1)
    except (FileNotFoundError, NotARegularFile) as e:
        raise SnapshotError(f"{directory} holds no readable {MANIFEST}: {e}") from None
    if len(raw) > _MANIFEST_MAX_BYTES:
        raise SnapshotError(f"{path} is over {_MANIFEST_MAX_BYTES:,} bytes: not a manifest")
    try:
        manifest = json.loads(raw)
        entries = manifest["shards"]
        replicas, fingerprint, version = (
            manifest["replicas"],
            manifest["fingerprint"],
            manifest["format"],
        )
    except Exception as e:  # malformed JSON, nesting past the recursion limit, wrong types
        raise SnapshotError(f"{path} is not a readable manifest ({type(e).__name__})") from None
    if version != MANIFEST_FORMAT or not isinstance(fingerprint, str):
        raise SnapshotError(f"{path}: unknown format {version!r:.20} or a bad fingerprint")
    if (
        isinstance(replicas, bool)
        or not isinstance(replicas, int)
        or not (1 <= replicas <= MAX_REPLICAS)
    ):
        raise SnapshotError(f"{path}: replicas must be an int in [1, {MAX_REPLICAS}], "
                            f"got {replicas!r:.20}")  # fmt: skip
    if not isinstance(entries, list) or not 1 <= len(entries) <= _MAX_SHARDS:
        raise SnapshotError(f"{path}: the shard list must hold 1 to {_MAX_SHARDS} entries")
    if replicas * len(entries) > _MAX_RING_POINTS:
        raise SnapshotError(f"{path}: {len(entries)} shards x {replicas} replicas is over "
                            f"{_MAX_RING_POINTS:,} points on the ring")  # fmt: skip
    files: dict[int, Path] = {}
    for entry in entries:
        sid = entry.get("id") if isinstance(entry, dict) else None
        name = entry.get("file") if isinstance(entry, dict) else None
        if isinstance(sid, bool) or not isinstance(sid, int) or not 0 <= sid < 2**31:
            raise SnapshotError(f"{path}: a shard id must be an int in [0, 2**31), got "
                                f"{sid!r:.20}")  # fmt: skip
        if not isinstance(name, str) or not _SHARD_FILE.match(name):
            raise SnapshotError(
                f"{path}: shard {sid} names the file {name!r:.80}, which is not a pool file "
                f"of this directory (shard-<id>.<tag>.pool); only files inside it are read"
            )
        if sid in files:
            raise SnapshotError(f"{path}: shard {sid} is listed twice")
        files[sid] = directory / name
    return files, replicas, fingerprint


@dataclass(frozen=True)
class SavedFleet:
    """A save, read and checked: each shard's pool file, where each stream lives
    (key -> (shard, place on the ring)), and the ring's replicas."""

    blobs: dict[int, bytes]
    owners: dict[Any, tuple[int, int]]
    replicas: int


def write_save(
    directory: Path, blobs: Mapping[int, bytes], fingerprint: str, replicas: int
) -> None:
    """Write each shard's pool file into ``directory``, then the manifest naming them;
    then delete the files of earlier saves."""
    directory.mkdir(parents=True, exist_ok=True)
    tag = secrets.token_hex(4)
    files = {sid: f"shard-{sid}.{tag}.pool" for sid in blobs}
    for sid, blob in blobs.items():
        atomic_write_bytes(directory / files[sid], blob)
    manifest = {
        "format": MANIFEST_FORMAT,
        "fingerprint": fingerprint,
        "replicas": replicas,
        "shards": [{"id": sid, "file": files[sid]} for sid in sorted(files)],
    }
    atomic_write_bytes(directory / MANIFEST, json.dumps(manifest, indent=1).encode())
    for stale in directory.glob("shard-*.pool"):
        if stale.name not in files.values():
            stale.unlink(missing_ok=True)


def read_save(model: StreamingModel, directory: Path) -> SavedFleet:
    """``write_save``'s folder, read for ``model``: ``SnapshotError`` for a corrupt,
    foreign or missing file, or a stream in another shard's file."""
    files, replicas, fingerprint = _read_manifest(directory)
    if fingerprint != model.spec.fingerprint:
        raise SnapshotError(f"{directory} was saved by another model")
    blobs = {}
    for sid, path in files.items():
        try:
            blobs[sid] = read_regular(path)
        except (FileNotFoundError, NotARegularFile) as e:
            raise SnapshotError(
                f"sharded pool file {path} is missing or unreadable: {type(e).__name__}"
            ) from None
    keys = {}
    for sid, path in files.items():  # every file checked before the ring is built
        what = f"sharded pool file {str(path)!r}"
        pool = StreamPool.from_bytes(model, blobs[sid], graph="sequence", what=what, quote=False)
        keys[sid] = pool.keys()
    ring = HashRing(files, replicas=replicas)
    owners = {}
    for sid, path in files.items():
        for key in keys[sid]:
            h = hash64(key_token(key))
            if ring.owner(h) != sid:
                raise SnapshotError(f"stream {key!r} is in {path}, not its shard's file")
            owners[key] = (sid, h)
    return SavedFleet(blobs, owners, replicas)
