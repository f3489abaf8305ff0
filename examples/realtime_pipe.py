"""A real-time pipe: many sensors' samples through one `stream-gru run` process.

This program plays several smartwatches at once, replaying held-out BasicMotions
recordings at up to --hz samples per second each, and writes one line per sample
(`key,f1,...,f6`) into `stream-gru run`, which serves every key from one StreamPool
(lines that arrive together are stepped in one batched call). It reads the output
lines back (`key,p1,...,p4`) and prints each watch's activity whenever it changes.

    .venv/bin/python examples/realtime_pipe.py [--model runs/demo/model.onnx] [--watches 8]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

import stream_gru as sg
from stream_gru.datasets import basic_motions_misfit, load_basic_motions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=Path("runs/demo/model.onnx"))
    parser.add_argument("--watches", type=int, default=8, help="simultaneous streams (8)")
    parser.add_argument("--hz", type=float, default=200.0, help="samples/s per watch (200)")
    args = parser.parse_args(argv)
    if not args.model.exists():
        raise SystemExit(f"{args.model} does not exist: run `make demo` first, or pass --model")

    try:
        spec = sg.load(args.model, provider="cpu").spec
    except sg.StreamGRUError as e:
        raise SystemExit(f"this example needs a model made by stream-gru: {e}") from None
    misfit = basic_motions_misfit(spec)
    if misfit:
        raise SystemExit(
            f"{args.model} does not fit this example, which replays BasicMotions recordings "
            f"(a smartwatch's 6 channels, 4 activities): {misfit}. Use the demo's model "
            f"(`make demo`) or one trained on BasicMotions."
        )
    names = spec.output_names
    recordings = load_basic_motions("test").recordings
    watches = [recordings[(i * 7) % len(recordings)] for i in range(args.watches)]
    server = subprocess.Popen(
        [sys.executable, "-m", "stream_gru.cli", "run", str(args.model)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    assert server.stdin is not None and server.stdout is not None

    def produce() -> None:
        assert server.stdin is not None
        for t in range(len(watches[0].x)):
            batch = "".join(
                f"watch-{i},{','.join(f'{v:.6g}' for v in rec.x[t])}\n"
                for i, rec in enumerate(watches)
            )
            server.stdin.write(batch)  # every watch's sample for this instant, together
            server.stdin.flush()
            time.sleep(1 / args.hz)
        server.stdin.close()

    producer = threading.Thread(target=produce)
    started = time.perf_counter()
    producer.start()
    current: dict[str, str] = {}
    count = 0
    for line in server.stdout:
        key, *fields = line.rstrip("\n").split(",")
        probs = np.asarray(fields, dtype=np.float32)
        count += 1
        label = names[int(probs.argmax())]
        if current.get(key) != label:
            current[key] = label
            step = count // len(watches) + 1
            print(f"{key}: {label:<10} (p={probs.max():.2f}) at sample {step}")
    producer.join()
    server.wait()
    elapsed = time.perf_counter() - started
    truth = {f"watch-{i}": names[int(rec.y[-1])] for i, rec in enumerate(watches)}
    right = sum(current[k] == truth[k] for k in truth)
    summary = f"{count} outputs from {len(watches)} watches in {elapsed:.1f} s"
    print(f"{summary}; final activity right for {right}/{len(truth)}")
    return server.returncode


if __name__ == "__main__":
    sys.exit(main())
