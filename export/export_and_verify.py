"""Export a stream-gru checkpoint to ONNX and verify it against PyTorch, in one command.

    python export/export_and_verify.py runs/demo/checkpoint.pt --out model.onnx

Exits 0 when every check passes, 1 when any output or state differs beyond the
agreement rule |a - b| <= atol + rtol * |b| (--atol/--rtol; docs/agreement.md), the
export's checks fail or the checkpoint cannot be read, 2 on a bad argument.
Needs the train extra: pip install 'stream-gru[train]' (from a checkout: make install).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from stream_gru.tools.cli.common import RawHelpFormatter, need_train_extra, run_guarded
from stream_gru.tools.cli.options import add_verify_options
from stream_gru.tools.cli.verify import verify_and_report


def export_and_verify(args: argparse.Namespace, prog: str) -> int:
    need_train_extra(prog)
    from stream_gru.errors import ExportError
    from stream_gru.export import export_onnx

    try:
        exported = export_onnx(args.checkpoint, args.out, atol=args.atol, rtol=args.rtol)
    except ExportError as e:
        raise SystemExit(f"{prog}: export failed: {e}") from None
    print(f"exported {exported.path} ({exported.size_bytes / 1024:.1f} KiB), checks passed")
    return verify_and_report(exported.path, args.checkpoint, args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=RawHelpFormatter)
    parser.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="checkpoint.pt")
    parser.add_argument("--out", type=Path, required=True, metavar="MODEL.onnx", help="model")
    add_verify_options(parser)
    args = parser.parse_args(argv)
    return run_guarded(lambda: export_and_verify(args, parser.prog), prog=parser.prog)


if __name__ == "__main__":
    sys.exit(main())
