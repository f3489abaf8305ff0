"""The ``stream-gru`` command: one module per command, ``main`` in ``main``."""
