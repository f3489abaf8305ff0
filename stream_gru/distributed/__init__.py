"""One fleet spread over Ray actors: ``ShardedPool`` (the ``ray`` extra).

    from stream_gru.distributed import ShardedPool

Imports: ray; from the package ``fleet``, ``core``, ``formats`` and the base modules.
``import stream_gru`` never imports this package (checked by ``make lint``).
"""

from ..errors import ShardError
from .shard import Recovery, ShardStats
from .sharded import MANIFEST, ShardedPool, ShardedPoolStats

__all__ = ["MANIFEST", "Recovery", "ShardError", "ShardStats", "ShardedPool", "ShardedPoolStats"]
