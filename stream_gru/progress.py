"""A progress bar for long work, or nothing: tqdm where it is installed and wanted.

tqdm comes with the ``train`` extra; the runtime does without, so this module only
imports it when a bar is asked for.
"""

from __future__ import annotations

from typing import Any

__all__ = ["progress_bar"]


class _NoBar:
    """What ``progress_bar`` gives where no bar is wanted or tqdm is missing."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(enabled: bool, total: int, desc: str, unit: str) -> Any:
    """A bar with ``update(n)`` and ``close()`` that disappears when done."""
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc=desc, unit=unit, leave=False)
