"""``stream-gru run``: the real-time pipe (``tools.pipe``) on stdin or a file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..pipe import DEFAULT_MAX_KEY_BYTES, DEFAULT_MAX_LINE_BYTES, DEFAULT_MAX_STREAMS
from .common import (
    EXIT_BROKEN_PIPE,
    HelpFormatter,
    non_negative_int,
    number,
    one_character,
    positive_float,
    positive_int,
    split_names,
    stdout_to_devnull,
)

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "run",
        help="a real-time pipe: CSV lines in ('key,f1,..' or your own CSV), 'key,y1,..' out",
        description=(
            "Read lines 'key,f1,...,fI' from stdin (or --input), one stream per key, and "
            "write 'key,y1,...,yO' per input line, flushed at once (%%.9g: float32 "
            "round-trips). A CSV with a header works too: the first line is taken as a "
            "header where it names the model's features (--header), the key comes from "
            "--key-column (default: the column the training cut recordings by, else the "
            "first non-feature column), the features from the model's feature names "
            "(--columns), other columns are ignored, and the output gets a header line. "
            "Keys are taken byte for byte; fields are read as CSV reads them (a quoted key "
            "keeps its commas). A bad line gets one message on stderr naming its line "
            "number, changes no stream, and processing goes on; blank lines are skipped. "
            "Exit 1 when every line was refused. When the reader of stdout goes away "
            "(| head -1), it stops quietly with exit status 141, like a process ended by "
            "SIGPIPE."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("model", type=Path, metavar="MODEL.onnx")
    p.add_argument("--input", type=Path, metavar="FILE", help="read lines from FILE, not stdin")
    p.add_argument(
        "--header",
        choices=("auto", "yes", "no"),
        default="auto",
        help="is the first line a header? auto: where it names the model's features",
    )
    p.add_argument("--key-column", metavar="NAME", help="with a header: the key's column")
    p.add_argument(
        "--columns",
        type=split_names,
        metavar="A,B,..",
        help="with a header: the feature columns, in the model's order (default: the "
        "model's feature names)",
    )
    p.add_argument(
        "--label", action="store_true", help="append a classifier's predicted class to each line"
    )
    p.add_argument(
        "--delimiter",
        type=one_character,
        help="the field delimiter (default: the first line's: comma, semicolon, tab or bar)",
    )
    p.add_argument(
        "--max-line-bytes",
        type=lambda v: int(number(v, int, lambda n: n >= 16, "an integer >= 16")),
        default=DEFAULT_MAX_LINE_BYTES,
        help="a longer line is skipped unread, with a message",
    )
    p.add_argument(
        "--max-key-bytes",
        type=positive_int,
        default=DEFAULT_MAX_KEY_BYTES,
        help="a longer key is refused, with a message (so --max-streams bounds memory)",
    )
    p.add_argument(
        "--max-streams",
        type=non_negative_int,
        default=DEFAULT_MAX_STREAMS,
        help="the most streams open at once; a new key beyond it is refused with a message "
        "(0: no limit)",
    )
    p.add_argument(
        "--idle-timeout",
        type=positive_float,
        metavar="SECONDS",
        help="close streams idle this long (their state is dropped; a key that comes back "
        "starts afresh); default: never",
    )
    p.add_argument(
        "--provider",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto: CUDA where usable, else CPU",
    )
    p.add_argument(
        "--threads", type=non_negative_int, default=1,
        help="intra-op threads; 0: onnxruntime's choice",
    )  # fmt: skip
    p.add_argument("--summary", action="store_true", help="print a summary on stderr at the end")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ...fleet.model import load
    from ...formats.files import open_regular
    from ..pipe import PipeOptions, serve_lines

    options = PipeOptions(
        header=args.header,
        key_column=args.key_column,
        columns=args.columns,
        label=args.label,
        delimiter=args.delimiter,
        max_line_bytes=args.max_line_bytes,
        max_streams=args.max_streams or None,
        idle_timeout=args.idle_timeout,
        max_key_bytes=args.max_key_bytes,
    )
    model = load(args.model, provider=args.provider, threads=args.threads)
    try:
        if args.input is not None:
            with open_regular(args.input) as f:
                stats = serve_lines(model, f, sys.stdout, sys.stderr, options=options)
        else:  # bytes from the descriptor, whatever the locale's encoding
            stats = serve_lines(model, sys.stdin, sys.stdout, sys.stderr, options=options)
    except BrokenPipeError:
        # The reader went away (`stream-gru run m.onnx < big | head -1`): stop quietly
        # with 141, as a process killed by SIGPIPE (`yes | head -1`) does.
        stdout_to_devnull()
        return EXIT_BROKEN_PIPE
    if args.summary:
        print(
            f"stream-gru run: {stats.lines} lines, {stats.outputs} outputs, "
            f"{stats.rejected} rejected, {stats.streams} streams, {stats.expired} expired",
            file=sys.stderr,
        )
    if stats.all_refused:
        print(
            f"stream-gru run: every one of the {stats.rejected} data lines was refused "
            f"(see the messages above): no output",
            file=sys.stderr,
        )
        return 1
    return 0
