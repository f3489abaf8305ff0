"""``stream-gru bench``: the runtime against the code one would write otherwise."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import HelpFormatter, need_train_extra

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "bench",
        help="measure the runtime against plain onnxruntime and PyTorch eager",
        description=(
            "Every contender on one thread: latency at batch 1 (Stream.step, session.run by "
            "hand, PyTorch eager), feed vs step, StreamPool throughput at 1 to 16,384 streams "
            "against a gather/session.run/scatter baseline, PyTorch eager and the "
            "single-thread GEMM ceiling; RSS growth over long runs; the CPU of an idle "
            "process. Prints a table with each ratio beside its goal and writes bench.json, "
            "bench.txt and bench.png. Without MODEL it makes the built-in GRUs (I=8 H=64 "
            "L=1 and I=16 H=256 L=2) with random weights, which needs the train extra; "
            "a full run takes a few minutes."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "model", type=Path, nargs="?", metavar="MODEL.onnx", help="a model made by stream-gru"
    )
    p.add_argument(
        "--checkpoint", type=Path, metavar="CKPT", help="MODEL's checkpoint: adds PyTorch eager"
    )
    p.add_argument(
        "--quick", action="store_true", help="tiny counts: a smoke run, too small to judge goals"
    )
    p.add_argument(
        "--out", type=Path, default=Path("benchmarks/results"), metavar="DIR", help="output"
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    if args.model is None or args.checkpoint is not None:
        need_train_extra()  # the built-in models are exported on the fly; PyTorch eager
    from ..bench.run import run_benchmark

    outcome = run_benchmark(
        args.model, checkpoint=args.checkpoint, quick=args.quick, out_dir=args.out
    )
    print(outcome.table)
    print("wrote " + ", ".join(str(p) for p in outcome.files))
    return 0
