"""``stream-gru export``: a checkpoint to one self-contained ONNX file (train extra)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .common import HelpFormatter, need_train_extra
from .options import add_tolerance_options

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "export",
        help="export a checkpoint to one self-contained ONNX file",
        description=(
            "Export a checkpoint to ONNX (dynamic batch and time, normalization inside the "
            "graph, metadata with the weights' fingerprint). The graph is checked before it "
            "is written, and a GRU's one-step graph (what pools run) is checked against the "
            "checkpoint by the agreement rule; a model that fails is not written. The file "
            "goes into a folder that exists."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="checkpoint.pt")
    p.add_argument("--out", type=Path, required=True, metavar="MODEL.onnx", help="the model")
    add_tolerance_options(p, what="the checkpoint in float64, for the one-step graph's check")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    need_train_extra()
    from ...errors import ExportError
    from ...export.onnx_export import export_onnx

    try:
        result = export_onnx(args.checkpoint, args.out, atol=args.atol, rtol=args.rtol)
    except ExportError as e:
        print(f"stream-gru export: {e}", file=sys.stderr)
        return 1
    print(
        f"wrote {result.path} ({result.size_bytes / 1024:.1f} KiB, {len(result.nodes)} nodes: "
        f"{' '.join(sorted(set(result.nodes)))})"
    )
    print(f"fingerprint {result.fingerprint}")
    print("structural checks passed: dynamic batch and time, GRU linear_before_reset=1, no Dropout")
    return 0
