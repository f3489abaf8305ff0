"""``stream-gru demo``: the whole pipeline on the embedded BasicMotions data."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ...training.config import GRUConfig, TrainOptions
from .common import HelpFormatter, need_train_extra, non_negative_int, positive_int

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo",
        help="train on BasicMotions, export, verify, and stream the held-out recordings",
        description=(
            "The whole pipeline on the embedded BasicMotions data (smartwatch accelerometer "
            "and gyroscope, 4 activities): train, export, verify, then stream each held-out "
            "recording sample by sample and show how its classification evolves."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("--out", type=Path, default=Path("runs/demo"), metavar="DIR", help="output")
    p.add_argument("--epochs", type=positive_int, default=TrainOptions.epochs, help="max epochs")
    p.add_argument(
        "--hidden", type=positive_int, default=GRUConfig.hidden_size, help="hidden units"
    )
    p.add_argument("--seed", type=non_negative_int, default=TrainOptions.seed, help="seed")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    need_train_extra()
    from ..demo import run_demo

    return run_demo(
        out_dir=args.out, epochs=args.epochs, hidden=args.hidden, seed=args.seed, quiet=args.quiet
    )
