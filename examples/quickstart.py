"""Quick start: load the demo's model and stream one held-out recording through it.

    make demo                      # writes runs/demo/model.onnx
    .venv/bin/python examples/quickstart.py [--model runs/demo/model.onnx]

Needs only the runtime (numpy + onnxruntime).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import stream_gru as sg
from stream_gru.datasets import basic_motions_misfit, load_basic_motions


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=Path("runs/demo/model.onnx"))
    args = parser.parse_args()
    if not args.model.exists():
        raise SystemExit(f"{args.model} does not exist: run `make demo` first, or pass --model")

    try:
        model = sg.load(args.model)  # provider="auto": CUDA where usable, else the CPU
    except sg.StreamGRUError as e:
        raise SystemExit(f"this example needs a model made by stream-gru: {e}") from None
    misfit = basic_motions_misfit(model.spec)
    if misfit:
        raise SystemExit(
            f"{args.model} does not fit this example, which streams a BasicMotions recording "
            f"(a smartwatch's 6 channels, 4 activities): {misfit}. Use the demo's model "
            f"(`make demo`) or one trained on BasicMotions."
        )
    print(model)
    test = load_basic_motions("test")
    recording = test.recordings[0]
    truth = test.output_names[int(recording.y[-1])]

    stream = model.stream()  # one device, its own hidden state
    for t, sample in enumerate(recording.x[:60], start=1):  # samples as they arrive
        probs = stream.step(sample)
        if t in (1, 10, 30, 60):
            best = int(probs.argmax())
            print(f"after {t:3d} samples: {model.spec.output_names[best]:<10} p={probs[best]:.2f}")
    blob = stream.snapshot()  # bytes: store it, restart, carry on
    stream = model.restore(blob)
    probs = stream.feed(recording.x[60:])[-1]  # the rest as one chunk
    label = model.spec.output_names[int(probs.argmax())]
    print(f"after {stream.steps} samples: {label} (truth: {truth})")


if __name__ == "__main__":
    main()
