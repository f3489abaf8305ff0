"""ShardedPool on a Ray cluster reached by address: a head node started here with
`ray start --head` (as on a real cluster), and a driver in another process that
connects to it by its address, unchanged."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

RAY = Path(sys.executable).with_name("ray")
# Loopback only: the cluster's token authentication (Ray's default for `ray start`) is
# the operator's setting, off on both sides here.
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled"}

DRIVER = """
import sys
import numpy as np
import ray
import stream_gru as sg
from stream_gru.distributed import ShardedPool

fleet = ShardedPool(sys.argv[1], shards=3, address=sys.argv[2], checkpoint_every=3)
assert ray.get_runtime_context().gcs_address == sys.argv[2], ray.get_runtime_context()
local = sg.load(sys.argv[1]).pool()
keys = [f"k{i}" for i in range(60)]
fleet.open_many(keys)
for k in keys:
    local.open(k)
rng = np.random.default_rng(0)
for tick in range(8):
    if tick == 4:
        ray.kill(fleet.actor(1))
    xs = rng.standard_normal((60, 3)).astype(np.float32)
    assert np.array_equal(fleet.step_batch(keys, xs), local.step_batch(keys, xs)), tick
print("recoveries", len(fleet.recoveries), "nodes", len(ray.nodes()))
fleet.shutdown()
"""


@pytest.fixture
def head_node():
    """A Ray head node in its own process group, as `ray start` runs on a cluster."""
    if not RAY.exists():
        pytest.skip("the ray command is not installed")
    head = subprocess.Popen(
        [str(RAY), "start", "--head", "--block", "--port=0", "--num-cpus=2",
         "--include-dashboard=false"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env=ENV,
    )  # fmt: skip
    assert head.stdout is not None
    address, lines, deadline = None, [], time.monotonic() + 90
    while address is None and time.monotonic() < deadline:
        line = head.stdout.readline()
        if not line:
            break
        lines.append(line)
        found = re.search(r"ray start --address='([^']+)'", line)
        address = found.group(1) if found else None
    try:
        assert address, "".join(lines[-20:])
        yield address
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops its node on SIGTERM
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)


def test_a_driver_reaches_the_cluster_by_address(gru_model, head_node):
    run = subprocess.run(
        [sys.executable, "-c", DRIVER, str(gru_model.onnx), head_node],
        capture_output=True, text=True, timeout=180, env=ENV,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    assert "recoveries 1 nodes 1" in run.stdout
