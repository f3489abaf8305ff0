"""How to install an optional part (an extra): the command to show a user.

Installed from a package index, an extra is ``pip install 'stream-gru[train]'``. From
a checkout of the repository, the README's commands apply instead: ``make install``,
or pip with torch pinned first (the Makefile's pin), so that pip does not pick a
CUDA build of torch by itself. Needs nothing but the standard library.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["checkout_root", "install_hint"]

_PACKAGE_DIR = Path(__file__).resolve().parent  # stream_gru/


def checkout_root() -> Path | None:
    """The repository this package runs from (an editable or in-place install), or
    None for an installed package."""
    root = _PACKAGE_DIR.parent
    try:
        project = (root / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return None
    return root if re.search(r'(?m)^name\s*=\s*"stream-gru"', project) else None


def _torch_pin(root: Path) -> str:
    """The torch requirement the checkout's Makefile pins (``TORCH := torch==...``)."""
    try:
        makefile = (root / "Makefile").read_text(encoding="utf-8")
    except OSError:
        return "torch"
    found = re.search(r"(?m)^TORCH\s*:?=\s*(\S+)", makefile)
    return found.group(1) if found else "torch"


def install_hint(extra: str) -> str:
    """The command that installs ``extra`` ("train", "ray", "cpu", "gpu", ...)."""
    root = checkout_root()
    if root is None:
        return f"pip install 'stream-gru[{extra}]'"
    torch = f"{_torch_pin(root)} " if extra == "train" else ""
    pinned = " (torch first and pinned, as the README says)" if torch else ""
    return (
        f"from the checkout {root}: make install, or pip install {torch}'{root}[{extra}]'{pinned}"
    )
