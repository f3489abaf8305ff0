"""The benchmark that `make bench` runs: `stream-gru bench` by another name.

    python benchmarks/run.py                  # the built-in H=64 and H=256x2 GRUs
    python benchmarks/run.py MODEL.onnx [--checkpoint CKPT] [--quick] [--out DIR]

Results (bench.json, bench.txt, bench.png) go to benchmarks/results/ unless --out says
otherwise; benchmarks/README.md says what is measured and how.
"""

from __future__ import annotations

import sys

from stream_gru.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
