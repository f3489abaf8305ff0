"""stream-gru: train a GRU on sensor data, export it to ONNX, verify it against
PyTorch, and run it step by step on onnxruntime.

Typical pipeline:

  stream-gru train data.csv --target label --sequence-column run --out runs/a
  stream-gru export runs/a/checkpoint.pt --out model.onnx
  stream-gru verify model.onnx --checkpoint runs/a/checkpoint.pt
  stream-gru run model.onnx < samples.csv

  stream-gru bench model.onnx              # against plain onnxruntime (and PyTorch)
  stream-gru compare data.csv --target label --sequence-column run   # GRU vs LSTM
  stream-gru compare old.onnx new.onnx --data recorded.csv           # same outputs?

`train`, `export`, `verify`, `demo` and `compare DATA` need the train extra (torch,
onnx): pip install 'stream-gru[train]' (from a checkout: make install). `info`, `run`,
`bench MODEL` and `compare OLD.onnx NEW.onnx` need only the runtime.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from ...training.config import GRUConfig, TrainOptions
from ..pipe import DEFAULT_MAX_KEY_BYTES, DEFAULT_MAX_LINE_BYTES, DEFAULT_MAX_STREAMS

__all__ = [
    "HelpFormatter",
    "RawHelpFormatter",
    "add_tolerance_options",
    "add_train_options",
    "add_verify_options",
    "check_dropout",
    "check_output_folder",
    "fraction",
    "main",
    "need_train_extra",
    "non_negative_float",
    "non_negative_int",
    "open_fraction",
    "positive_float",
    "positive_int",
    "run_guarded",
    "train_options",
]


def train_extra_hint() -> str:
    """What to install for the commands that need torch and onnx."""
    from ..install import install_hint

    return f"this command needs the train extra (torch, onnx): {install_hint('train')}"


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for `yes | head -1`


def need_train_extra(prog: str = "stream-gru") -> None:
    """Exit with how to install the train extra where torch or onnx is missing."""
    try:
        import onnx  # noqa: F401
        import torch  # noqa: F401
    except ImportError as e:
        raise SystemExit(f"{prog}: {train_extra_hint()} ({e})") from None


def _fail(message: str, prog: str = "stream-gru") -> NoReturn:
    raise SystemExit(f"{prog}: {message}")


def run_guarded(command: Callable[[], int], *, prog: str = "stream-gru") -> int:
    """Run ``command`` and return its exit status. A user error (a ``StreamGRUError``,
    an ``OSError`` such as a missing or unreadable file, a ``ValueError``) exits with
    the one line ``prog: message`` and status 1, Ctrl-C with 130, a reader of stdout
    that went away (``| head -1``) quietly with 141: never a traceback (any other
    exception is a bug, reported in one line; ``STREAM_GRU_DEBUG=1`` re-raises it)."""
    from ...errors import StreamGRUError

    try:
        return int(command())
    except BrokenPipeError:
        # Point stdout at /dev/null so that the interpreter's final flush cannot fail
        # again, and stop as a process ended by SIGPIPE would (`yes | head -1`).
        _stdout_to_devnull()
        return EXIT_BROKEN_PIPE
    except (StreamGRUError, OSError, ValueError) as e:
        _fail(str(e), prog)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a defect: still one line, with the way to the traceback
        if os.environ.get("STREAM_GRU_DEBUG"):
            raise
        _fail(
            f"unexpected {type(e).__name__}: {str(e)[:300]} (a bug: please report it; "
            f"STREAM_GRU_DEBUG=1 shows the traceback)",
            prog,
        )


# -- argument types: argparse reports a bad value as a usage error (exit 2) ----------
def _number(value: str, cast: Callable[[str], Any], ok: Callable[[Any], bool], what: str) -> Any:
    try:
        n = cast(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}") from None
    if not ok(n):
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return n


def positive_int(value: str) -> int:
    return int(_number(value, int, lambda n: n >= 1, "a positive integer"))


def non_negative_int(value: str) -> int:
    return int(_number(value, int, lambda n: n >= 0, "a non-negative integer"))


def positive_float(value: str) -> float:
    return float(_number(value, float, lambda x: math.isfinite(x) and x > 0, "a positive number"))


def non_negative_float(value: str) -> float:
    what = "a non-negative number"
    return float(_number(value, float, lambda x: math.isfinite(x) and x >= 0, what))


def fraction(value: str) -> float:
    return float(_number(value, float, lambda x: 0 <= x < 1, "a number in [0, 1)"))


def open_fraction(value: str) -> float:
    return float(_number(value, float, lambda x: 0 < x < 1, "a number in (0, 1)"))


def _one_character(value: str) -> str:
    value = {"\\t": "\t", "tab": "\t"}.get(value, value)
    if len(value) != 1:
        raise argparse.ArgumentTypeError(f"expected one character (or 'tab'), got {value!r}")
    return value


def _split_names(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated column names")
    return names


# -- commands ------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    need_train_extra()
    from ...data.dataset import describe_dataset, load_training_data
    from ...training.loop import train

    if args.out.exists() and not args.out.is_dir():
        raise SystemExit(f"stream-gru train: --out {args.out} is a file, expected a directory")
    check_dropout(args)
    try:
        data = load_training_data(
            args.data,
            target=args.target,
            features=args.features,
            sequence_column=args.sequence_column,
            task=args.task,
            horizon=args.horizon,
            missing=args.missing,
            delimiter=args.delimiter,
        )
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


def check_dropout(args: argparse.Namespace, prog: str = "stream-gru train") -> None:
    """Refuse ``--dropout`` with one layer: PyTorch applies it only between layers."""
    if args.dropout > 0 and args.layers == 1:
        raise SystemExit(
            f"{prog}: --dropout {args.dropout:g} applies between stacked layers and would do "
            f"nothing with --layers 1: add --layers 2 (or more), or leave --dropout out"
        )


def cmd_export(args: argparse.Namespace) -> int:
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


def cmd_verify(args: argparse.Namespace) -> int:
    need_train_extra()
    check_output_folder(args.report, "--report")
    return verify_and_report(args.model, args.checkpoint, args)


def check_output_folder(path: Path | None, option: str) -> None:
    """Refuse at once an output file whose folder does not exist (not after the work)."""
    if path is not None and not path.parent.is_dir():
        raise SystemExit(f"stream-gru: {option} {path}: the folder {path.parent} does not exist")


def verify_and_report(model: Path, checkpoint: Path, args: argparse.Namespace) -> int:
    """Run ``verify`` with the options of ``add_verify_options``, print the report,
    write it where ``--report`` says; returns the exit code (1 on any mismatch)."""
    from ...export.onnx_export import verify

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


def cmd_info(args: argparse.Namespace) -> int:
    from ...core.model import load

    model = load(args.model, provider="cpu")
    if args.json:
        import json

        meta = model.session.get_modelmeta().custom_metadata_map.get("stream_gru", "{}")
        print(json.dumps(json.loads(meta), indent=2))
        return 0
    print(f"file         {args.model} ({args.model.stat().st_size / 1024:.1f} KiB)")
    print(model.spec.describe())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from ...core.model import load
    from ...formats.files import open_regular
    from ..pipe import PipeOptions, serve_lines

    options = PipeOptions(
        header=args.header,
        key_column=args.key_column,
        columns=args.columns,
        label=args.label,
        delimiter=args.delimiter,
        max_line_bytes=args.max_line_bytes,
        max_streams=args.max_streams or None,
        idle_timeout=args.idle_timeout,
        max_key_bytes=args.max_key_bytes,
    )
    model = load(args.model, provider=args.provider, threads=args.threads)
    try:
        if args.input is not None:
            with open_regular(args.input) as f:
                stats = serve_lines(model, f, sys.stdout, sys.stderr, options=options)
        else:  # bytes from the descriptor, whatever the locale's encoding
            stats = serve_lines(model, sys.stdin, sys.stdout, sys.stderr, options=options)
    except BrokenPipeError:
        # The reader went away (`stream-gru run m.onnx < big | head -1`): stop quietly
        # with 141, as a process killed by SIGPIPE (`yes | head -1`) does. Point stdout
        # at /dev/null first so that the interpreter's final flush cannot fail again.
        _stdout_to_devnull()
        return EXIT_BROKEN_PIPE
    if args.summary:
        print(
            f"stream-gru run: {stats.lines} lines, {stats.outputs} outputs, "
            f"{stats.rejected} rejected, {stats.streams} streams, {stats.expired} expired",
            file=sys.stderr,
        )
    if stats.all_refused:
        print(
            f"stream-gru run: every one of the {stats.rejected} data lines was refused "
            f"(see the messages above): no output",
            file=sys.stderr,
        )
        return 1
    return 0


def _stdout_to_devnull() -> None:
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (captured in tests)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def cmd_demo(args: argparse.Namespace) -> int:
    need_train_extra()
    from ..demo import run_demo

    return run_demo(
        out_dir=args.out, epochs=args.epochs, hidden=args.hidden, seed=args.seed, quiet=args.quiet
    )


def cmd_bench(args: argparse.Namespace) -> int:
    if args.model is None or args.checkpoint is not None:
        need_train_extra()  # the built-in models are exported on the fly; PyTorch eager
    from ..bench.run import run_benchmark

    outcome = run_benchmark(
        args.model, checkpoint=args.checkpoint, quick=args.quick, out_dir=args.out
    )
    print(outcome.table)
    print("wrote " + ", ".join(str(p) for p in outcome.files))
    return 0


# -- parser --------------------------------------------------------------------------
class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" after an option's help, except where there is none to show
    (a default of None, an off flag)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


class RawHelpFormatter(argparse.RawDescriptionHelpFormatter, HelpFormatter):
    """``HelpFormatter`` that prints the description as written (a module docstring)."""


def _train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", type=Path, metavar="DATA", help=".csv with a header, or .npz")
    add_train_options(p)
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    p.add_argument(
        "--quiet", action="store_true", help="no progress bar (the line per epoch stays)"
    )


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


def add_train_options(p: argparse.ArgumentParser | Any, *, cell: bool = True) -> None:
    """The options of ``train`` from ``--target`` to ``--seed`` (``compare`` shares them;
    it trains both cells, so it leaves out ``--cell``). ``p``: a parser or a group."""
    p.add_argument("--target", help="the target column (CSV); may also be a feature")
    p.add_argument("--features", type=_split_names, help="feature columns, comma-separated")
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
        type=_one_character,
        help="the CSV delimiter (default: the header's: comma, semicolon, tab or bar)",
    )
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
        "--batch-size",
        type=positive_int,
        default=TrainOptions.batch_size,
        help="recordings per batch",
    )
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
        "--seed",
        type=non_negative_int,
        default=TrainOptions.seed,
        help="split, weights, batch order",
    )


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("runs/demo"), metavar="DIR", help="output")
    p.add_argument("--epochs", type=positive_int, default=TrainOptions.epochs, help="max epochs")
    p.add_argument(
        "--hidden", type=positive_int, default=GRUConfig.hidden_size, help="hidden units"
    )
    p.add_argument("--seed", type=non_negative_int, default=TrainOptions.seed, help="seed")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stream-gru", description=__doc__, formatter_class=RawHelpFormatter
    )
    from ..._version import __version__

    parser.add_argument("--version", action="version", version=f"stream-gru {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "train",
        help="train a GRU (or LSTM) on a CSV or NPZ file",
        description=(
            "Train on recorded sensor data. CSV: a header row; features by name (default: "
            "every numeric column except the target and the sequence column; non-numeric "
            "columns such as timestamps are ignored unless named); --sequence-column splits "
            "the file into recordings. NPZ: x (N, T, I) and y ((N,) or (N, T) labels, or "
            "(N, T[, O]) regression targets), optional lengths (N,). Writes "
            "DIR/checkpoint.pt and DIR/loss_curve.png, and prints one line of validation "
            "metrics per epoch."
        ),
        formatter_class=HelpFormatter,
    )
    _train_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
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
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
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
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
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
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "run",
        help="a real-time pipe: CSV lines in ('key,f1,..' or your own CSV), 'key,y1,..' out",
        description=(
            "Read lines 'key,f1,...,fI' from stdin (or --input), one stream per key, and "
            "write 'key,y1,...,yO' per input line, flushed at once (%%.9g: float32 "
            "round-trips). A CSV with a header works too: the first line is taken as a "
            "header where it names the model's features (--header), the key comes from "
            "--key-column (default: the column the training cut recordings by, else the "
            "first non-feature column), the features from the model's feature names "
            "(--columns), other columns are ignored, and the output gets a header line. "
            "Fields are read as CSV reads them (a quoted key keeps its commas). A bad line "
            "gets one message on stderr naming its line number, changes no stream, and "
            "processing goes on; blank lines are skipped. Exit 1 when every line was "
            "refused. When the reader of stdout goes away (| head -1), it stops quietly "
            "with exit status 141, like a process ended by SIGPIPE."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("model", type=Path, metavar="MODEL.onnx")
    p.add_argument("--input", type=Path, metavar="FILE", help="read lines from FILE, not stdin")
    p.add_argument(
        "--header",
        choices=("auto", "yes", "no"),
        default="auto",
        help="is the first line a header? auto: where it names the model's features",
    )
    p.add_argument("--key-column", metavar="NAME", help="with a header: the key's column")
    p.add_argument(
        "--columns",
        type=_split_names,
        metavar="A,B,..",
        help="with a header: the feature columns, in the model's order (default: the "
        "model's feature names)",
    )
    p.add_argument(
        "--label", action="store_true", help="append a classifier's predicted class to each line"
    )
    p.add_argument(
        "--delimiter",
        type=_one_character,
        help="the field delimiter (default: the first line's: comma, semicolon, tab or bar)",
    )
    p.add_argument(
        "--max-line-bytes",
        type=lambda v: int(_number(v, int, lambda n: n >= 16, "an integer >= 16")),
        default=DEFAULT_MAX_LINE_BYTES,
        help="a longer line is skipped unread, with a message",
    )
    p.add_argument(
        "--max-key-bytes",
        type=positive_int,
        default=DEFAULT_MAX_KEY_BYTES,
        help="a longer key is refused, with a message (so --max-streams bounds memory)",
    )
    p.add_argument(
        "--max-streams",
        type=non_negative_int,
        default=DEFAULT_MAX_STREAMS,
        help="the most streams open at once; a new key beyond it is refused with a message "
        "(0: no limit)",
    )
    p.add_argument(
        "--idle-timeout",
        type=positive_float,
        metavar="SECONDS",
        help="close streams idle this long (their state is dropped; a key that comes back "
        "starts afresh); default: never",
    )
    p.add_argument(
        "--provider",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto: CUDA where usable, else CPU",
    )
    p.add_argument(
        "--threads",
        type=non_negative_int,
        default=1,
        help="intra-op threads; 0: onnxruntime's choice",
    )
    p.add_argument("--summary", action="store_true", help="print a summary on stderr at the end")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "demo",
        help="train on BasicMotions, export, verify, and stream the held-out recordings",
        description=(
            "The whole pipeline on the embedded BasicMotions data (smartwatch accelerometer "
            "and gyroscope, 4 activities): train, export, verify, then stream each held-out "
            "recording sample by sample and show how its classification evolves."
        ),
        formatter_class=HelpFormatter,
    )
    _demo_arguments(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
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
    p.set_defaults(func=cmd_bench)

    from .compare import add_compare_parser  # imports this module: here, not at the top

    add_compare_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The console script ``stream-gru``."""
    args = build_parser().parse_args(argv)
    return run_guarded(lambda: int(args.func(args)))


if __name__ == "__main__":
    sys.exit(main())
