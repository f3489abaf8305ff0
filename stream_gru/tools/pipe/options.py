"""How ``serve_lines`` reads its input (``PipeOptions``), what it counts
(``PipeStats``), and its one error (``PipeError``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DEFAULT_MAX_KEY_BYTES",
    "DEFAULT_MAX_LINE_BYTES",
    "DEFAULT_MAX_STREAMS",
    "HeaderMode",
    "PipeError",
    "PipeOptions",
    "PipeStats",
]

HeaderMode = Literal["auto", "yes", "no"]
DEFAULT_MAX_LINE_BYTES = 1 << 20
DEFAULT_MAX_STREAMS = 1_000_000
DEFAULT_MAX_KEY_BYTES = 1024
_NOT_DELIMITERS = frozenset('0123456789.+-eE "\r\n')


class PipeError(ValueError):
    """The options or the header do not fit the model (a missing column, say)."""


@dataclass(frozen=True)
class PipeOptions:
    """How ``serve_lines`` reads its input (see the module docstring).

    ``header``: is the first non-blank line a header ("auto": where it names the
    features, ``columns`` or ``key_column``). ``key_column``/``columns``: names, with a
    header only. ``label``: append a classifier's predicted class. ``delimiter``: one
    character, or None for the header's (a comma without one). ``max_line_bytes``: a
    longer line is skipped with a message. ``max_streams``: the most streams open at
    once; a new key beyond it is refused with a message (None: no limit).
    ``idle_timeout``: seconds after which an idle stream is closed and its state
    dropped (None: never). ``max_key_bytes``: a longer key is refused, so that
    ``max_streams`` bounds memory.
    """

    header: HeaderMode = "auto"
    key_column: str | None = None
    columns: tuple[str, ...] | None = None
    label: bool = False
    delimiter: str | None = None
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    max_streams: int | None = DEFAULT_MAX_STREAMS
    idle_timeout: float | None = None
    max_key_bytes: int = DEFAULT_MAX_KEY_BYTES

    def __post_init__(self) -> None:
        if self.columns is not None:
            object.__setattr__(self, "columns", tuple(str(c) for c in self.columns))
        if self.header not in ("auto", "yes", "no"):
            raise PipeError(f"header must be 'auto', 'yes' or 'no', got {self.header!r}")
        if self.header == "no" and (self.key_column is not None or self.columns is not None):
            raise PipeError("--key-column and --columns name columns of a header: not with "
                            "--header no")  # fmt: skip
        if self.delimiter is not None and (
            len(self.delimiter) != 1 or self.delimiter in _NOT_DELIMITERS
            or (not self.delimiter.isprintable() and self.delimiter != "\t")
        ):  # fmt: skip
            raise PipeError(
                f"the delimiter must be one character that no number or quoted field holds "
                f"(not a digit, '.', '+', '-', 'e', 'E', a space or a quote), got "
                f"{self.delimiter!r}"
            )
        if self.columns is not None:
            twice = sorted({c for c in self.columns if self.columns.count(c) > 1})
            if twice:
                raise PipeError(f"--columns names {twice} more than once")
            if self.key_column is not None and self.key_column in self.columns:
                raise PipeError(f"the key column {self.key_column!r} is also a feature column")
        if not (isinstance(self.max_key_bytes, int) and self.max_key_bytes >= 1):
            raise PipeError(f"max_key_bytes must be an int >= 1, got {self.max_key_bytes!r}")
        if not (isinstance(self.max_line_bytes, int) and self.max_line_bytes >= 16):
            raise PipeError(f"max_line_bytes must be an int >= 16, got {self.max_line_bytes!r}")
        if self.max_streams is not None and not (
            isinstance(self.max_streams, int) and self.max_streams >= 1
        ):
            raise PipeError(f"max_streams must be an int >= 1, got {self.max_streams!r}")
        if self.idle_timeout is not None and not (
            isinstance(self.idle_timeout, (int, float)) and self.idle_timeout > 0
        ):
            raise PipeError(f"idle_timeout must be a positive number, got {self.idle_timeout!r}")


@dataclass
class PipeStats:
    """Counters of one ``serve_lines`` run."""

    lines: int = 0
    outputs: int = 0
    rejected: int = 0
    streams: int = 0
    ticks: int = 0
    expired: int = 0

    @property
    def all_refused(self) -> bool:
        """Lines came, and not one gave an output."""
        return self.rejected > 0 and self.outputs == 0
