"""The benchmark's contenders: the code each one runs per call or per tick, built once
per model (``bench`` times them). Besides the runtime's ``Stream`` and ``StreamPool``,
each is what a user would write instead: a plain ``InferenceSession`` carrying the state
by hand, and PyTorch eager on the checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ...core.spec import ModelSpec
from ...fleet.model import StreamingModel

__all__ = [
    "by_hand_fleet",
    "by_hand_step",
    "check_layout",
    "plain_session",
    "pool_fleet",
    "torch_fleet",
    "torch_step",
]


def check_layout(spec: ModelSpec) -> dict[str, int]:
    """The states' batch axes; ``ValueError`` for a model the contenders cannot batch."""
    io = spec.io
    no_axis = any(p.batch_axis is None for p in io.states)
    if io.batch_axis != 0 or io.time_axis not in (1, None) or spec.output_size is None or no_axis:
        raise ValueError(
            "the benchmark runs models whose data input is (batch, time, features) or "
            f"(batch, features) with a per-step output size and states with a batch axis; "
            f"this one has {io}"
        )
    return {p.input: p.batch_axis for p in io.states if p.batch_axis is not None}


def plain_session(path: Path) -> Any:
    """An ``InferenceSession`` as a user would make it: 1 thread, sequential, no spinning."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])


def by_hand_step(sess: Any, spec: ModelSpec) -> Callable[[np.ndarray], Any]:
    """``session.run`` with numpy in and out, the state carried by the caller."""
    io = spec.io
    outs = [io.output, *(p.output for p in io.states)]
    lead = (None, None) if io.time_axis is not None else (None,)
    states = {}
    for name, axis in check_layout(spec).items():
        shape = list(spec.state_shapes[name])
        shape.insert(axis, 1)
        states[name] = np.zeros(shape, spec.state_dtypes[name])
    if len(states) == 1 and not io.constants:
        (name, h), x_name = next(iter(states.items())), io.input

        def run_one(x: np.ndarray) -> Any:
            nonlocal h
            y, h = sess.run(outs, {x_name: x[lead], name: h})
            return y

        return run_one

    def run(x: np.ndarray) -> Any:
        y, *new = sess.run(outs, {io.input: x[lead], **states, **io.constants})
        states.update(zip(states, new, strict=True))
        return y

    return run


def torch_step(net: Any, torch: Any) -> Callable[[np.ndarray], Any]:
    """PyTorch eager on one stream; the caller holds ``inference_mode`` and one thread."""
    h = net.initial_state(1)

    def run(x: np.ndarray) -> Any:
        nonlocal h
        y, h = net(torch.from_numpy(x).view(1, 1, -1), h)
        return y.numpy()

    return run


def by_hand_fleet(
    sess: Any, spec: ModelSpec, n: int, active: list[np.ndarray], xs: list[np.ndarray]
) -> Callable[[int], Any]:
    """Gather the tick's states from a (n, *state) array, ``session.run``, scatter back.
    It is handed slot indices, so it skips the key lookup and input checks of the pool."""
    io = spec.io
    outs = [io.output, *(p.output for p in io.states)]
    store = [
        (name, axis, np.zeros((n, *spec.state_shapes[name]), spec.state_dtypes[name]))
        for name, axis in check_layout(spec).items()
    ]
    timed = io.time_axis is not None

    def tick(j: int) -> Any:
        i = j % len(active)
        idx = active[i]
        feeds = {io.input: xs[i][:, None] if timed else xs[i], **io.constants}
        for name, axis, arr in store:
            feeds[name] = np.ascontiguousarray(np.moveaxis(arr[idx], 0, axis))
        y, *new = sess.run(outs, feeds)
        for (_, axis, arr), value in zip(store, new, strict=True):
            arr[idx] = np.moveaxis(value, axis, 0)
        return y[:, 0] if timed else y

    return tick


def torch_fleet(
    net: Any, torch: Any, n: int, active: list[np.ndarray], xs: list[np.ndarray]
) -> Callable[[int], Any]:
    cfg = net.config
    shape = (n, cfg.num_layers, cfg.hidden_size)
    stores = [torch.zeros(shape) for _ in range(1 if cfg.cell == "gru" else 2)]
    idx_t = [torch.from_numpy(a) for a in active]
    xs_t = [torch.from_numpy(x).unsqueeze(1) for x in xs]

    def tick(j: int) -> Any:
        i = j % len(active)
        hs = [s[idx_t[i]].transpose(0, 1).contiguous() for s in stores]
        y, hn = net(xs_t[i], hs[0] if len(hs) == 1 else tuple(hs))
        for s, value in zip(stores, (hn,) if len(hs) == 1 else hn, strict=True):
            s[idx_t[i]] = value.transpose(0, 1)
        return y[:, 0].numpy()

    return tick


def pool_fleet(
    model: StreamingModel, n: int, active: list[np.ndarray], xs: list[np.ndarray]
) -> Callable[[int], Any]:
    pool = model.pool()
    for key in range(n):
        pool.open(key)
    keys = [a.tolist() for a in active]

    def tick(j: int) -> Any:
        i = j % len(keys)
        return pool.step_batch(keys[i], xs[i])

    return tick
