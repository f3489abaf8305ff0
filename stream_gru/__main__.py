"""``python -m stream_gru``: the ``stream-gru`` command."""

import sys

from .tools.cli.main import main

sys.exit(main())
