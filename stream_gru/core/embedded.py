"""The graphs a model file carries beside its own, for pools (this project's GRUs).

Export writes two more graphs into the metadata (``docs/formats.md``): the one-step
graph (a GRU cell in plain Gemm/Sigmoid/Tanh nodes, batch-major, faster than the GRU op
for many streams at once: ``docs/design.md``, trap 7) and its pooled variant (Gather the
tick's slots from one state tensor, the cell, ScatterND them back: for states kept on a
device). Each is base64 in its own metadata key with its sha256 in the main document.

The file's weights fingerprint covers the main graph only, so each embedded graph is
also checked against the main graph when it is loaded (``check_against``): a few
chained steps of a few streams, by the agreement rule. A file whose embedded graphs were
edited, sha256 and all, is refused with ``ModelError``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..agreement import DEFAULT_RULE
from ..errors import ModelError
from .session import SessionOptions, create_session
from .spec import ModelIO, ModelSpec

__all__ = ["BatchRun", "OneStepGraph", "PooledGraph", "check_against", "embedded_bytes"]

States = Mapping[str, np.ndarray]
#: ``run(samples (n, *sample), states {name: (n, *state)}) -> (outputs (n, *out), states)``
BatchRun = Callable[[np.ndarray, States], tuple[np.ndarray, dict[str, np.ndarray]]]


@dataclass(frozen=True)
class OneStepGraph:
    """The one-step graph: ``run(samples, states)`` for ``n`` streams, batch-major.
    ``states`` maps the model's state names to the graph's (input, output) names."""

    session: Any
    input: str
    output: str
    states: tuple[tuple[str, str, str], ...]  # (model's state name, graph input, output)
    name: str = "step"

    @classmethod
    def from_session(cls, session: Any, spec: ModelSpec, source: str) -> OneStepGraph:
        """The graph described by ``spec.step_graph``; ``ModelError`` where the
        description is malformed or names tensors the graph lacks."""
        info = spec.step_graph or {}
        try:
            io = ModelIO.from_json(info["io"])
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"{source}: its description is malformed: {e!r}") from None
        names = {i.name for i in session.get_inputs()} | {o.name for o in session.get_outputs()}
        wanted = {
            io.input,
            io.output,
            *(p.input for p in io.states),
            *(p.output for p in io.states),
        }
        if not wanted <= names or len(io.states) != len(spec.states):
            raise ModelError(f"{source} does not have the inputs and outputs it describes")
        pairs = zip(spec.states, io.states, strict=True)
        return cls(
            session, io.input, io.output, tuple((m.input, s.input, s.output) for m, s in pairs)
        )

    def run(self, samples: np.ndarray, states: States) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        feeds = {self.input: samples}
        for name, graph_input, _ in self.states:
            feeds[graph_input] = states[name]
        y, *new = self.session.run([self.output, *(out for _, _, out in self.states)], feeds)
        return y, {name: arr for (name, _, _), arr in zip(self.states, new, strict=True)}


@dataclass(frozen=True)
class PooledGraph:
    """The pooled one-step graph: one tensor per state [capacity, *state] (``states``:
    (the model's state name, the graph's input, its output)), ``slots`` int64 [n] and
    ``x`` [n, *sample] in; ``y`` and the states with the slots replaced out. A pool
    binds it to device tensors (``fleet.stores.DeviceStates``)."""

    session: Any
    states: tuple[tuple[str, str, str], ...]

    @classmethod
    def from_session(cls, session: Any, spec: ModelSpec, source: str) -> PooledGraph:
        """The graph ``spec.pool_graph`` describes (a file of 0.1.0 names no states: its
        one state is ``states`` -> ``states_out``); ``ModelError`` where it does not
        have the tensors it names."""
        described = (spec.pool_graph or {}).get("states")
        if described is None:
            if len(spec.states) != 1:
                raise ModelError(f"{source} names no states for a model of several")
            described = [[spec.states[0].input, "states", "states_out"]]
        try:
            states = tuple((str(m), str(i), str(o)) for m, i, o in described)
        except (TypeError, ValueError):
            raise ModelError(f"{source}: its states are malformed") from None
        names = {i.name for i in session.get_inputs()} | {o.name for o in session.get_outputs()}
        wanted = {"slots", "x", "y", *(i for _, i, _ in states), *(o for _, _, o in states)}
        if not wanted <= names or sorted(m for m, _, _ in states) != sorted(
            p.input for p in spec.states
        ):
            raise ModelError(f"{source} does not have the inputs and outputs it describes")
        return cls(session, states)

    def run(self, samples: np.ndarray, states: States) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The graph on ``len(samples)`` streams in slots 0..n-1 (for checks)."""
        feeds = {graph_input: states[name] for name, graph_input, _ in self.states}
        feeds.update(slots=np.arange(len(samples)), x=samples)
        y, *out = self.session.run(["y", *(o for _, _, o in self.states)], feeds)
        return y, {name: arr for (name, _, _), arr in zip(self.states, out, strict=True)}


def embedded_bytes(
    metadata: Mapping[str, str], key: str, info: Mapping[str, Any] | None, source: str
) -> bytes | None:
    """The bytes of the graph in metadata ``key`` (its sha256 checked against ``info``),
    or None where the file carries none."""
    raw = metadata.get(key)
    if info is None or raw is None:
        return None
    try:
        data = base64.b64decode(raw.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise ModelError(f"{source} is not valid base64") from None
    if hashlib.sha256(data).hexdigest() != info.get("sha256"):
        raise ModelError(f"{source} does not match its sha256 in the metadata")
    return data


def open_embedded(data: bytes, options: SessionOptions, source: str) -> Any:
    """A session of an embedded graph's bytes."""
    session, _ = create_session(data, options, source=source)
    return session


def check_against(
    theirs: BatchRun,
    ours: BatchRun,
    spec: ModelSpec,
    initial: Mapping[str, np.ndarray],
    source: str,
    *,
    streams: int = 4,
    steps: int = 3,
) -> None:
    """``ModelError`` unless ``theirs`` computes what ``ours`` (the model's own graph)
    does: ``steps`` chained steps of ``streams`` streams from ``initial`` (one stream's
    state), samples drawn at the data's scale, by the agreement rule."""
    rng = np.random.default_rng(0)
    norm, shape = spec.normalization, spec.sample_shape
    mean = np.asarray(norm.get("feature_mean") or np.zeros(shape), np.float32).reshape(shape)
    std = np.asarray(norm.get("feature_std") or np.ones(shape), np.float32).reshape(shape)
    state_ours = {k: np.repeat(v[None], streams, axis=0) for k, v in initial.items()}
    state_theirs = dict(state_ours)
    for t in range(steps):
        x = (mean + std * rng.standard_normal((streams, *shape))).astype(np.float32)
        y_ours, state_ours = ours(x, state_ours)
        y_theirs, state_theirs = theirs(x, state_theirs)
        agree = DEFAULT_RULE.holds(y_theirs, y_ours) and all(
            DEFAULT_RULE.holds(state_theirs[k], state_ours[k]) for k in state_ours
        )
        if not agree:
            raise ModelError(
                f"{source} does not compute what the model's own graph computes (step {t} "
                f"of a check on {streams} streams): the file was changed after export"
            )
