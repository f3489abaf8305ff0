"""Prove an exported model computes what its PyTorch checkpoint computes (``train`` extra).

``verify`` runs the ONNX file under onnxruntime, through the same runtime users embed,
beside the checkpoint under PyTorch, on inputs drawn at the training data's scale:
full sequences at several batch sizes, a long chain of single steps (the state making
a round trip through numpy at every step), and random chunkings of one sequence.

The reference is the checkpoint evaluated by PyTorch in float64: the function the
network defines, computed exactly for float32 purposes. A check passes where the
project's one agreement rule holds everywhere (``stream_gru.agreement``:
``|onnx - reference| <= atol + rtol * |reference|``), with its float32 allowance: a
trained recurrent network carries float32 rounding along a sequence, and on long random
inputs PyTorch's own float32 run can land beyond the rule. So at each step the limit
widens to ``FLOAT32_ALLOWANCE`` times the distance PyTorch float32 has reached by
then; an export that computes something else is off from the first steps and fails.
The report shows PyTorch float32's distance (the "fp32 noise" column), how many limits
the ONNX file lands from the exact result, and how many were allowed at the end, so a
reader can see how much of a difference is arithmetic and how much is the export.
``docs/agreement.md`` justifies the rule.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..agreement import DEFAULT_ATOL, DEFAULT_RTOL, FLOAT32_ALLOWANCE, AgreementRule
from ..fleet.model import StreamingModel, load
from ..formats.files import atomic_write_bytes
from ..progress import progress_bar
from ..training.network import GRUModel, load_checkpoint, model_facts

__all__ = ["CheckResult", "VerifyReport", "check_against_checkpoint", "verify"]


@dataclass(frozen=True)
class CheckResult:
    """One comparison of onnxruntime against the PyTorch reference (float64).

    ``max_abs_*``/``max_rel_*``: the largest absolute and relative differences of the
    outputs and of the state (relative ones where the reference is not near zero).
    ``float32_noise``: the largest difference between PyTorch's own float32 run and the
    reference, for scale. ``excess``: the largest difference in units of the rule's
    limit (``atol + rtol * |reference|``); ``float32_excess``: PyTorch float32's own,
    in the same units; ``allowed``: how many limits the check allows at its last step
    (1, or the float32 allowance where PyTorch float32 itself drifts).
    """

    name: str
    passed: bool
    max_abs_output: float = 0.0
    max_rel_output: float = 0.0
    max_abs_state: float = 0.0
    max_rel_state: float = 0.0
    float32_noise: float = 0.0
    detail: str = ""
    excess: float = 0.0
    allowed: float = 1.0
    float32_excess: float = 0.0


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

    @property
    def float32_noise(self) -> float:
        return max((c.float32_noise for c in self.checks), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        return d

    def format(self) -> str:
        """The report as a table."""
        cols = ("max|dy|", "rel dy", "max|dh|", "rel dh", "fp32 noise")
        head = (
            f"{'check':<34}"
            + "".join(f"{c:>11}" for c in cols)
            + f"{'/limit':>9}{'allowed':>9}  result"
        )
        rows = [head, "-" * len(head)]
        for c in self.checks:
            nums = (
                c.max_abs_output,
                c.max_rel_output,
                c.max_abs_state,
                c.max_rel_state,
                c.float32_noise,
            )
            cells = "".join(f"{v:>11.2e}" for v in nums)
            cells += f"{_times(c.excess):>9}{_times(c.allowed):>9}"
            rows.append(f"{c.name:<34}{cells}  {'ok' if c.passed else 'FAIL'}")
            if c.detail and not c.passed:
                rows.append(f"    {c.detail}")
        verdict = "PASSED" if self.passed else "FAILED"
        rows.append(
            f"verify {verdict}: {sum(c.passed for c in self.checks)}/{len(self.checks)} checks "
            f"agree with PyTorch (float64) by {AgreementRule(self.atol, self.rtol)}; "
            f"max |dy| {self.max_abs_output:.2e}, max |dstate| {self.max_abs_state:.2e} "
            f"({self.seconds:.1f} s)"
        )
        return "\n".join(rows)

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        return atomic_write_bytes(path, json.dumps(self.to_dict(), indent=2).encode() + b"\n")


@dataclass(frozen=True)
class _Reference:
    """PyTorch's answer in float32 and float64: outputs, then the final states."""

    y32: np.ndarray
    states32: list[np.ndarray]
    y64: np.ndarray
    states64: list[np.ndarray]

    def noise(self) -> float:
        diffs = [np.abs(self.y32 - self.y64).max(initial=0.0)]
        diffs += [
            np.abs(a - b).max(initial=0.0)
            for a, b in zip(self.states32, self.states64, strict=True)
        ]
        return float(max(diffs))


def _run_torch(
    net: GRUModel, x: np.ndarray, states: Sequence[np.ndarray]
) -> tuple[np.ndarray, list[np.ndarray]]:
    dtype = next(net.parameters()).dtype
    with torch.inference_mode():
        xs = torch.from_numpy(x).to(dtype)
        st = [torch.from_numpy(s).to(dtype) for s in states]
        h0: Any = st[0] if net.config.cell == "gru" else (st[0], st[1])
        y, hn = net(xs, h0)
        outs = [hn] if net.config.cell == "gru" else list(hn)
    return y.numpy(), [o.numpy() for o in outs]


def _reference(
    net: GRUModel, net64: GRUModel, x: np.ndarray, states: Sequence[np.ndarray]
) -> _Reference:
    y32, s32 = _run_torch(net, x, states)
    y64, s64 = _run_torch(net64, x, states)
    return _Reference(y32, s32, y64, s64)


# PyTorch float32 this many limits from the exact result: only noise is left to compare.
_NOISE_ONLY = 1e3


def _times(x: float) -> str:
    """A multiple of the limit, for the report."""
    return f"{x:.2f}" if x < 1000 else f"{x:.1e}"


def _compare(
    name: str,
    y: np.ndarray,
    states: Sequence[np.ndarray],
    ref: _Reference,
    atol: float,
    rtol: float,
) -> CheckResult:
    """One check by the agreement rule against the float64 reference: outputs (B, T, O)
    step by step with the float32 allowance PyTorch's own float32 run measures along
    the sequence, final states with the allowance of the last step."""
    rule = AgreementRule(atol, rtol)
    along = rule.float32_allowance(ref.y32, ref.y64, time_axis=1)
    state_noise = [rule.excess(s32, s64) for s32, s64 in zip(ref.states32, ref.states64,
                                                              strict=True)]  # fmt: skip
    float32_excess = max([float(along.max()) / FLOAT32_ALLOWANCE, *state_noise])
    at_the_end = max(1.0, FLOAT32_ALLOWANCE * float32_excess)
    sides = [("outputs", y, ref.y64, along)] + [
        ("state", s, r64, at_the_end) for s, r64 in zip(states, ref.states64, strict=True)
    ]
    problems = []
    measures = []
    hopeless = ""
    if float32_excess >= _NOISE_ONLY:
        hopeless = (
            "; PyTorch float32 itself ends that far from the exact result, so this network "
            "amplifies rounding until it is noise on these inputs: no float32 graph can be "
            "verified over so many steps (try fewer --steps)"
        )
    for what, got, want, allowed in sides:
        m = rule.measure(got, want, allowed=allowed)
        measures.append(m)
        if np.shape(got) != np.shape(want):
            problems.append(f"{what} have shape {np.shape(got)}, PyTorch {np.shape(want)}")
        elif not m.holds:
            where = f" at step {m.first[1]}" if what == "outputs" and m.first else ""
            problems.append(
                f"{what} differ by up to {m.max_abs:.3g}, {_times(m.excess)} times the limit of "
                f"{rule}{where}, beyond the float32 allowance (PyTorch float32 lands up to "
                f"{_times(float32_excess)} times the limit, and {FLOAT32_ALLOWANCE:g} times "
                f"its distance so far is allowed at each step){hopeless}"
            )
    out, state = measures[0], measures[1:]
    return CheckResult(
        name,
        not problems,
        max_abs_output=out.max_abs,
        max_rel_output=out.max_rel,
        max_abs_state=max((m.max_abs for m in state), default=0.0),
        max_rel_state=max((m.max_rel for m in state), default=0.0),
        float32_noise=ref.noise(),
        detail="; ".join(problems),
        excess=max(m.excess for m in measures),
        allowed=at_the_end,
        float32_excess=float32_excess,
    )


def check_against_checkpoint(
    name: str,
    net: GRUModel,
    x: np.ndarray,
    initial: Sequence[np.ndarray],
    outputs: np.ndarray,
    final: Sequence[np.ndarray],
    *,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
) -> CheckResult:
    """Judge a float32 computation of ``net`` by the agreement rule: ``outputs``
    (B, T, O) and the ``final`` states ((L, B, H) each), computed from inputs ``x``
    (B, T, I) and the ``initial`` states, against ``net`` in float64, with the float32
    allowance PyTorch's own float32 run on the same inputs measures."""
    net = net.cpu().eval()
    ref = _reference(net, copy.deepcopy(net).double(), x, initial)
    return _compare(name, outputs, final, ref, atol, rtol)


def _metadata_check(model: StreamingModel, net: GRUModel) -> CheckResult:
    spec = model.spec
    wanted = model_facts(net)
    wanted["feature_names"] = tuple(wanted["feature_names"])
    wanted["output_names"] = tuple(wanted["output_names"])
    bad = [
        f"{k}: model {getattr(spec, k)!r}, checkpoint {v!r}"
        for k, v in wanted.items()
        if getattr(spec, k) != v
    ]
    for k, v in net.normalization.to_dict().items():
        have = np.asarray(spec.normalization.get(k, ()), np.float64)
        if have.shape != np.shape(v):
            bad.append(f"normalization {k}: model {have.size} values, checkpoint {len(v)}")
        elif not np.array_equal(have, v):  # export copies it: the same numbers exactly
            bad.append(f"normalization {k} differs")
    return CheckResult("metadata matches checkpoint", not bad, detail="; ".join(bad))


def verify(
    model_path: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str] | GRUModel,
    *,
    steps: int = 10_000,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    batch_sizes: Sequence[int] = (1, 3, 16),
    sequence_length: int = 200,
    chunkings: int = 3,
    seed: int = 0,
    progress: bool = False,
) -> VerifyReport:
    """Compare the ONNX model under onnxruntime with the PyTorch checkpoint.

    Inputs are drawn at the scale of the training data (per-feature mean and std from
    the normalization the model carries). Checks: the metadata; full sequences at each
    of ``batch_sizes`` from random reachable states (where 20 random samples lead);
    ``steps`` chained single steps through a runtime ``Stream`` (state carried call to
    call); ``chunkings`` random chunkings of one sequence through ``Stream.feed``. See
    the module docstring for the pass rule.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    AgreementRule(atol, rtol)  # ValueError for a bad tolerance, before any work
    start = time.perf_counter()
    net = checkpoint if isinstance(checkpoint, GRUModel) else load_checkpoint(checkpoint)
    net = net.cpu().eval()
    net64 = copy.deepcopy(net).double()
    model = load(model_path, provider="cpu")
    cfg = net.config
    rng = np.random.default_rng(seed)
    norm = net.normalization
    mean = np.asarray(norm.feature_mean, np.float32)
    std = np.asarray(norm.feature_std, np.float32)
    names = [s.input for s in model.spec.states]

    def inputs(*shape: int) -> np.ndarray:
        return (mean + std * rng.standard_normal((*shape, cfg.input_size))).astype(np.float32)

    def reachable_states(batch: int) -> list[np.ndarray]:
        """States a stream can be in: where 20 random samples from zero lead."""
        zeros = [np.zeros((cfg.num_layers, batch, cfg.hidden_size), np.float32) for _ in names]
        _, states = _run_torch(net64, inputs(batch, 20), zeros)
        return [s.astype(np.float32) for s in states]

    def zero_states() -> list[np.ndarray]:
        return [np.zeros((cfg.num_layers, 1, cfg.hidden_size), np.float32) for _ in names]

    def report(checks: list[CheckResult]) -> VerifyReport:
        import onnxruntime

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
                "reference": "PyTorch float64",
                "torch": torch.__version__,
                "onnxruntime": onnxruntime.__version__,
                "provider": model.provider,
            },
            seconds=time.perf_counter() - start,
        )

    checks = [_metadata_check(model, net)]
    if not checks[0].passed:  # other sizes or names: the numbers cannot be compared
        return report(checks)
    bar = progress_bar(
        progress, desc="verify", unit="check", total=len(batch_sizes) + 2 + chunkings
    )
    bar.update(1)
    for b in batch_sizes:
        x, h0 = inputs(b, sequence_length), reachable_states(b)
        outs = model.session.run(None, {"x": x, **dict(zip(names, h0, strict=True))})
        ref = _reference(net, net64, x, h0)
        name = f"full sequence, batch {b}, T={sequence_length}"
        checks.append(_compare(name, outs[0], outs[1:], ref, atol, rtol))
        bar.update(1)

    # Chained single steps through the runtime, against one PyTorch call on the whole
    # sequence: the state makes `steps` round trips through numpy.
    x, h0 = inputs(steps), reachable_states(1)
    stream = model.stream()
    stream.state = {n: h[:, 0] for n, h in zip(names, h0, strict=True)}
    ys = np.stack([stream.step(xi) for xi in x])
    ref = _reference(net, net64, x[None], h0)
    final = [stream.state[n][:, None] for n in names]
    checks.append(_compare(f"{steps} chained steps", ys[None], final, ref, atol, rtol))
    bar.update(1)

    length = min(steps, 2_000)
    x = inputs(length)
    ref = _reference(net, net64, x[None], zero_states())  # a fresh stream starts from zeros
    for k in range(chunkings):
        n_cuts = min(20 + 10 * k, length - 1)
        cuts = np.sort(rng.choice(np.arange(1, length), size=n_cuts, replace=False))
        stream = model.stream()
        ys = np.concatenate([stream.feed(c) for c in np.split(x, cuts)])
        final = [stream.state[n][:, None] for n in names]
        name = f"feed in {len(cuts) + 1} random chunks"
        checks.append(_compare(name, ys[None], final, ref, atol, rtol))
        bar.update(1)
    bar.close()
    return report(checks)
