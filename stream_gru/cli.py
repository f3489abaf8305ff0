"""The old spelling of ``stream_gru.tools.cli.main``, kept so that ``python -m
stream_gru.cli`` and ``from stream_gru.cli import main`` work."""

import sys

from .tools.cli.main import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
