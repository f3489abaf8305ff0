"""Export a trained network to ONNX and prove the file computes what PyTorch does
(``train`` extra: torch and onnx).

``export_onnx`` writes one self-contained ``.onnx`` file that follows the ONNX contract
(README, "The ONNX contract"): dynamic batch and time, normalization inside the graph,
and a ``stream_gru`` metadata document with the weights' fingerprint. Every export is
checked structurally before anything is written (DESIGN.md, traps 1 to 3).

``verify`` runs the file under onnxruntime, through the same runtime users embed, and
compares it with PyTorch on full sequences, on long chains of single steps and on
random chunkings.
"""

from __future__ import annotations

import io as _io
import json
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from . import __version__
from .errors import ExportError
from .files import atomic_write_bytes
from .network import GRUModel, load_checkpoint
from .onnx_file import fingerprint_model_bytes
from .runtime import StreamingModel, load
from .spec import METADATA_KEY, METADATA_VERSION, ModelIO, StatePair

__all__ = [
    "OPSET",
    "CheckResult",
    "VerifyReport",
    "check_structure",
    "export_onnx",
    "model_io",
    "verify",
]

# Opset 14: older onnxruntime registered the CUDA GRU kernel only up to 14 (trap 4).
OPSET = 14


def model_io(cell: str) -> ModelIO:
    """The wiring of this project's models: x/y batch-first, states (L, batch, H)."""
    names = [("h0", "hn")] if cell == "gru" else [("h0", "hn"), ("c0", "cn")]
    return ModelIO(
        input="x",
        output="y",
        batch_axis=0,
        time_axis=1,
        states=tuple(StatePair(i, o, batch_axis=1) for i, o in names),
    )


class _Exportable(nn.Module):
    """Flat tensors in and out (an LSTM's (h, c) becomes two inputs and outputs)."""

    def __init__(self, net: GRUModel) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.net.config.cell == "gru":
            y, hn = self.net(x, states[0])
            return y, hn  # type: ignore[return-value]
        y, (hn, cn) = self.net(x, (states[0], states[1]))
        return y, hn, cn


# -- structural checks ---------------------------------------------------------------
def _all_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(attr.g)
            for g in attr.graphs:
                yield from _all_nodes(g)


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [
        d.dim_param
        if d.HasField("dim_param")
        else (d.dim_value if d.HasField("dim_value") else "?")
        for d in value.type.tensor_type.shape.dim
    ]


def check_structure(model: onnx.ModelProto, io: ModelIO) -> list[str]:
    """What is wrong with an exported graph, as readable sentences (empty: all good).

    Checks ``onnx.checker``; every GRU node has ``linear_before_reset=1`` (PyTorch's
    GRU, trap 2); no Dropout node (trap 3); the batch and time axes of every input and
    output are dynamic (trap 1).
    """
    problems: list[str] = []
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:
        problems.append(f"onnx.checker rejects the model: {str(e).strip()}")
    for node in _all_nodes(model.graph):
        if node.op_type == "GRU":
            lbr = next((a.i for a in node.attribute if a.name == "linear_before_reset"), 0)
            if lbr != 1:
                problems.append(
                    f"GRU node '{node.name}' has linear_before_reset={lbr}; PyTorch's GRU "
                    f"needs 1 (trap 2)"
                )
        if node.op_type == "Dropout":
            problems.append(f"Dropout node '{node.name}' in the graph: export in eval mode")
    axes: dict[str, dict[int, str]] = {
        io.input: {},
        io.output: {},
    }
    for name in (io.input, io.output):
        if io.batch_axis is not None:
            axes[name][io.batch_axis] = "batch"
        if io.time_axis is not None:
            axes[name][io.time_axis] = "time"
    for pair in io.states:
        if pair.batch_axis is not None:
            axes[pair.input] = {pair.batch_axis: "batch"}
            axes[pair.output] = {pair.batch_axis: "batch"}
    values = {v.name: v for v in [*model.graph.input, *model.graph.output]}
    for name, wanted in axes.items():
        if name not in values:
            problems.append(f"the graph has no input or output named '{name}'")
            continue
        dims = _dims(values[name])
        for axis, what in wanted.items():
            if axis >= len(dims):
                problems.append(f"'{name}' has rank {len(dims)}, no {what} axis {axis}")
            elif isinstance(dims[axis], int):
                problems.append(
                    f"'{name}' has a fixed {what} dimension {dims[axis]} at axis {axis} "
                    f"(shape {dims}); it must be dynamic (trap 1)"
                )
    return problems


# -- export --------------------------------------------------------------------------
def _scalars(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if isinstance(v, (str, int, float, bool)) or v is None}


def _metadata(net: GRUModel, io: ModelIO, fingerprint: str) -> dict[str, Any]:
    cfg = net.config
    info = getattr(net, "training_info", {})
    training = _scalars(info)
    training.update(_scalars(getattr(net, "metrics", {})))
    return {
        "format_version": METADATA_VERSION,
        "producer": f"stream-gru {__version__}",
        "cell": cfg.cell,
        "task": cfg.task,
        "input_size": cfg.input_size,
        "hidden_size": cfg.hidden_size,
        "num_layers": cfg.num_layers,
        "output_size": cfg.output_size,
        "feature_names": list(
            getattr(net, "feature_names", [f"x{i}" for i in range(cfg.input_size)])
        ),
        "output_names": list(
            getattr(net, "output_names", [f"y{i}" for i in range(cfg.output_size)])
        ),
        "target": info.get("target"),
        "horizon": int(info.get("horizon", 0) or 0),
        "normalization": net.normalization.to_dict(),
        "io": io.to_json(),
        "opset": OPSET,
        "training": training,
        "fingerprint": fingerprint,
    }


def _torch_export(net: GRUModel, io: ModelIO) -> onnx.ModelProto:
    cfg = net.config
    x = torch.zeros(2, 3, cfg.input_size)
    states = [torch.zeros(cfg.num_layers, 2, cfg.hidden_size) for _ in io.states]
    dynamic: dict[str, dict[int, str]] = {
        "x": {0: "batch", 1: "time"},
        "y": {0: "batch", 1: "time"},
    }
    for pair in io.states:
        dynamic[pair.input] = {1: "batch"}
        dynamic[pair.output] = {1: "batch"}
    buf = _io.BytesIO()
    with warnings.catch_warnings():
        # dynamo=False: the TorchScript exporter keeps time dynamic and writes the smallest
        # graph (trap 1); it warns that it is deprecated.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Exportable(net),
            (x, *states),
            buf,
            dynamo=False,
            input_names=[io.input, *(s.input for s in io.states)],
            output_names=[io.output, *(s.output for s in io.states)],
            dynamic_axes=dynamic,
            opset_version=OPSET,
            do_constant_folding=True,
        )
    return onnx.load_from_string(buf.getvalue())


@dataclass(frozen=True)
class ExportResult:
    """What ``export_onnx`` wrote."""

    path: Path
    fingerprint: str
    metadata: dict[str, Any]
    nodes: tuple[str, ...]
    size_bytes: int


def export_onnx(
    source: str | os.PathLike[str] | GRUModel, out: str | os.PathLike[str]
) -> ExportResult:
    """Export a checkpoint (or a ``GRUModel``) to one self-contained ONNX file.

    The graph is checked (``check_structure``) and loaded by the runtime before the
    file is written atomically; on any failure ``ExportError`` names what failed and
    nothing is written.
    """
    net = source if isinstance(source, GRUModel) else load_checkpoint(source)
    net = net.cpu().eval()
    io = model_io(net.config.cell)
    proto = _torch_export(net, io)
    problems = check_structure(proto, io)
    if problems:
        raise ExportError("the exported graph fails its checks:\n  - " + "\n  - ".join(problems))
    proto.producer_name = "stream-gru"
    proto.producer_version = __version__
    fingerprint = fingerprint_model_bytes(proto.SerializeToString(), source="exported graph")
    meta = _metadata(net, io, fingerprint)
    del proto.metadata_props[:]
    proto.metadata_props.add(key=METADATA_KEY, value=json.dumps(meta))
    data = proto.SerializeToString()
    if fingerprint_model_bytes(data) != fingerprint:
        raise ExportError("the fingerprint changed when the metadata was added")
    out = Path(out)
    tmp_check = out.with_name(f".{out.name}.check.onnx")
    try:
        atomic_write_bytes(tmp_check, data)
        load(tmp_check, provider="cpu")  # the runtime must accept what we write
    except Exception as e:
        raise ExportError(f"the runtime refuses the exported model: {e}") from e
    finally:
        tmp_check.unlink(missing_ok=True)
    atomic_write_bytes(out, data)
    return ExportResult(
        path=out,
        fingerprint=fingerprint,
        metadata=meta,
        nodes=tuple(n.op_type for n in proto.graph.node),
        size_bytes=len(data),
    )


# -- verify --------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckResult:
    """One comparison of onnxruntime against PyTorch.

    ``max_abs_*``/``max_rel_*`` are the largest absolute and relative differences of the
    outputs and of the state (relative ones over reference values of magnitude at least
    1e-3, where a ratio means something); ``passed`` uses numpy ``allclose`` semantics
    (``|onnx - torch| <= atol + rtol * |torch|`` everywhere).
    """

    name: str
    passed: bool
    max_abs_output: float = 0.0
    max_rel_output: float = 0.0
    max_abs_state: float = 0.0
    max_rel_state: float = 0.0
    detail: str = ""


@dataclass(frozen=True)
class VerifyReport:
    """The result of ``verify``; ``passed`` is true when every check passed."""

    model: str
    checkpoint: str
    fingerprint: str
    atol: float
    rtol: float
    checks: tuple[CheckResult, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def max_abs_output(self) -> float:
        return max((c.max_abs_output for c in self.checks), default=0.0)

    @property
    def max_abs_state(self) -> float:
        return max((c.max_abs_state for c in self.checks), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        return d

    def format(self) -> str:
        """The report as a table."""
        head = f"{'check':<34}{'max|dy|':>11}{'rel dy':>11}{'max|dh|':>11}{'rel dh':>11}  result"
        rows = [head, "-" * len(head)]
        for c in self.checks:
            nums = (c.max_abs_output, c.max_rel_output, c.max_abs_state, c.max_rel_state)
            cells = "".join(f"{v:>11.2e}" for v in nums)
            rows.append(f"{c.name:<34}{cells}  {'ok' if c.passed else 'FAIL'}")
            if c.detail and not c.passed:
                rows.append(f"    {c.detail}")
        verdict = "PASSED" if self.passed else "FAILED"
        rows.append(
            f"verify {verdict}: {sum(c.passed for c in self.checks)}/{len(self.checks)} checks "
            f"within atol={self.atol:g}, rtol={self.rtol:g}; max |dy| {self.max_abs_output:.2e}, "
            f"max |dstate| {self.max_abs_state:.2e} ({self.seconds:.1f} s)"
        )
        return "\n".join(rows)

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        return atomic_write_bytes(path, json.dumps(self.to_dict(), indent=2).encode() + b"\n")


_REL_FLOOR = 1e-3  # relative differences of values nearer zero say nothing; atol covers them


def _diff(got: np.ndarray, ref: np.ndarray, atol: float, rtol: float) -> tuple[float, float, bool]:
    got64, ref64 = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if got64.shape != ref64.shape:
        return float("inf"), float("inf"), False
    err = np.abs(got64 - ref64)
    mag = np.abs(ref64)
    rel = np.where(mag >= _REL_FLOOR, err / np.maximum(mag, _REL_FLOOR), 0.0)
    ok = bool(np.all(err <= atol + rtol * mag)) and bool(np.all(np.isfinite(got64)))
    return float(err.max(initial=0.0)), float(rel.max(initial=0.0)), ok


def _compare(
    name: str,
    y: np.ndarray,
    y_ref: np.ndarray,
    states: Sequence[np.ndarray],
    states_ref: Sequence[np.ndarray],
    atol: float,
    rtol: float,
) -> CheckResult:
    ay, ry, oky = _diff(y, y_ref, atol, rtol)
    diffs = [_diff(s, r, atol, rtol) for s, r in zip(states, states_ref, strict=True)]
    ah = max((d[0] for d in diffs), default=0.0)
    rh = max((d[1] for d in diffs), default=0.0)
    okh = all(d[2] for d in diffs)
    detail = (
        ""
        if oky and okh
        else f"outputs {'ok' if oky else 'differ'}, state {'ok' if okh else 'differs'}"
    )
    return CheckResult(name, oky and okh, ay, ry, ah, rh, detail)


def _torch_run(
    net: GRUModel, x: np.ndarray, states: Sequence[np.ndarray]
) -> tuple[np.ndarray, list[np.ndarray]]:
    with torch.inference_mode():
        xs = torch.from_numpy(x)
        st = [torch.from_numpy(s) for s in states]
        h0: Any = st[0] if net.config.cell == "gru" else (st[0], st[1])
        y, hn = net(xs, h0)
        outs = [hn] if net.config.cell == "gru" else list(hn)
    return y.numpy(), [o.numpy() for o in outs]


def _metadata_check(model: StreamingModel, net: GRUModel) -> CheckResult:
    spec, cfg = model.spec, net.config
    wanted = {
        "cell": cfg.cell,
        "task": cfg.task,
        "input_size": cfg.input_size,
        "hidden_size": cfg.hidden_size,
        "num_layers": cfg.num_layers,
        "output_size": cfg.output_size,
        "feature_names": tuple(getattr(net, "feature_names", spec.feature_names)),
        "output_names": tuple(getattr(net, "output_names", spec.output_names)),
    }
    bad = [
        f"{k}: model {getattr(spec, k)!r}, checkpoint {v!r}"
        for k, v in wanted.items()
        if getattr(spec, k) != v
    ]
    norm = net.normalization.to_dict()
    for k, v in norm.items():
        if not np.allclose(spec.normalization.get(k, ()), v, rtol=1e-6, atol=0):
            bad.append(f"normalization {k} differs")
    return CheckResult("metadata matches checkpoint", not bad, detail="; ".join(bad))


def verify(
    model_path: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str] | GRUModel,
    *,
    steps: int = 10_000,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    batch_sizes: Sequence[int] = (1, 3, 16),
    sequence_length: int = 200,
    chunkings: int = 3,
    seed: int = 0,
    progress: bool = False,
) -> VerifyReport:
    """Compare the ONNX model under onnxruntime with the PyTorch checkpoint.

    Inputs are drawn at the scale of the training data (from the normalization the
    model carries). Checks: the metadata; full sequences at each of ``batch_sizes``
    from a random initial state; ``steps`` chained single steps through a runtime
    ``Stream`` (state carried call to call); ``chunkings`` random chunkings of one
    sequence through ``Stream.feed``.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    start = time.perf_counter()
    net = checkpoint if isinstance(checkpoint, GRUModel) else load_checkpoint(checkpoint)
    net = net.cpu().eval()
    model = load(model_path, provider="cpu")
    cfg = net.config
    rng = np.random.default_rng(seed)
    norm = net.normalization
    mean = np.asarray(norm.feature_mean, np.float32)
    std = np.asarray(norm.feature_std, np.float32)
    names = [s.input for s in model.spec.states]

    def inputs(*shape: int) -> np.ndarray:
        return (mean + std * rng.standard_normal((*shape, cfg.input_size))).astype(np.float32)

    def init_states(batch: int) -> list[np.ndarray]:
        shape = (cfg.num_layers, batch, cfg.hidden_size)
        return [(0.5 * rng.standard_normal(shape)).astype(np.float32) for _ in names]

    bar = _progress(progress, total=len(batch_sizes) + 2 + chunkings)
    checks = [_metadata_check(model, net)]
    bar.update(1)
    for b in batch_sizes:
        x, h0 = inputs(b, sequence_length), init_states(b)
        feeds = {"x": x, **dict(zip(names, h0, strict=True))}
        outs = model.session.run(None, feeds)
        y_ref, h_ref = _torch_run(net, x, h0)
        checks.append(
            _compare(
                f"full sequence, batch {b}, T={sequence_length}",
                outs[0],
                y_ref,
                outs[1:],
                h_ref,
                atol,
                rtol,
            )
        )
        bar.update(1)

    # Chained single steps through the runtime, against one PyTorch call on the whole
    # sequence: the state makes `steps` round trips through numpy.
    x = inputs(steps)
    h0 = init_states(1)
    stream = model.stream()
    stream.state = {n: h[:, 0] for n, h in zip(names, h0, strict=True)}
    ys = np.stack([stream.step(xi) for xi in x])
    y_ref, h_ref = _torch_run(net, x[None], h0)
    final = [stream.state[n][:, None] for n in names]
    checks.append(_compare(f"{steps} chained steps", ys, y_ref[0], final, h_ref, atol, rtol))
    bar.update(1)

    length = min(steps, 2_000)
    x = inputs(length)
    zeros = [np.zeros((cfg.num_layers, 1, cfg.hidden_size), np.float32) for _ in names]
    y_ref, h_ref = _torch_run(net, x[None], zeros)  # a fresh stream starts from zeros
    for k in range(chunkings):
        cuts = np.sort(
            rng.choice(np.arange(1, length), size=min(20 + 10 * k, length - 1), replace=False)
        )
        stream = model.stream()
        ys = np.concatenate([stream.feed(c) for c in np.split(x, cuts)])
        final = [stream.state[n][:, None] for n in names]
        checks.append(
            _compare(
                f"feed in {len(cuts) + 1} random chunks", ys, y_ref[0], final, h_ref, atol, rtol
            )
        )
        bar.update(1)
    bar.close()
    return VerifyReport(
        model=str(model_path),
        checkpoint=str(checkpoint) if not isinstance(checkpoint, GRUModel) else "<GRUModel>",
        fingerprint=model.spec.fingerprint,
        atol=atol,
        rtol=rtol,
        checks=tuple(checks),
        settings={
            "steps": steps,
            "batch_sizes": list(batch_sizes),
            "sequence_length": sequence_length,
            "chunkings": chunkings,
            "seed": seed,
            "torch": torch.__version__,
            "onnxruntime": _ort_version(),
            "provider": model.provider,
        },
        seconds=time.perf_counter() - start,
    )


def _ort_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(enabled: bool, total: int) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="verify", unit="check", leave=False)
