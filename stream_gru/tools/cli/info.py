"""``stream-gru info``: what a model file says about itself (runtime only)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .common import HelpFormatter

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "info",
        help="print a model's spec",
        description=(
            "Print what the model file says about itself: cell, task, sizes, feature and "
            "output names, the state tensors and their per-stream shapes, the training "
            "facts recorded at export and the weights' fingerprint. Needs only the runtime."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("model", type=Path, metavar="MODEL.onnx", help="a model made by stream-gru")
    p.add_argument("--json", action="store_true", help="print the raw metadata JSON instead")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ...fleet.model import load

    model = load(args.model, provider="cpu")
    if args.json:
        meta = model.session.get_modelmeta().custom_metadata_map.get("stream_gru", "{}")
        print(json.dumps(json.loads(meta), indent=2))
        return 0
    print(f"file         {args.model} ({args.model.stat().st_size / 1024:.1f} KiB)")
    print(model.spec.describe())
    return 0
