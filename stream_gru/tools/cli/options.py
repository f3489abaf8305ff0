"""Options more than one command takes: training's (``train``, ``compare cells``),
the agreement rule's tolerances (``export``, ``verify``, ``compare models``) and
verify's (``verify``, the export-and-verify script)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ...training.config import GRUConfig, TrainOptions
from .common import (
    fraction,
    non_negative_float,
    non_negative_int,
    one_character,
    open_fraction,
    positive_float,
    positive_int,
    split_names,
)

__all__ = [
    "add_data_options",
    "add_tolerance_options",
    "add_train_options",
    "add_verify_options",
    "check_dropout",
    "data_options",
    "train_options",
]


def add_data_options(p: argparse.ArgumentParser | Any) -> None:
    """How to read a CSV: ``--sequence-column --target --missing --delimiter`` (train,
    and both modes of compare)."""
    p.add_argument("--target", help="the target column (CSV); may also be a feature")
    p.add_argument(
        "--sequence-column",
        help="column whose value splits the rows into recordings (a device or run id); "
        "recorded in the model, so `run` and `compare` find it",
    )
    p.add_argument(
        "--missing",
        choices=("error", "drop", "ffill"),
        default="error",
        help="a missing value (empty, NA, NaN, null) in a feature or the target: refuse, "
        "drop the row, or carry the recording's last value forward",
    )
    p.add_argument(
        "--delimiter",
        type=one_character,
        help="the CSV delimiter (default: the header's: comma, semicolon, tab or bar)",
    )


def data_options(args: argparse.Namespace) -> dict[str, Any]:
    """The data options of ``train`` and ``compare cells`` as the keywords of
    ``load_training_data``."""
    names = ("target", "features", "sequence_column", "task", "horizon", "missing", "delimiter")
    return {name: getattr(args, name) for name in names}


def add_train_options(p: argparse.ArgumentParser | Any, *, cell: bool = True) -> None:
    """The options of ``train`` from ``--features`` to ``--seed`` (``compare cells``
    shares them; it trains both cells, so it leaves out ``--cell``)."""
    p.add_argument("--features", type=split_names, help="feature columns, comma-separated")
    p.add_argument(
        "--task",
        choices=("regression", "classification"),
        help="default: classification for a non-numeric target (NPZ: integer y), else regression",
    )
    p.add_argument(
        "--horizon", type=non_negative_int, default=0, help="regression: predict N steps ahead"
    )
    if cell:
        p.add_argument("--cell", choices=("gru", "lstm"), default=GRUConfig.cell, help="the cell")
    p.add_argument(
        "--hidden", type=positive_int, default=GRUConfig.hidden_size, help="hidden units"
    )
    p.add_argument(
        "--layers", type=positive_int, default=GRUConfig.num_layers, help="stacked layers"
    )
    p.add_argument(
        "--dropout",
        type=fraction,
        default=GRUConfig.dropout,
        help="dropout between stacked layers (needs --layers 2 or more)",
    )
    p.add_argument("--epochs", type=positive_int, default=TrainOptions.epochs, help="max epochs")
    p.add_argument(
        "--batch-size", type=positive_int, default=TrainOptions.batch_size,
        help="recordings per batch",
    )  # fmt: skip
    p.add_argument(
        "--window", type=positive_int, default=TrainOptions.window, help="truncated-BPTT window"
    )
    p.add_argument("--lr", type=positive_float, default=TrainOptions.lr, help="Adam learning rate")
    p.add_argument(
        "--patience",
        type=positive_int,
        default=TrainOptions.patience,
        help="stop after this many epochs without a lower validation loss",
    )
    p.add_argument(
        "--validation-fraction",
        type=open_fraction,
        default=TrainOptions.validation_fraction,
        help="share of the recordings (5 or more), or of each recording's end, held out",
    )
    p.add_argument(
        "--seed", type=non_negative_int, default=TrainOptions.seed,
        help="split, weights, batch order",
    )  # fmt: skip


def train_options(args: argparse.Namespace, **overrides: Any) -> TrainOptions:
    """``TrainOptions`` from the options ``add_train_options`` declared (and ``--quiet``,
    which drops the bar, never the line per epoch)."""
    return TrainOptions(
        epochs=args.epochs,
        batch_size=args.batch_size,
        window=args.window,
        lr=args.lr,
        patience=args.patience,
        validation_fraction=args.validation_fraction,
        seed=args.seed,
        progress=not args.quiet,
        **overrides,
    )


def check_dropout(args: argparse.Namespace, prog: str = "stream-gru train") -> None:
    """Refuse ``--dropout`` with one layer: PyTorch applies it only between layers."""
    if args.dropout > 0 and args.layers == 1:
        raise SystemExit(
            f"{prog}: --dropout {args.dropout:g} applies between stacked layers and would do "
            f"nothing with --layers 1: add --layers 2 (or more), or leave --dropout out"
        )


def add_tolerance_options(p: argparse.ArgumentParser | Any, *, what: str = "the reference") -> None:
    """``--atol --rtol``: the agreement rule |a - b| <= atol + rtol * |b|."""
    from ...agreement import DEFAULT_ATOL, DEFAULT_RTOL

    p.add_argument(
        "--atol",
        type=non_negative_float,
        default=DEFAULT_ATOL,
        help="absolute tolerance of the agreement rule |a - b| <= atol + rtol * |b|",
    )
    p.add_argument(
        "--rtol",
        type=non_negative_float,
        default=DEFAULT_RTOL,
        help=f"relative tolerance of the agreement rule (of |b|, {what})",
    )


def add_verify_options(p: argparse.ArgumentParser) -> None:
    """``--steps --atol --rtol --seed --report --quiet`` of ``verify``."""
    p.add_argument("--steps", type=positive_int, default=10_000, help="chained single steps")
    add_tolerance_options(p)
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the inputs")
    p.add_argument("--report", type=Path, metavar="FILE.json", help="write the report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
