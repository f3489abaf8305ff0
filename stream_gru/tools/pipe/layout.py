"""Where a line's key and features are: by position without a header, by column name
with one (``LineLayout.from_header``); the delimiter a first line uses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ...core.spec import ModelSpec
from .options import PipeError, PipeOptions

__all__ = ["LineLayout", "sniff_delimiter"]

_DELIMITERS = (",", ";", "\t", "|")


@dataclass(frozen=True)
class LineLayout:
    """Where a line's key and features are: ``key`` and ``features`` index the fields;
    ``width`` is the number of fields a line has (None: a key and the features, no
    more). ``key_name`` heads the output's key column; ``delimiter`` separates fields."""

    key: int = 0
    features: tuple[int, ...] | None = None
    width: int | None = None
    key_name: str = "key"
    delimiter: str = ","

    @classmethod
    def from_header(
        cls, header: Sequence[str], spec: ModelSpec, options: PipeOptions, delimiter: str
    ) -> LineLayout:
        """The layout a header row names; ``PipeError`` naming what it lacks."""
        names = list(options.columns or spec.feature_names)
        if not names:
            raise PipeError("the model names no features: give --columns A,B,.. with the header")
        if len(names) != spec.input_size:
            raise PipeError(f"--columns names {len(names)} columns; the model takes "
                            f"{spec.input_size}")  # fmt: skip
        twice = sorted({h for h in header if header.count(h) > 1})
        if twice:
            raise PipeError(f"the header names column(s) {twice} more than once")
        missing = [n for n in names if n not in header]
        if missing:
            raise PipeError(
                f"the header has no column(s) {', '.join(map(repr, missing))} that the model "
                f"takes as features; its columns: {', '.join(header)}"
            )
        key_column = options.key_column
        if key_column is not None and key_column in names:
            raise PipeError(f"the key column {key_column!r} is also a feature the model takes")
        if key_column is None:
            recorded = spec.sequence_column
            if recorded is not None and recorded in header:
                key_column = recorded
            else:
                key_column = next((h for h in header if h not in names), None)
                if key_column is None:
                    raise PipeError("every column of the header is a feature: no key column")
        elif key_column not in header:
            raise PipeError(
                f"the header has no key column {key_column!r}; its columns: {', '.join(header)}"
            )
        return cls(
            key=header.index(key_column),
            features=tuple(header.index(n) for n in names),
            width=len(header),
            key_name=key_column,
            delimiter=delimiter,
        )


def sniff_delimiter(line: str) -> str:
    """The one of comma, semicolon, tab and bar that ``line`` holds most (a comma where
    it holds none)."""
    counts = {d: line.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","
