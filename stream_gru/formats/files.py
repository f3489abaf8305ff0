"""Files in and out: atomic writes, and reads of regular files only.

A write is atomic: the old file stays whole until the new one is complete. A file is
written only into a folder that exists: a mistyped path fails with an error naming the
missing folder rather than growing a new tree (as root, anywhere). The commands that
are given an output *directory* (``train --out DIR``, ``demo``, ``compare DATA
--out``, ``ShardedPool.save(DIR)``) create that directory, parents included, as
``mkdir -p`` does. Writing to a symbolic link writes through to its target (the link
stays a link, the target gets the new bytes atomically).

A read takes regular files only: a directory, a named pipe (which would block until a
writer comes), a device such as ``/dev/zero`` (which never ends) or a socket is
refused at once with a message naming what it is.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "NotARegularFile",
    "atomic_write_bytes",
    "not_a_regular_file",
    "open_regular",
    "read_regular",
]

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class NotARegularFile(OSError):
    """A path to read that is a directory, a pipe, a device or a socket: ``kind`` says
    which ("a named pipe (FIFO)", ...)."""

    def __init__(self, path: str | os.PathLike[str], kind: str) -> None:
        super().__init__(f"{os.fspath(path)} is {kind}, not a regular file")
        self.path = os.fspath(path)
        self.kind = kind


def not_a_regular_file(mode: int) -> str | None:
    """What a file of ``st_mode`` is, where it is not a regular file (else None)."""
    if stat.S_ISREG(mode):
        return None
    return next((what for test, what in _KINDS if test(mode)), "not a regular file")


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """Open a regular file for reading in binary mode. ``FileNotFoundError`` for a
    missing one, ``NotARegularFile`` naming what it is for a directory, a pipe, a
    device or a socket; never blocks on a named pipe."""
    try:
        kind = not_a_regular_file(os.stat(path).st_mode)  # a folder cannot be opened
    except FileNotFoundError:
        raise
    if kind is not None:
        raise NotARegularFile(path, kind)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        kind = not_a_regular_file(os.fstat(fd).st_mode)  # replaced since the stat?
        if kind is not None:
            raise NotARegularFile(path, kind)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a regular file (see ``open_regular``)."""
    with open_regular(path) as f:
        return f.read()


def _default_mode() -> int:
    """0o666 less the process umask: the mode ``open()`` would give a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_NEW_FILE_MODE = _default_mode()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over
    ``path`` (and fsync the folder), so a crash leaves either the old or the new file.
    The file keeps the old file's permissions, or gets those of a new file.
    ``FileNotFoundError`` where the folder does not exist (it is not created). A
    symbolic link is written through: its target gets the bytes."""
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise FileNotFoundError(f"cannot write {path}: the folder {folder} {what}")
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = _NEW_FILE_MODE
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return path
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
    return path
