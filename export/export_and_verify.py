"""Export a stream-gru checkpoint to ONNX and verify it against PyTorch, in one command.

    python export/export_and_verify.py runs/demo/checkpoint.pt --out model.onnx

Exits 0 when every check passes, 1 when any output or state differs beyond
--atol/--rtol (numpy allclose semantics) or the export's structural checks fail.
Needs the train extra: pip install 'stream-gru[train]'.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stream_gru.errors import ExportError
from stream_gru.export import export_onnx, verify


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="checkpoint.pt")
    parser.add_argument("--out", type=Path, required=True, metavar="MODEL.onnx")
    parser.add_argument("--steps", type=int, default=10_000, help="chained single steps")
    parser.add_argument("--atol", type=float, default=1e-5)
    parser.add_argument("--rtol", type=float, default=1e-5)
    parser.add_argument("--report", type=Path, metavar="FILE.json", help="write a JSON report")
    args = parser.parse_args(argv)

    try:
        exported = export_onnx(args.checkpoint, args.out)
    except ExportError as e:
        print(f"export failed: {e}", file=sys.stderr)
        return 1
    print(f"exported {exported.path} ({exported.size_bytes / 1024:.1f} KiB), checks passed")
    report = verify(
        exported.path, args.checkpoint, steps=args.steps, atol=args.atol, rtol=args.rtol
    )
    print(report.format())
    if args.report:
        report.write_json(args.report)
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
