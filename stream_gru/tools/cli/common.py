"""What every command shares: help formatting, argument types, and the one way a
command ends (``run_guarded``: one line for a user error, never a traceback)."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

__all__ = [
    "EXIT_BROKEN_PIPE",
    "HelpFormatter",
    "RawHelpFormatter",
    "check_output_folder",
    "fail",
    "fraction",
    "need_train_extra",
    "non_negative_float",
    "non_negative_int",
    "number",
    "one_character",
    "open_fraction",
    "positive_float",
    "positive_int",
    "run_guarded",
    "split_names",
    "stdout_to_devnull",
    "train_extra_hint",
]

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for `yes | head -1`


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" after an option's help, except where there is none to show
    (a default of None, an off flag)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


class RawHelpFormatter(argparse.RawDescriptionHelpFormatter, HelpFormatter):
    """``HelpFormatter`` that prints the description as written (a module docstring)."""


def train_extra_hint() -> str:
    """What to install for the commands that need torch and onnx."""
    from ...install import install_hint

    return f"this command needs the train extra (torch, onnx): {install_hint('train')}"


def need_train_extra(prog: str = "stream-gru") -> None:
    """Exit with how to install the train extra where torch or onnx is missing."""
    try:
        import onnx  # noqa: F401
        import torch  # noqa: F401
    except ImportError as e:
        raise SystemExit(f"{prog}: {train_extra_hint()} ({e})") from None


def fail(message: str, prog: str = "stream-gru") -> NoReturn:
    raise SystemExit(f"{prog}: {message}")


def check_output_folder(path: Path | None, option: str) -> None:
    """Refuse at once an output file whose folder does not exist (not after the work)."""
    if path is not None and not path.parent.is_dir():
        fail(f"{option} {path}: the folder {path.parent} does not exist")


def stdout_to_devnull() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush cannot fail
    again after its reader went away."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (captured in tests)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


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
        stdout_to_devnull()  # and stop as a process ended by SIGPIPE would
        return EXIT_BROKEN_PIPE
    except (StreamGRUError, OSError, ValueError) as e:
        fail(str(e), prog)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a defect: still one line, with the way to the traceback
        if os.environ.get("STREAM_GRU_DEBUG"):
            raise
        fail(
            f"unexpected {type(e).__name__}: {str(e)[:300]} (a bug: please report it; "
            f"STREAM_GRU_DEBUG=1 shows the traceback)",
            prog,
        )


# -- argument types: argparse reports a bad value as a usage error (exit 2) ----------
def number(value: str, cast: Callable[[str], Any], ok: Callable[[Any], bool], what: str) -> Any:
    """``cast(value)`` where ``ok`` of it, else argparse's usage error naming ``what``."""
    try:
        n = cast(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}") from None
    if not ok(n):
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return n


def positive_int(value: str) -> int:
    return int(number(value, int, lambda n: n >= 1, "a positive integer"))


def non_negative_int(value: str) -> int:
    return int(number(value, int, lambda n: n >= 0, "a non-negative integer"))


def positive_float(value: str) -> float:
    return float(number(value, float, lambda x: math.isfinite(x) and x > 0, "a positive number"))


def non_negative_float(value: str) -> float:
    what = "a non-negative number"
    return float(number(value, float, lambda x: math.isfinite(x) and x >= 0, what))


def fraction(value: str) -> float:
    return float(number(value, float, lambda x: 0 <= x < 1, "a number in [0, 1)"))


def open_fraction(value: str) -> float:
    return float(number(value, float, lambda x: 0 < x < 1, "a number in (0, 1)"))


def one_character(value: str) -> str:
    value = {"\\t": "\t", "tab": "\t"}.get(value, value)
    if len(value) != 1:
        raise argparse.ArgumentTypeError(f"expected one character (or 'tab'), got {value!r}")
    return value


def split_names(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated column names")
    return names
