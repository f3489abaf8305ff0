"""The ``stream-gru compare`` subcommand: its arguments and the command, thin over
``compare`` (two model files, runtime only) and ``compare_cells`` (GRU vs LSTM).

Kept apart from ``cli`` so that the command line stays one page per concern; parsing
imports neither torch nor onnxruntime.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .main import (
    HelpFormatter,
    add_tolerance_options,
    add_train_options,
    check_dropout,
    check_output_folder,
    positive_int,
    train_extra_hint,
    train_options,
)

__all__ = ["EXIT_DIFFERENT", "EXIT_TROUBLE", "add_compare_parser", "cmd_compare"]

EXIT_DIFFERENT = 1  # the two models' outputs differ beyond the tolerance (or verify failed)
EXIT_TROUBLE = 2  # cannot compare: other features/outputs, missing columns, unreadable files

_DEFAULT_OUT = Path("runs/compare")

USAGE = """stream-gru compare DATA [--target COL] [training options] [--out DIR] [--json PATH]
       stream-gru compare OLD.onnx NEW.onnx --data FILE [--sequence-column COL]
                          [--target COL] [--atol A] [--rtol R] [--json PATH]"""

DESCRIPTION = """\
Two questions, told apart by the number of paths.

GRU or LSTM for my data? `compare DATA`: trains a GRU and an LSTM with the same budget
(hidden size, layers, epochs, patience, seed, hence the same training/validation split),
exports and verifies both (DIR/gru/, DIR/lstm/), then prints them side by side:
parameters, training time, the held-out metric (accuracy for classification, MAE for
regression, as train reports them), ONNX file size, the median latency of one
Stream.step and the stream-steps/s of a StreamPool tick over a fleet (one thread, CPU).
DATA is a CSV (with --target), an NPZ, or `basicmotions` for the embedded BasicMotions
data (its test recordings are scored too). Writes DIR/compare.json. Needs the train
extra.

Is the new model version the same? `compare OLD.onnx NEW.onnx --data FILE`: streams
every recording of FILE (CSV or NPZ; --sequence-column cuts a CSV into recordings)
through both models step by step, each recording from a fresh state, finding the
feature columns by the models' feature names. Reports the largest absolute and
relative differences, the steps beyond --atol + --rtol * |old| and the first of them,
and both models' metrics where FILE has their target column. Needs only the runtime.
"""

EPILOG = """\
exit status: 0 the same within tolerance (two models), or both verified (GRU vs LSTM);
1 the outputs differ beyond the tolerance, or a verify failed; 2 the models cannot be
compared (other features, outputs or task; a column missing from the data; an
unreadable file), with a message naming what differs.
"""

# Options that belong to one mode only; given in the other they are a usage error.
_TWO_MODEL_OPTIONS = ("data", "atol", "rtol")
# declared with train's options, used by both modes
_SHARED = ("sequence_column", "target", "missing", "delimiter")


def add_compare_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``compare`` to the subcommands ``sub`` of the ``stream-gru`` parser."""
    p: argparse.ArgumentParser = sub.add_parser(
        "compare",
        help="GRU vs LSTM on your data, or: does a new model version give the same outputs?",
        usage=USAGE,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=_Formatter,
    )
    p.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="DATA (GRU vs LSTM), or OLD.onnx NEW.onnx (two models)",
    )
    two = p.add_argument_group("two models (OLD.onnx NEW.onnx)")
    two.add_argument(
        "--data", type=Path, metavar="FILE", help="recorded data to stream: .csv or .npz"
    )
    add_tolerance_options(two, what="the old model's output")
    cells = p.add_argument_group(
        "GRU vs LSTM (DATA)",
        "The options of train, but --cell. --sequence-column, --target, --missing and\n"
        "--delimiter serve two models too: there --target names the column the metrics\n"
        "are computed on (default: the models' own target; NPZ: y) and\n"
        "--sequence-column defaults to the models' own.",
    )
    add_train_options(cells, cell=False)
    cells.add_argument(
        "--out", type=Path, metavar="DIR", help=f"output directory (default: {_DEFAULT_OUT})"
    )
    cells.add_argument(
        "--verify-steps",
        type=positive_int,
        default=10_000,
        help="chained steps of each model's verify",
    )
    cells.add_argument(
        "--fleet-streams",
        type=positive_int,
        default=1024,
        help="streams in the StreamPool whose ticks are timed",
    )
    cells_only = tuple(a.dest for a in cells._group_actions if a.dest not in _SHARED)
    both = p.add_argument_group("both")
    both.add_argument("--json", type=Path, metavar="PATH", help="also write the result as JSON")
    both.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_compare, compare_parser=p, compare_cells_only=cells_only)
    return p


class _Formatter(argparse.RawDescriptionHelpFormatter, HelpFormatter):
    pass


def _given(p: argparse.ArgumentParser, args: argparse.Namespace, dests: Any) -> list[str]:
    """The flags among ``dests`` whose values differ from their defaults."""
    flags = []
    for action in p._actions:
        if action.dest in dests and getattr(args, action.dest) != action.default:
            flags.append(action.option_strings[0])
    return flags


def cmd_compare(args: argparse.Namespace) -> int:
    p: argparse.ArgumentParser = args.compare_parser
    check_output_folder(args.json, "--json")
    if len(args.paths) == 2:
        wrong = _given(p, args, args.compare_cells_only)
        if wrong:
            p.error(f"{', '.join(wrong)}: for GRU vs LSTM (compare DATA), not for two models")
        if args.data is None:
            p.error("two models are compared on recorded data: give --data FILE (.csv or .npz)")
        return _trouble_is_2(lambda: _two_models(args))
    if len(args.paths) == 1:
        wrong = _given(p, args, _TWO_MODEL_OPTIONS)
        if wrong:
            p.error(f"{', '.join(wrong)}: for two models (compare OLD.onnx NEW.onnx)")
        return _trouble_is_2(lambda: _cells(args))
    p.error(
        f"expected DATA (GRU vs LSTM) or OLD.onnx NEW.onnx (two models), got {len(args.paths)} "
        "paths"
    )


def _trouble_is_2(command: Any) -> int:
    """Run ``command``; what keeps it from comparing exits 2 (1 means "different")."""
    from ...errors import StreamGRUError

    try:
        return int(command())
    except (StreamGRUError, OSError, ValueError) as e:
        print(f"stream-gru compare: {e}", file=sys.stderr)
        return EXIT_TROUBLE


def _two_models(args: argparse.Namespace) -> int:
    from ...data.csv_files import CsvOptions
    from ..compare.models import compare_models

    old, new = args.paths
    result = compare_models(
        old,
        new,
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
    check_dropout(args, "stream-gru compare")
    try:
        import onnx  # noqa: F401
        import torch  # noqa: F401
    except ImportError as e:
        print(f"stream-gru compare: {train_extra_hint()} ({e})", file=sys.stderr)
        return EXIT_TROUBLE
    from ..compare.cells import compare_cells, load_compare_data

    data, test = load_compare_data(
        args.paths[0],
        target=args.target,
        features=args.features,
        sequence_column=args.sequence_column,
        task=args.task,
        horizon=args.horizon,
        missing=args.missing,
        delimiter=args.delimiter,
    )
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
