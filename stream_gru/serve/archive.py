"""Where expired streams wait for their key to come back: one snapshot file per key.

A key becomes a file name no key can turn into a path: ``k-`` and the hex of its UTF-8
bytes (keys of up to 100 bytes), else ``h-`` and its sha256. Files are written
atomically; a returning key's file is read and removed (``take``). Without an archive,
``ExpiredKeys`` remembers the most recent expired keys (a bounded number), so that an
expired key's first reply can say it started afresh.
"""

from __future__ import annotations

import collections
import hashlib
import os
from pathlib import Path

from ..formats.files import atomic_write_bytes, read_regular

__all__ = ["Archive", "ExpiredKeys"]

_SHORT_KEY_BYTES = 100
_SUFFIX = ".snapshot"


class Archive:
    """Snapshots of expired streams in ``directory`` (created with its parents)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        """The file of ``key``: always directly inside the directory."""
        raw = key.encode("utf-8", "surrogatepass")
        if len(raw) <= _SHORT_KEY_BYTES:
            name = "k-" + raw.hex()
        else:
            name = "h-" + hashlib.sha256(raw).hexdigest()
        return self.directory / (name + _SUFFIX)

    def put(self, key: str, snapshot: bytes) -> None:
        atomic_write_bytes(self.path(key), snapshot)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.path(key).is_file()

    def take(self, key: str) -> bytes | None:
        """The archived snapshot of ``key``, removed from the archive (None if none)."""
        path = self.path(key)
        try:
            blob = read_regular(path)
        except FileNotFoundError:
            return None
        path.unlink(missing_ok=True)
        return blob

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("*" + _SUFFIX))


class ExpiredKeys:
    """The last ``limit`` keys that expired without an archive (oldest forgotten first)."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._keys: collections.OrderedDict[str, None] = collections.OrderedDict()

    def add(self, key: str) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self.limit:
            self._keys.popitem(last=False)

    def pop(self, key: str) -> bool:
        """Whether ``key`` had expired (and forget it)."""
        return self._keys.pop(key, 0) is None
