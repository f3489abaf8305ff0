"""stream-gru: train a GRU on sensor data, export it to ONNX, verify it against
PyTorch, and run it step by step on onnxruntime.

Typical pipeline:

  stream-gru train data.csv --target label --sequence-column run --out runs/a
  stream-gru export runs/a/checkpoint.pt --out model.onnx
  stream-gru verify model.onnx --checkpoint runs/a/checkpoint.pt
  stream-gru run model.onnx < samples.csv
  stream-gru serve model.onnx --state fleet.sgpool  # KServe v2 / Triton, WebSocket

  stream-gru bench model.onnx                        # against plain onnxruntime (and PyTorch)
  stream-gru compare cells data.csv --target label   # GRU vs LSTM on your data
  stream-gru compare models old.onnx new.onnx --data recorded.csv   # same outputs?

`train`, `export`, `verify`, `demo` and `compare cells` need the train extra (torch,
onnx): pip install 'stream-gru[train]' (from a checkout: make install). `serve` needs the
serve extra. `info`, `run`, `bench MODEL` and `compare models` need only the runtime.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..._version import __version__
from . import bench, compare, demo, export, info, run, serve, train, verify
from .common import RawHelpFormatter, run_guarded

__all__ = ["build_parser", "main"]

COMMANDS = (train, export, verify, info, run, serve, demo, bench, compare)


def build_parser() -> argparse.ArgumentParser:
    """The ``stream-gru`` parser: one subcommand per module of this package."""
    parser = argparse.ArgumentParser(
        prog="stream-gru", description=__doc__, formatter_class=RawHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"stream-gru {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The console script ``stream-gru``."""
    argv, note = compare.legacy_argv(sys.argv[1:] if argv is None else argv)
    if note is not None:
        print(note, file=sys.stderr)
    args = build_parser().parse_args(argv)
    return run_guarded(lambda: int(args.func(args)))


if __name__ == "__main__":
    sys.exit(main())
