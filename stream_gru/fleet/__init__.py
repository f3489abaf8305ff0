"""Many streams of one model: stream keys, the graphs a pool runs, where the states
live, tick checks, ``StreamPool``, the ``FleetPool`` protocol it shares with the
sharded pool, and ``StreamingModel`` (a ``Model`` that makes pools) with ``load``.

Imports: numpy, onnxruntime; from the package ``core``, ``formats`` and the base
modules (checked by ``make lint``).
"""
