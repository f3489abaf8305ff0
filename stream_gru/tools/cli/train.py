"""``stream-gru train``: train a GRU (or LSTM) on a CSV or NPZ file (train extra)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ...training.config import GRUConfig
from .common import HelpFormatter, need_train_extra
from .options import (
    add_data_options,
    add_train_options,
    check_dropout,
    data_options,
    train_options,
)

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "train",
        help="train a GRU (or LSTM) on a CSV or NPZ file",
        description=(
            "Train on recorded sensor data. CSV: a header row; features by name (default: "
            "every numeric column except the target and the sequence column; non-numeric "
            "columns such as timestamps are ignored unless named); --sequence-column splits "
            "the file into recordings. NPZ: x (N, T, I) and y ((N,) or (N, T) labels, or "
            "(N, T[, O]) regression targets), optional lengths (N,). It first says what it "
            "read (features, classes, ignored columns, warnings), then prints one line of "
            "validation metrics per epoch. Writes DIR/checkpoint.pt and DIR/loss_curve.png."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("data", type=Path, metavar="DATA", help=".csv with a header, or .npz")
    add_data_options(p)
    add_train_options(p)
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    p.add_argument(
        "--quiet", action="store_true", help="no progress bar (the line per epoch stays)"
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    need_train_extra()
    from ...data.dataset import describe_dataset, load_training_data
    from ...training.loop import train

    if args.out.exists() and not args.out.is_dir():
        raise SystemExit(f"stream-gru train: --out {args.out} is a file, expected a directory")
    check_dropout(args)
    try:
        data = load_training_data(args.data, **data_options(args))
    except (ValueError, KeyError) as e:
        raise SystemExit(f"stream-gru train: {e}") from None
    config = GRUConfig.for_data(
        data, hidden_size=args.hidden, num_layers=args.layers, cell=args.cell, dropout=args.dropout
    )
    options = train_options(args)
    for line in describe_dataset(data):
        print(line, flush=True)
    print(
        f"training a {args.cell.upper()} ({data.task}, hidden {args.hidden}, "
        f"{args.layers} layer{'s' if args.layers > 1 else ''}) -> {args.out}",
        flush=True,
    )
    result = train(data, config, options, out_dir=args.out)
    print(f"checkpoint  {result.checkpoint}")
    if result.plot is not None:
        print(f"loss curve  {result.plot}")
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items() if isinstance(v, float))
    print(f"best epoch {result.best_epoch}: {metrics}")
    return 0
