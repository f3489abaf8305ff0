"""``stream-gru compare``: two questions, two subcommands.

    stream-gru compare cells DATA [options]               GRU or LSTM for my data?
    stream-gru compare models OLD.onnx NEW.onnx --data F  is the new version the same?

The old spellings (``compare DATA`` and ``compare OLD NEW --data F``) still work: the
command line rewrites them (``legacy_argv``) and says so on stderr. Parsing imports
neither torch nor onnxruntime.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .common import (
    HelpFormatter,
    RawHelpFormatter,
    check_output_folder,
    positive_int,
    train_extra_hint,
)
from .options import (
    add_data_options,
    add_tolerance_options,
    add_train_options,
    check_dropout,
    data_options,
    train_options,
)

__all__ = ["EXIT_DIFFERENT", "EXIT_TROUBLE", "add_parser", "legacy_argv"]

EXIT_DIFFERENT = 1  # the two models' outputs differ beyond the tolerance (or verify failed)
EXIT_TROUBLE = 2  # cannot compare: other features/outputs, missing columns, unreadable files
MODES = ("cells", "models")

_DEFAULT_OUT = Path("runs/compare")

DESCRIPTION = """\
Two questions:

  stream-gru compare cells DATA             GRU or LSTM for my data? (train extra)
  stream-gru compare models OLD NEW --data  is the new model version the same? (runtime)

`stream-gru compare cells --help` and `stream-gru compare models --help` say more. The
old spellings `compare DATA` and `compare OLD.onnx NEW.onnx --data FILE` still work.
"""

EPILOG = """\
exit status: 0 the same within tolerance (two models), or both verified (GRU vs LSTM);
1 the outputs differ beyond the tolerance, or a verify failed; 2 the models cannot be
compared (other features, outputs or task; a column missing from the data; an
unreadable file), with a message naming what differs.
"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "compare",
        help="GRU vs LSTM on your data (cells), or: does a new model version give the same "
        "outputs? (models)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=RawHelpFormatter,
    )
    modes = p.add_subparsers(dest="mode", required=True, metavar="MODE")
    _add_cells(modes)
    _add_models(modes)
    return p


def _add_cells(modes: Any) -> None:
    p = modes.add_parser(
        "cells",
        help="train a GRU and an LSTM with one budget and compare them",
        description=(
            "Train a GRU and an LSTM with the same budget (hidden size, layers, epochs, "
            "patience, seed, hence the same training/validation split), export and verify "
            "both (DIR/gru/, DIR/lstm/), then print them side by side: parameters, training "
            "time, the held-out metric (accuracy for classification, MAE for regression, as "
            "train reports them), ONNX file size, the median latency of one Stream.step and "
            "the stream-steps/s of a StreamPool tick over a fleet (one thread, CPU). DATA is "
            "a CSV (with --target), an NPZ, or `basicmotions` for the embedded BasicMotions "
            "data (its test recordings are scored too). Writes DIR/compare.json. Needs the "
            "train extra."
        ),
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    p.add_argument("data", type=Path, metavar="DATA", help=".csv, .npz, or basicmotions")
    add_data_options(p)
    add_train_options(p, cell=False)
    p.add_argument(
        "--out", type=Path, metavar="DIR", help=f"output directory (default: {_DEFAULT_OUT})"
    )
    p.add_argument(
        "--verify-steps", type=positive_int, default=10_000,
        help="chained steps of each model's verify",
    )  # fmt: skip
    p.add_argument(
        "--fleet-streams", type=positive_int, default=1024,
        help="streams in the StreamPool whose ticks are timed",
    )  # fmt: skip
    _add_common(p)
    p.set_defaults(func=lambda args: _trouble_is_2(lambda: _cells(args)))


def _add_models(modes: Any) -> None:
    p = modes.add_parser(
        "models",
        help="stream recorded data through two model versions and compare their outputs",
        description=(
            "Stream every recording of FILE (CSV or NPZ) through both models step by step, "
            "each recording from a fresh state, finding the feature columns by the models' "
            "feature names; a CSV is cut into recordings by --sequence-column, by default "
            "the column the models were trained with. Report the largest absolute and "
            "relative differences, the steps beyond the agreement rule (--atol + --rtol * "
            "|old|) and the first of them, and both models' metrics where FILE has their "
            "target column (--target: default the models' own). Needs only the runtime."
        ),
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    p.add_argument("old", type=Path, metavar="OLD.onnx")
    p.add_argument("new", type=Path, metavar="NEW.onnx")
    p.add_argument(
        "--data", type=Path, required=True, metavar="FILE", help="recorded data: .csv or .npz"
    )
    add_data_options(p)
    add_tolerance_options(p, what="the old model's output")
    _add_common(p)
    p.set_defaults(func=lambda args: _trouble_is_2(lambda: _models(args)))


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def legacy_argv(argv: Sequence[str]) -> tuple[list[str], str | None]:
    """``compare DATA ...`` -> ``compare cells DATA ...`` and ``compare OLD NEW --data
    ...`` -> ``compare models OLD NEW --data ...``: the new argv, and a note for stderr
    (None where nothing was rewritten)."""
    args = list(argv)
    if len(args) < 2 or args[0] != "compare" or args[1] in (*MODES, "-h", "--help"):
        return args, None
    mode = "models" if any(a == "--data" or a.startswith("--data=") for a in args) else "cells"
    old = "compare OLD.onnx NEW.onnx --data FILE" if mode == "models" else "compare DATA"
    note = f"stream-gru: `{old}` is now spelled `compare {mode} ...` (the old spelling still works)"
    return [args[0], mode, *args[1:]], note


def _trouble_is_2(command: Callable[[], int]) -> int:
    """Run ``command``; what keeps it from comparing exits 2 (1 means "different")."""
    from ...errors import StreamGRUError

    try:
        return int(command())
    except (StreamGRUError, OSError, ValueError) as e:
        print(f"stream-gru compare: {e}", file=sys.stderr)
        return EXIT_TROUBLE


def _models(args: argparse.Namespace) -> int:
    check_output_folder(args.json, "--json")
    from ...data.csv_files import CsvOptions
    from ..compare.models import compare_models

    result = compare_models(
        args.old,
        args.new,
        args.data,
        sequence_column=args.sequence_column,
        target=args.target,
        atol=args.atol,
        rtol=args.rtol,
        progress=not args.quiet,
        csv=CsvOptions(missing=args.missing, delimiter=args.delimiter),
    )
    print(result.format())
    if args.json:
        result.write_json(args.json)
        print(f"wrote {args.json}")
    return result.exit_code


def _cells(args: argparse.Namespace) -> int:
    check_output_folder(args.json, "--json")
    check_dropout(args, "stream-gru compare")
    try:
        import onnx  # noqa: F401
        import torch  # noqa: F401
    except ImportError as e:
        print(f"stream-gru compare: {train_extra_hint()} ({e})", file=sys.stderr)
        return EXIT_TROUBLE
    from ..compare.cells import compare_cells, load_compare_data

    data, test = load_compare_data(args.data, **data_options(args))
    # two runs of epoch lines would bury the table: a bar instead
    options = train_options(args, epoch_lines=False)
    out = args.out or _DEFAULT_OUT
    print(
        f"compare GRU vs LSTM on {data.source}: {data.task}, {len(data.recordings)} "
        f"recordings of {data.input_size} features, {data.output_size} "
        f"{'classes' if data.task == 'classification' else 'target(s)'}",
        flush=True,
    )
    result = compare_cells(
        data,
        test=test,
        hidden=args.hidden,
        layers=args.layers,
        dropout=args.dropout,
        options=options,
        out_dir=out,
        verify_steps=args.verify_steps,
        fleet_streams=args.fleet_streams,
        log=lambda line: print(line, flush=True),
    )
    print()
    print(result.format())
    written = [result.write_json(out / "compare.json")]
    if args.json:
        written.append(result.write_json(args.json))
    print("wrote " + ", ".join(str(w) for w in written))
    return 0 if result.passed else EXIT_DIFFERENT
