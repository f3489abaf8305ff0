"""Silero VAD, a model this project did not make, streamed through stream-gru.

Silero VAD's silero_vad.onnx carries no stream-gru metadata, so a ModelIO says how it
is wired: the data input `input` (the 512 new samples of a 32 ms chunk at 16 kHz with
the previous chunk's last 64 samples in front), the output `output` (the speech
probability), the state `state` -> `stateN` of shape (2, batch, 128), and the sample
rate `sr`, fed unchanged on every call. The clip is then read chunk by chunk, as from
a microphone, and the speech segments are printed (start at p >= 0.5, end after 100 ms
below 0.35, as Silero's own get_speech_timestamps does). Last, N copies of the clip run
through one StreamPool, one batched call per chunk, and the throughput is printed.

    .venv/bin/pip install --no-deps silero-vad==6.2.3   # only its ONNX file is used
    .venv/bin/python examples/silero_vad.py [--wav tests/assets/speech_16k.wav] [--streams 64]

Needs only numpy and onnxruntime (the silero_vad package itself is never imported).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import stream_gru as sg

RATE = 16_000  # Hz; the model also takes 8 kHz with 256 + 32 samples, not used here
NEW, CONTEXT = 512, 64  # samples per chunk, and samples of the previous chunk in front
CHUNK_S = NEW / RATE
CLIP = Path(__file__).resolve().parent.parent / "tests" / "assets" / "speech_16k.wav"

SILERO_IO = sg.ModelIO(
    input="input",
    output="output",  # (batch, 1): one probability per stream and chunk
    batch_axis=0,
    time_axis=None,  # one chunk per call: the model has no time axis
    states=(sg.StatePair("state", "stateN", batch_axis=1),),  # (2, batch, 128)
    constants={"sr": np.array(RATE, dtype=np.int64)},
    input_size=CONTEXT + NEW,  # the graph declares input [?, ?]
)


def silero_model_path() -> Path:
    """silero_vad.onnx inside the installed silero-vad wheel (without importing it)."""
    try:
        dist = importlib.metadata.distribution("silero-vad")
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit(
            "the silero-vad wheel is not installed: "
            ".venv/bin/pip install --no-deps silero-vad==6.2.3 (or pass --model)"
        ) from None
    return Path(str(dist.locate_file("silero_vad/data/silero_vad.onnx")))


def read_wav(path: Path) -> np.ndarray:
    """A 16 kHz mono 16-bit PCM WAV -> float32 samples in [-1, 1)."""
    try:
        with wave.open(str(path)) as w:
            layout = (w.getnchannels(), w.getsampwidth(), w.getframerate())
            pcm = w.readframes(w.getnframes())
    except (OSError, wave.Error, EOFError) as e:
        raise SystemExit(f"cannot read {path} as a WAV file: {e}") from None
    if layout != (1, 2, RATE):
        raise SystemExit(
            f"{path} is {layout[0]} channel(s), {8 * layout[1]}-bit, {layout[2]} Hz; this "
            f"example reads 16 kHz mono 16-bit PCM "
            f"(convert with: sox IN.wav -r 16000 -c 1 -b 16 OUT.wav)"
        )
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


class Microphone:
    """Hands out the model's inputs one chunk at a time: 64 + 512 samples."""

    def __init__(self, audio: np.ndarray) -> None:
        self._audio = audio
        self._context = np.zeros(CONTEXT, np.float32)  # zeros before the first chunk

    def chunks(self) -> Iterator[np.ndarray]:
        for start in range(0, len(self._audio) - NEW + 1, NEW):  # a partial tail is dropped
            new = self._audio[start : start + NEW]
            yield np.concatenate([self._context, new])
            self._context = new[-CONTEXT:]


@dataclass
class Segments:
    """Speech segments from per-chunk probabilities, with hysteresis."""

    threshold: float = 0.5  # speech starts at or above this
    neg_threshold: float = 0.35  # ... and ends below this, once it has lasted min_silence_s
    min_silence_s: float = 0.1

    def __post_init__(self) -> None:
        self.found: list[tuple[float, float]] = []
        self._start: float | None = None
        self._quiet_since: float | None = None

    def update(self, t: float, p: float) -> None:
        """The chunk starting at ``t`` seconds has speech probability ``p``."""
        if self._start is None:
            if p >= self.threshold:
                self._start = t
            return
        if p >= self.neg_threshold:
            self._quiet_since = None
        elif self._quiet_since is None:
            self._quiet_since = t
        elif t + CHUNK_S - self._quiet_since >= self.min_silence_s:
            self.found.append((self._start, self._quiet_since))
            self._start = self._quiet_since = None

    def finish(self, t: float) -> list[tuple[float, float]]:
        """Close a segment still open at the end (``t`` seconds) and return them all."""
        if self._start is not None:
            self.found.append((self._start, self._quiet_since or t))
            self._start = self._quiet_since = None
        return self.found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--wav",
        type=Path,
        default=CLIP,
        metavar="PATH",
        help="16 kHz mono 16-bit PCM WAV (default: tests/assets/speech_16k.wav)",
    )
    parser.add_argument(
        "--streams",
        type=int,
        default=64,
        metavar="N",
        help="copies of the clip run together through a StreamPool (default: 64)",
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        metavar="PATH",
        help="silero_vad.onnx (default: the one in the installed silero-vad wheel)",
    )
    args = parser.parse_args(argv)
    if args.streams < 1:
        raise SystemExit(f"--streams must be at least 1, got {args.streams}")
    model_path = args.model or silero_model_path()
    if not model_path.is_file():
        raise SystemExit(f"{model_path} does not exist")

    try:
        vad = sg.load(model_path, io=SILERO_IO, provider="cpu")
    except sg.StreamGRUError as e:
        raise SystemExit(
            f"{model_path} does not fit this example, which needs Silero VAD's "
            f"silero_vad.onnx (input 'input' of 576 samples, state 'state', 'sr'): {e}"
        ) from None
    audio = read_wav(args.wav)
    print(vad)
    n_chunks = len(audio) // NEW
    if n_chunks == 0:
        raise SystemExit(f"{args.wav} is shorter than one chunk ({NEW} samples)")
    print(f"{args.wav}: {len(audio) / RATE:.2f} s, {n_chunks} chunks of {CHUNK_S * 1e3:.0f} ms")

    # One microphone, one stream: each chunk as it "arrives".
    stream = vad.stream()
    segments = Segments()
    probs = []
    busy = 0.0  # seconds spent in step()
    for i, x in enumerate(Microphone(audio).chunks()):
        started = time.perf_counter()
        p = float(stream.step(x)[0])
        busy += time.perf_counter() - started
        probs.append(p)
        segments.update(i * CHUNK_S, p)
    found = segments.finish(len(probs) * CHUNK_S)
    print(
        f"one stream: {busy / len(probs) * 1e6:.0f} us per {CHUNK_S * 1e3:.0f} ms chunk; "
        f"speech probability max {max(probs):.2f}, mean {np.mean(probs):.2f}"
    )
    for start, end in found:
        print(f"speech  {start:6.2f} s - {end:6.2f} s")
    if not found:
        print("no speech found")

    # N microphones, one StreamPool: one batched call per 32 ms chunk for all of them.
    pool = vad.pool()
    keys = [f"mic-{i}" for i in range(args.streams)]
    for key in keys:
        pool.open(key)
    inputs = np.stack(list(Microphone(audio).chunks()))  # (chunks, 576), the same for all
    warm = vad.pool()  # a warm-up pool of the same size: the timing leaves out first calls
    for key in keys:
        warm.open(key)
    for x in inputs[:3]:
        warm.step_batch(keys, np.broadcast_to(x, (len(keys), x.size)))
    started = time.perf_counter()
    first = []
    for x in inputs:
        ys = pool.step_batch(keys, np.broadcast_to(x, (len(keys), x.size)))
        first.append(float(ys[0, 0]))
    elapsed = time.perf_counter() - started
    same = "yes" if np.array_equal(np.float32(first), np.float32(probs)) else "NO"
    total = len(keys) * len(inputs)
    audio_s = total * CHUNK_S
    print(
        f"pool of {len(keys)} streams: {total:,} chunks in {elapsed:.3f} s, "
        f"{total / elapsed:,.0f} chunks/s, {audio_s / elapsed:,.0f}x real time "
        f"(one CPU thread); same probabilities as the single stream: {same}"
    )


if __name__ == "__main__":
    main()
