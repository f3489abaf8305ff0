"""``stream-gru verify``: prove the ONNX file computes what the checkpoint computes."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import HelpFormatter, check_output_folder, need_train_extra
from .options import add_verify_options

__all__ = ["add_parser", "run", "verify_and_report"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "verify",
        help="prove the ONNX model computes what the PyTorch checkpoint does",
        description=(
            "Run the ONNX model under onnxruntime and the checkpoint under PyTorch on the "
            "same inputs (at the training data's scale): full sequences at several batch "
            "sizes, chained single steps, random chunkings. The reference is the checkpoint "
            "in float64; a check passes by the agreement rule |onnx - ref| <= atol + rtol * "
            "|ref|, the limit widening along a sequence to 32 times PyTorch float32's own "
            "distance (docs/agreement.md). Exit 1 on any mismatch, or when the model's "
            "metadata does not match the checkpoint (then the numeric checks are skipped)."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("model", type=Path, metavar="MODEL.onnx")
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint.pt")
    add_verify_options(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    need_train_extra()
    check_output_folder(args.report, "--report")
    return verify_and_report(args.model, args.checkpoint, args)


def verify_and_report(model: Path, checkpoint: Path, args: argparse.Namespace) -> int:
    """Run ``verify`` with the options of ``add_verify_options``, print the report,
    write it where ``--report`` says; returns the exit code (1 on any mismatch)."""
    from ...export.verification import verify

    report = verify(
        model,
        checkpoint,
        steps=args.steps,
        atol=args.atol,
        rtol=args.rtol,
        seed=args.seed,
        progress=not args.quiet,
    )
    # A model and a checkpoint of other sizes or names fail the metadata check and
    # verify skips the numeric checks: the report then holds that one failed check.
    print(report.format())
    if args.report:
        report.write_json(args.report)
        print(f"report written to {args.report}")
    return 0 if report.passed else 1
