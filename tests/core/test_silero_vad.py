"""A real third-party model through the runtime: Silero VAD's ``silero_vad.onnx``.

The model comes from the ``silero-vad`` wheel, installed without its dependencies (the
Python package imports torch; the ONNX file inside it needs only onnxruntime), and is
never imported: only its file is used. Every result is compared with onnxruntime run
by hand, the way Silero's own ``OnnxWrapper`` runs it: 512 new samples at 16 kHz with
the previous chunk's last 64 in front (64 zeros before the first chunk), the state
``(2, batch, 128)`` carried from call to call, ``sr`` fed on every call.

The clip, ``tests/assets/speech_16k.wav``, is 1 s of faint noise, a sentence spoken by
espeak-ng, and 1 s of faint noise (``tests/assets/README.md`` says how it was made).
"""

from __future__ import annotations

import importlib.metadata
import wave
from pathlib import Path

import numpy as np
import pytest

import stream_gru as sg
from stream_gru.agreement import assert_agree

try:
    _DIST = importlib.metadata.distribution("silero-vad")
except importlib.metadata.PackageNotFoundError:
    pytest.skip(
        "the silero-vad wheel is not installed (make install adds it with "
        "`pip install --no-deps silero-vad==6.2.3`)",
        allow_module_level=True,
    )

CLIP = Path(__file__).resolve().parents[1] / "assets" / "speech_16k.wav"
RATE, NEW, CONTEXT = 16_000, 512, 64  # samples per chunk, and in front of it
CHUNK_S = NEW / RATE  # 32 ms
SR = np.array(RATE, dtype=np.int64)
IO = sg.ModelIO(
    input="input",
    output="output",
    batch_axis=0,
    time_axis=None,
    states=(sg.StatePair("state", "stateN", batch_axis=1),),
    constants={"sr": SR},
    input_size=CONTEXT + NEW,  # the graph declares input [?, ?]
)
# Where the clip is silent and where it speaks (seconds), from listening and measuring:
# the sentence runs from 1.0 s to 4.55 s.
LEADING_SILENCE, SPEECH, TRAILING_SILENCE = (0.0, 0.95), (1.0, 4.5), (4.7, 6.0)


def _model_file(name: str) -> Path:
    path = Path(str(_DIST.locate_file(f"silero_vad/data/{name}")))
    if not path.is_file():
        pytest.skip(f"{path} is not in the installed silero-vad wheel")
    return path


def read_wav(path: Path) -> np.ndarray:
    """A 16 kHz mono 16-bit WAV -> float32 samples in [-1, 1)."""
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, RATE)
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768.0


def frames(audio: np.ndarray) -> np.ndarray:
    """Audio -> model inputs (n, 576): each 512-sample chunk with 64 samples before it."""
    n = len(audio) // NEW
    chunks = audio[: n * NEW].reshape(n, NEW)
    before = np.concatenate([np.zeros((1, CONTEXT), np.float32), chunks[:-1, -CONTEXT:]])
    return np.ascontiguousarray(np.concatenate([before, chunks], axis=1), dtype=np.float32)


def hand_run(session, xs: np.ndarray, state: np.ndarray | None = None):
    """onnxruntime by hand, batch 1: (n, 576) -> probabilities (n,), final state."""
    state = np.zeros((2, 1, 128), np.float32) if state is None else state
    probs = []
    for x in xs:
        y, state = session.run(None, {"input": x[None], "state": state, "sr": SR})
        probs.append(y[0, 0])
    return np.array(probs, np.float32), state


def _seconds(n: int) -> np.ndarray:
    return np.arange(n) * CHUNK_S


@pytest.fixture(scope="module")
def vad() -> sg.StreamingModel:
    return sg.load(_model_file("silero_vad.onnx"), io=IO, threads=1)


@pytest.fixture(scope="module")
def by_hand():
    """A plain onnxruntime session on the same file, one thread like the runtime's."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    path = str(_model_file("silero_vad.onnx"))
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return frames(read_wav(CLIP))


@pytest.fixture(scope="module")
def clip_probs(by_hand, clip) -> np.ndarray:
    return hand_run(by_hand, clip)[0]


@pytest.fixture(scope="module")
def fleet(clip) -> dict[str, np.ndarray]:
    """Four different streams: the clip at other gains and offsets."""
    audio = read_wav(CLIP)
    n = len(audio)
    return {
        "mic-0": clip,
        "mic-1": frames(0.5 * audio),
        "mic-2": frames(np.roll(audio, 4000)),
        "mic-3": frames(np.concatenate([np.zeros(1234, np.float32), 1.5 * audio])[:n]),
    }


def test_the_graph_is_described_by_model_io(vad):
    spec = vad.spec
    assert spec.input_size == 576 and spec.sample_shape == (576,)
    assert spec.output_size == 1
    assert dict(spec.state_shapes) == {"state": (2, 128)}
    assert spec.cell is None and "third-party" in spec.describe()
    assert len(spec.fingerprint) == 64


def test_a_stream_equals_onnxruntime_by_hand(vad, clip, clip_probs, record_property):
    stream = vad.stream()
    stepped = np.array([stream.step(x) for x in clip])
    assert stepped.shape == (len(clip), 1) and stepped.dtype == np.float32
    fed = vad.stream().feed(clip)
    diff = float(np.abs(stepped[:, 0] - clip_probs).max())
    record_property("stream_vs_hand_max_abs_diff", diff)
    print(f"Stream vs onnxruntime by hand, {len(clip)} chunks: max abs diff {diff:.3g}")
    assert_agree(stepped[:, 0], clip_probs)
    np.testing.assert_array_equal(fed, stepped)
    assert stream.steps == len(clip)


def test_a_pool_equals_each_stream_by_hand(vad, by_hand, fleet, record_property):
    pool = vad.pool()
    for key in fleet:
        pool.open(key)
    n = len(next(iter(fleet.values())))
    ticked = {key: [] for key in fleet}
    for i in range(n):
        out = pool.step({key: xs[i] for key, xs in fleet.items()})
        for key, y in out.items():
            ticked[key].append(y[0])
    diff = 0.0
    for key, xs in fleet.items():
        expected = hand_run(by_hand, xs)[0]
        diff = max(diff, assert_agree(np.array(ticked[key]), expected, what=key).max_abs)
    record_property("pool_vs_hand_max_abs_diff", diff)
    print(f"StreamPool of {len(fleet)} vs onnxruntime by hand: max abs diff {diff:.3g}")
    # The streams really differ (else the comparison above would prove less).
    a, b = np.array(ticked["mic-0"]), np.array(ticked["mic-2"])
    assert np.abs(a - b).max() > 0.5


def test_it_detects_the_speech_and_not_the_silence(clip_probs):
    t = _seconds(len(clip_probs))

    def within(span: tuple[float, float]) -> np.ndarray:
        return clip_probs[(t >= span[0]) & (t < span[1])]

    # Measured: silence <= 0.07 (leading) and <= 0.03 (trailing); in the speech 83% of
    # the chunks are > 0.5 (the rest are the pauses between words), mean 0.83.
    lead, speech, trail = within(LEADING_SILENCE), within(SPEECH), within(TRAILING_SILENCE)
    print(f"silence max {lead.max():.3f}/{trail.max():.3f}, speech mean {speech.mean():.3f}")
    assert lead.max() < 0.25 and trail.max() < 0.25
    assert (speech > 0.5).mean() > 0.6
    assert speech.mean() > 0.6


def test_a_snapshot_continues_identically(vad, clip, clip_probs):
    half = len(clip) // 2
    first = vad.stream()
    first.feed(clip[:half])
    blob = first.snapshot()
    second = vad.restore(blob)
    assert second.steps == half
    rest_first = np.array([first.step(x)[0] for x in clip[half:]])
    rest_second = np.array([second.step(x)[0] for x in clip[half:]])
    np.testing.assert_array_equal(rest_second, rest_first)
    assert_agree(rest_second, clip_probs[half:])


def test_a_saved_pool_continues_identically(vad, by_hand, fleet, tmp_path):
    half = len(next(iter(fleet.values()))) // 2
    pool = vad.pool()
    for key in fleet:
        pool.open(key)
    keys = list(fleet)
    for i in range(half):
        pool.step_batch(keys, np.stack([fleet[k][i] for k in keys]))
    pool.save(tmp_path / "mics.sgpool")
    loaded = vad.load_pool(tmp_path / "mics.sgpool")
    assert sorted(loaded.keys()) == sorted(keys)
    for i in range(half, len(fleet["mic-0"])):
        x = np.stack([fleet[k][i] for k in keys])
        np.testing.assert_array_equal(loaded.step_batch(keys, x), pool.step_batch(keys, x))
    for key in keys:  # and both equal the state carried by hand over the whole clip
        _, expected = hand_run(by_hand, fleet[key])
        state = vad.restore(loaded.snapshot(key)).state["state"]
        assert_agree(state, expected[:, 0], what=f"{key}'s state")


def test_a_snapshot_is_refused_by_another_model(vad, clip):
    # silero_vad.onnx keeps its weights in Constant nodes inside an If, not in
    # initializers; the fingerprint must still tell it from another such graph.
    other = sg.load(
        _model_file("silero_vad_openvino_16k.onnx"),
        io=sg.ModelIO(input="input", output="output", states=IO.states),
    )
    assert other.spec.fingerprint != vad.spec.fingerprint
    stream = vad.stream()
    stream.feed(clip[:10])
    with pytest.raises(sg.SnapshotError):
        other.restore(stream.snapshot())


def test_a_chunk_of_the_wrong_length_is_refused_before_the_session(vad, clip):
    stream = vad.stream()
    stream.feed(clip[:20])
    before, steps = stream.state, stream.steps
    with pytest.raises(ValueError, match=r"expected \(576\)"):
        stream.step(clip[20, CONTEXT:])  # the 512 new samples without the 64 in front
    with pytest.raises(ValueError, match=r"expected \(step, 576\)"):
        stream.feed(clip[20:30, CONTEXT:])
    assert stream.steps == steps
    np.testing.assert_array_equal(stream.state["state"], before["state"])
    pool = vad.pool()
    pool.open("mic")
    with pytest.raises(ValueError, match="576"):
        pool.step({"mic": np.zeros(NEW, np.float32)})
    np.testing.assert_array_equal(
        vad.restore(pool.snapshot("mic")).state["state"], vad.initial_state()["state"]
    )
