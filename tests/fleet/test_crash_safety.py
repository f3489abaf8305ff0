"""A process killed while ``StreamPool.save`` writes leaves a file that loads: the old
version or the new one, never a broken one (the write goes to a temporary file that
is fsynced and then renamed over the old)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np

import stream_gru as sg

STREAMS = 50_000

# The child: a pool of STREAMS streams, all fed the same sample each tick, saved after
# every tick; it prints the tick number after each complete save.
CHILD = """
import sys
import numpy as np
import stream_gru as sg

model = sg.load(sys.argv[1])
pool = model.pool(graph="sequence")
for k in range(int(sys.argv[3])):
    pool.open(k)
keys = list(pool)
for tick in range(1, 10_000):
    x = np.array([tick * 0.1, -tick * 0.05, 1.0], np.float32)
    pool.step_batch(keys, np.broadcast_to(x, (len(keys), 3)))
    pool.save(sys.argv[2])
    print(tick, flush=True)
"""


def _reference_states(model, ticks):
    s = model.stream()
    out = {0: s.state["h0"]}
    for tick in range(1, ticks + 1):
        s.step(np.array([tick * 0.1, -tick * 0.05, 1.0], np.float32))
        out[tick] = s.state["h0"]
    return out


def _wait_for_a_temporary_file(folder, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.name.endswith(".tmp") for p in folder.iterdir()):
            return
    raise AssertionError("the child never started another save")


def test_a_process_killed_mid_save_leaves_a_file_that_loads(gru_model, tmp_path):
    model = sg.load(gru_model.onnx)
    path = tmp_path / "fleet.pool"
    rng = np.random.default_rng(0)
    killed_mid_write = 0
    for round_ in range(6):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(gru_model.onnx), str(path), str(STREAMS)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        last = int(child.stdout.readline())  # one complete save, at least
        if round_ % 2:  # at a random moment
            time.sleep(float(rng.uniform(0.0, 0.1)))
        else:  # the moment the next save's temporary file appears
            _wait_for_a_temporary_file(tmp_path)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        done = [int(line) for line in child.stdout.read().split()]  # saves it announced
        last = max([last, *done])
        leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        killed_mid_write += bool(leftovers)
        for p in leftovers:
            p.unlink()

        pool = sg.StreamPool.load(model, path, graph="sequence")
        assert len(pool) == STREAMS, round_
        steps = {pool.steps(k) for k in (0, 1, STREAMS // 2, STREAMS - 1)}
        assert len(steps) == 1, steps  # one version for every stream, never a mix
        (saved,) = steps
        # the last announced save, or the one after it (killed between rename and print)
        assert saved in (last, last + 1), (saved, last)
        reference = _reference_states(model, saved)[saved]
        for k in (0, STREAMS - 1):
            np.testing.assert_array_equal(pool.state(k)["h0"], reference)
    # the kills must have landed inside a write at least once, or nothing was tested
    assert killed_mid_write >= 1
