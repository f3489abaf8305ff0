"""What a user runs, on top of everything else: the ``stream-gru`` command (``cli``),
the ``run`` pipe, the demo, ``compare`` and the benchmark.

Imports: anything in the package (the heavy parts inside the commands that need them).
Nothing imports ``tools`` (checked by ``make lint``).
"""
