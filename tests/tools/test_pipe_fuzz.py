"""Fuzzing the `run` pipe: random keys (any bytes, spaces, quotes, delimiters), numbers
in every spelling, bad lines of every kind, lines cut into random chunks. Every line is
answered for exactly its own key, with exactly its own stream's output, or reported
with its own line number; processing always goes on."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stream_gru as sg
from stream_gru.tools.pipe import serve_lines, split_fields

MAX_LINE = 256

# Keys: any bytes but line breaks and control characters, UTF-8 or not; and keys built
# from pieces that make near twins (" a", "a ", "a\xa0", "\xff" and "\xfe", "A").
TOKENS = [b"a", b"A", b" ", b",", b'"', b"\xff", b"\xfe", "é".encode(), "\u00a0".encode()]
key_bytes = st.one_of(
    st.binary(min_size=1, max_size=12).filter(lambda b: not any(c < 0x20 or c == 0x7F for c in b)),
    st.lists(st.sampled_from(TOKENS), min_size=1, max_size=4).map(b"".join),
)
numbers = st.floats(-1e6, 1e6, allow_nan=False, width=32).flatmap(
    lambda v: st.sampled_from([f"{v!r}", f"{v:.9g}", f"{v:e}", f" {v:.3f} ", f"+{abs(v)}"])
)


def _quoted(key: bytes) -> bytes:
    """The key as a CSV field: quoted where it holds a comma or a quote (sometimes
    quoted anyway, which must not change it)."""
    if b"," in key or b'"' in key:
        return b'"' + key.replace(b'"', b'""') + b'"'
    return key


@st.composite
def good_line(draw):
    key = draw(key_bytes)
    field = _quoted(key)
    if draw(st.booleans()) and field == key:
        field = b'"' + key.replace(b'"', b'""') + b'"'
    values = [draw(numbers) for _ in range(3)]
    return key, values, field + b"," + ",".join(values).encode()


bad_lines = st.one_of(
    st.just(b"k,1,2"),  # too few fields
    st.just(b"k,1,2,3,4"),  # too many
    st.sampled_from(
        [
            b"k,1_0,2,3",
            b"k,nan,1,2",
            b"k,inf,1,2",
            b"k,1,\xd9\xa3,2",
            b"k,1e999,0,0",
            b"k,0x10,1,2",
            b"k,1e,2,3",
            b"k,--1,2,3",
            b"k,\xef\xbc\x93,1,2",
        ]
    ),
    st.just(b'"unclosed,1,2,3'),
    st.just(b'ke"y,1,2,3'),  # a quote inside an unquoted field
    st.just(b"k\x1cx,1,2,3"),  # a control character in the key
    st.just(b",1,2,3"),  # an empty key
    st.integers(MAX_LINE + 1, 4 * MAX_LINE).map(lambda n: b"k," + b"1" * n),  # too long
)


@st.composite
def session(draw):
    """Lines (good ones with their key and values, bad ones, blank ones), and the cuts
    that split the byte stream into arrivals."""
    lines = draw(
        st.lists(
            st.one_of(
                good_line().map(lambda g: ("good", g)),
                bad_lines.map(lambda b: ("bad", b)),
                st.sampled_from([b"", b"   ", b"\r"]).map(lambda b: ("blank", b)),
            ),
            min_size=1,
            max_size=25,
        )
    )
    data = b"\n".join(line if kind != "good" else line[2] for kind, line in lines) + b"\n"
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    return lines, data, cuts


@pytest.fixture(scope="module")
def model(gru_model):
    return sg.load(gru_model.onnx)


def test_every_line_is_answered_for_its_own_key_or_reported(model):
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(case=session())
    def check(case):
        lines, data, cuts = case
        chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        out, err = io.BytesIO(), io.BytesIO()
        pool = model.pool(graph="sequence")  # the streams' own graph: bit for bit
        stats = serve_lines(model, iter(chunks), out, err, pool=pool, max_line_bytes=MAX_LINE,
                            header="no")  # fmt: skip
        answers = out.getvalue().split(b"\n")[:-1]
        reports = err.getvalue().decode().splitlines()
        streams: dict[bytes, sg.Stream] = {}
        expected_reports = []
        i = 0
        for number, (kind, line) in enumerate(lines, start=1):
            if kind == "blank":
                continue
            if kind == "bad":
                expected_reports.append(number)
                continue
            key, values, _ = line
            answer = answers[i]
            i += 1
            text = answer.decode("utf-8", "surrogateescape")
            fields = split_fields(text)
            assert fields[0].encode("utf-8", "surrogateescape") == key  # its own key
            stream = streams.setdefault(key, model.stream())
            want = stream.step(np.array([float(v) for v in values], np.float32))
            np.testing.assert_array_equal(np.array(fields[1:], np.float32), want)
        assert i == len(answers), "an answer for a line that should have none"
        assert [int(r.split(":")[0].removeprefix("line ")) for r in reports] == expected_reports
        assert stats.rejected == len(expected_reports) and len(pool) == len(streams)

    check()
