"""``stream-gru compare OLD.onnx NEW.onnx --data FILE``: is the new model version the same?

Both models are loaded by the runtime and every recording of the data is streamed
through both, step by step, each recording from a fresh state, as a service would run
them. The report gives the per-step divergence of the outputs (largest absolute and
relative differences, where they occur, how many steps lie beyond the tolerance and the
first of them) and, where the data has the models' target column, both models' metrics.

    from stream_gru.tools.compare.models import compare_models

    result = compare_models("old.onnx", "new.onnx", "recorded.csv", sequence_column="run")
    print(result.format())
    result.within          # every step within atol + rtol * |old|

A step is within tolerance where the project's agreement rule holds for every output
(``stream_gru.agreement``: ``|new - old| <= atol + rtol * |old|``, the old model as
reference); the defaults are those of ``verify``. Two float32 runs are compared, so
there is no float32 allowance. Models that take other features, give other outputs or
solve another task cannot be compared: ``CompareError`` names the difference. So does
data that lacks a feature column. Needs only the runtime (numpy and onnxruntime);
``tqdm``, where installed, shows progress. The GRU-vs-LSTM mode lives in ``cells``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...agreement import DEFAULT_ATOL, DEFAULT_RTOL, AgreementRule
from ...core.spec import ModelSpec
from ...data.csv_files import DEFAULT_CSV, CsvOptions
from ...data.recordings import Recording
from ...errors import CompareError
from ...fleet.model import StreamingModel, load
from ...formats.files import atomic_write_bytes
from ...progress import progress_bar
from .data import choose_sequence_column, read_features, read_targets, stream_metrics

__all__ = [
    "DEFAULT_ATOL",
    "DEFAULT_RTOL",
    "CompareError",
    "Location",
    "ModelComparison",
    "ModelSummary",
    "compare_models",
    "stream_metrics",
]

_REL_FLOOR = 1e-3  # as in verification: relative differences of values nearer 0 say nothing
_WORST_SHOWN = 3  # recordings listed by their largest difference when the models diverge


@dataclass(frozen=True)
class Location:
    """One output at one step: ``step`` counts from 0 within recording ``index``
    (recordings in file order)."""

    recording: str
    index: int
    step: int
    output: str
    old: float
    new: float

    def __str__(self) -> str:
        return (
            f"recording {self.recording!r} step {self.step}, output {self.output!r}: "
            f"old {self.old:.7g}, new {self.new:.7g}"
        )


@dataclass(frozen=True)
class ModelSummary:
    """One side of the comparison: what the file says, and its metrics on the data
    (None where the data has no target column or its labels do not fit)."""

    path: str
    cell: str | None
    task: str | None
    input_size: int
    hidden_size: int | None
    num_layers: int | None
    output_size: int | None
    fingerprint: str
    metrics: dict[str, float] | None = None

    def describe(self) -> str:
        if self.cell is None:
            return f"third-party, I={self.input_size} O={self.output_size}"
        return (
            f"{self.cell.upper()} {self.task}, I={self.input_size} H={self.hidden_size} "
            f"L={self.num_layers} O={self.output_size}"
        )


@dataclass(frozen=True)
class ModelComparison:
    """The result of ``compare_models``. ``within``: every step of every recording within
    ``atol + rtol * |old|``; ``exit_code`` is 0 then, else 1."""

    old: ModelSummary
    new: ModelSummary
    data: str
    atol: float
    rtol: float
    recordings: int
    steps: int
    output_names: tuple[str, ...]
    max_abs: float
    max_rel: float
    worst: Location | None
    beyond_steps: int
    beyond_recordings: int
    first_beyond: Location | None
    argmax_agreement: float | None
    per_recording: tuple[tuple[str, int, float], ...] = ()  # (name, steps, max |dy|)
    metric_column: str | None = None
    metric_note: str = ""
    sequence_column: str | None = None
    recordings_note: str = ""
    seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def within(self) -> bool:
        return self.beyond_steps == 0

    @property
    def exit_code(self) -> int:
        return 0 if self.within else 1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["per_recording"] = [
            {"recording": n, "steps": s, "max_abs": a} for n, s, a in self.per_recording
        ]
        d["within"] = self.within
        return d

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        return atomic_write_bytes(path, json.dumps(self.to_dict(), indent=2).encode() + b"\n")

    def format(self) -> str:
        """The report as printed by ``stream-gru compare``."""
        old, new = self.old, self.new
        width = max(len(old.path), len(old.describe()), 16) + 2
        rows = [
            f"compare {old.path} (old) with {new.path} (new) on {self.data}: "
            f"{self.recordings} recording(s), {self.steps} steps, each from a fresh state",
            *([f"  {self.recordings_note}"] if self.recordings_note else []),
            "",
            f"{'':<18}{'old':<{width}}new",
            f"{'file':<18}{old.path:<{width}}{new.path}",
            f"{'model':<18}{old.describe():<{width}}{new.describe()}",
            f"{'fingerprint':<18}{old.fingerprint[:16]:<{width}}{new.fingerprint[:16]}"
            + ("  (same weights)" if old.fingerprint == new.fingerprint else ""),
        ]
        if old.metrics is not None and new.metrics is not None:
            for key in old.metrics:
                a, b = old.metrics[key], new.metrics.get(key, float("nan"))
                rows.append(f"{key:<18}{a:<{width}.4f}{b:.4f}")
        if self.metric_note:
            rows.append(f"{'target':<18}{self.metric_note}")
        tol = f"atol {self.atol:g} + rtol {self.rtol:g} * |old|"
        rows += [
            "",
            f"divergence of the outputs ({', '.join(self.output_names)}), step by step:",
            f"  max |new - old|   {self.max_abs:.3e}"
            + (f"  at {self.worst}" if self.worst else ""),
            f"  max relative      {self.max_rel:.3e}  (where |old| >= {_REL_FLOOR:g})",
            f"  beyond {tol}: {self.beyond_steps} of {self.steps} steps "
            f"({100 * self.beyond_steps / max(self.steps, 1):.1f}%), in {self.beyond_recordings} "
            f"of {self.recordings} recording(s)",
        ]
        if self.first_beyond is not None:
            rows.append(f"  first beyond      {self.first_beyond}")
        if self.argmax_agreement is not None:
            rows.append(f"  same class        {100 * self.argmax_agreement:.2f}% of steps (argmax)")
        if not self.within:
            worst = sorted(self.per_recording, key=lambda r: -r[2])[:_WORST_SHOWN]
            rows.append(
                "  worst recordings  "
                + ", ".join(f"{n!r} {a:.2e} ({s} steps)" for n, s, a in worst)
            )
        verdict = (
            f"SAME within {tol} (exit 0)" if self.within else f"DIFFERENT beyond {tol} (exit 1)"
        )
        rows.append(f"compare: {verdict}; {self.seconds:.1f} s")
        return "\n".join(rows)


# -- what can be compared --------------------------------------------------------------
def _check_comparable(old: StreamingModel, new: StreamingModel, names: tuple[str, str]) -> None:
    a, b = old.spec, new.spec
    problems = []
    if set(a.feature_names) != set(b.feature_names):
        only_a = [f for f in a.feature_names if f not in b.feature_names]
        only_b = [f for f in b.feature_names if f not in a.feature_names]
        detail = "; ".join(
            f"only {who} takes {', '.join(only)}"
            for who, only in zip(names, (only_a, only_b), strict=True)
            if only
        )
        problems.append(f"the models take other features: {detail}")
    if a.output_size != b.output_size or a.output_names != b.output_names:
        problems.append(
            f"the models give other outputs: {names[0]} {a.output_size} "
            f"({', '.join(a.output_names)}), {names[1]} {b.output_size} "
            f"({', '.join(b.output_names)})"
        )
    if a.task != b.task:
        problems.append(f"{names[0]} is a {a.task} model, {names[1]} a {b.task} model")
    elif a.task == "regression" and a.horizon != b.horizon:
        problems.append(
            f"{names[0]} predicts {a.horizon} steps ahead, {names[1]} {b.horizon} steps ahead"
        )
    for name, spec in zip(names, (a, b), strict=True):
        if len(spec.sample_shape) != 1 or len(spec.feature_names) != spec.input_size:
            problems.append(
                f"{name} takes samples of shape {spec.sample_shape} with "
                f"{len(spec.feature_names)} feature names; compare reads one column per feature"
            )
    if problems:
        raise CompareError("cannot compare: " + "; ".join(problems))


# -- the comparison --------------------------------------------------------------------
def _as_model(model: str | os.PathLike[str] | StreamingModel) -> StreamingModel:
    if isinstance(model, StreamingModel):
        return model
    return load(model, provider="cpu", threads=1)


def _summary(model: StreamingModel, metrics: dict[str, float] | None) -> ModelSummary:
    s = model.spec
    return ModelSummary(
        str(model.path),
        s.cell,
        s.task,
        s.input_size,
        s.hidden_size,
        s.num_layers,
        s.output_size,
        s.fingerprint,
        metrics,
    )


class _Tally:
    """The divergence, added up recording by recording."""

    def __init__(self, rule: AgreementRule, output_names: Sequence[str]) -> None:
        self.rule, self.names = rule, output_names
        self.max_abs = self.max_rel = 0.0
        self.worst: Location | None = None
        self.first: Location | None = None
        self.beyond_steps = self.beyond_recordings = self.same_class = 0
        self.per_recording: list[tuple[str, int, float]] = []

    def add(self, index: int, rec: Recording, old: np.ndarray, new: np.ndarray) -> None:
        y0 = old.reshape(len(rec), -1).astype(np.float64)
        y1 = new.reshape(len(rec), -1).astype(np.float64)
        ok = self.rule.ratio(y1, y0) <= 1.0  # the agreement rule, old as reference
        err = np.abs(y1 - y0)
        err = np.where(np.isfinite(err), err, np.inf)
        mag = np.abs(y0)

        def where(t: int, j: int) -> Location:
            return Location(rec.name, index, t, self.names[j], float(y0[t, j]), float(y1[t, j]))

        largest = int(np.argmax(err))
        t_max, j_max = divmod(largest, err.shape[1])
        self.per_recording.append((rec.name, len(rec), float(err.flat[largest])))
        if self.worst is None or err.flat[largest] > self.max_abs:
            self.max_abs, self.worst = float(err.flat[largest]), where(t_max, j_max)
        rel = np.where(mag >= _REL_FLOOR, err / np.maximum(mag, _REL_FLOOR), 0.0)
        self.max_rel = max(self.max_rel, float(rel.max(initial=0.0)))
        bad_steps = ~ok.all(axis=1)
        if bad_steps.any():
            self.beyond_steps += int(bad_steps.sum())
            self.beyond_recordings += 1
            if self.first is None:
                t = int(np.flatnonzero(bad_steps)[0])
                self.first = where(t, int(np.flatnonzero(~ok[t])[0]))
        self.same_class += int((y0.argmax(axis=1) == y1.argmax(axis=1)).sum())


def _stream(model: StreamingModel, x: np.ndarray) -> np.ndarray:
    """Step a fresh stream through ``x`` (T, I) one sample at a time."""
    stream = model.stream()
    return np.stack([stream.step(row) for row in x])


def _metrics(
    path: Path,
    spec: ModelSpec,
    outs: tuple[list[np.ndarray], list[np.ndarray]],
    output_names: Sequence[str],
    column: str | None,
    sequence_column: str | None,
    csv: CsvOptions,
) -> tuple[list[dict[str, float] | None], str]:
    """Both models' metrics on the target ``column``, or why there are none. The models
    share task and horizon (``_check_comparable``), so one reading serves both."""
    if column is None:
        return [None, None], "the models name no target column (give --target COL): no metrics"
    data = read_targets(path, spec, column, spec.feature_names, sequence_column, csv)
    if isinstance(data, str):
        return [None, None], data
    got = [stream_metrics(o, data, output_names, str(spec.task)) for o in outs]
    notes = [g for g in got if isinstance(g, str)]
    if notes:
        return [None, None], notes[0]
    return [g if isinstance(g, dict) else None for g in got], ""


def compare_models(
    old: str | os.PathLike[str] | StreamingModel,
    new: str | os.PathLike[str] | StreamingModel,
    data: str | os.PathLike[str],
    *,
    sequence_column: str | None = None,
    target: str | None = None,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    progress: bool = False,
    csv: CsvOptions = DEFAULT_CSV,
) -> ModelComparison:
    """Stream every recording of ``data`` (CSV or NPZ) through both models, step by step
    from a fresh state, and compare their outputs step by step.

    Feature columns are found by each model's ``spec.feature_names`` (their order in
    the file does not matter). ``sequence_column`` (CSV) cuts the rows into recordings.
    Without ``sequence_column``, a CSV is cut by the column the models were trained
    with (their metadata records it) where the file has it, else it is one recording.
    ``target`` names the column of true values for the metrics (default: the one the
    models were trained on; NPZ: ``y``). ``csv``: missing values and the delimiter, as
    ``load_csv`` takes them. Raises ``CompareError`` for models that cannot
    be compared or data without their feature columns.
    """
    rule = AgreementRule(atol, rtol)  # ValueError for a bad tolerance
    start = time.perf_counter()
    path = Path(data)
    a, b = _as_model(old), _as_model(new)
    names = (f"OLD ({a.path.name})", f"NEW ({b.path.name})")
    if a.path.name == b.path.name and a.path != b.path:
        names = (f"OLD ({a.path})", f"NEW ({b.path})")
    _check_comparable(a, b, names)
    sequence_column, recordings_note = choose_sequence_column(
        path, sequence_column, (a.spec, b.spec), csv
    )
    feats = read_features(path, a.spec.feature_names, sequence_column, csv)
    cols = {n: i for i, n in enumerate(feats.columns)}
    idx = [np.asarray([cols[f] for f in m.spec.feature_names]) for m in (a, b)]
    output_names = a.spec.output_names or tuple(f"y{j}" for j in range(a.spec.output_size or 1))

    total = sum(len(r) for r in feats.recordings)
    bar = progress_bar(progress, desc="compare", unit="step", total=2 * total)
    tally = _Tally(rule, output_names)
    outs: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
    for i, rec in enumerate(feats.recordings):
        for side, (model, columns) in enumerate(zip((a, b), idx, strict=True)):
            outs[side].append(_stream(model, np.ascontiguousarray(rec.x[:, columns])))
            bar.update(len(rec))
        tally.add(i, rec, outs[0][-1], outs[1][-1])
    bar.close()

    column = "y" if path.suffix.lower() == ".npz" else target or a.spec.target or b.spec.target
    metrics, note = _metrics(path, a.spec, outs, output_names, column, sequence_column, csv)
    if metrics[0] is not None:
        note = f"column {column!r}" + (" (the models' own)" if not target else "")
    return ModelComparison(
        old=_summary(a, metrics[0]),
        new=_summary(b, metrics[1]),
        data=str(path),
        atol=float(atol),
        rtol=float(rtol),
        recordings=len(feats.recordings),
        steps=total,
        output_names=tuple(output_names),
        max_abs=tally.max_abs,
        max_rel=tally.max_rel,
        worst=tally.worst if tally.max_abs > 0 else None,  # identical: no place to name
        beyond_steps=tally.beyond_steps,
        beyond_recordings=tally.beyond_recordings,
        first_beyond=tally.first,
        argmax_agreement=tally.same_class / total if a.spec.task == "classification" else None,
        per_recording=tuple(tally.per_recording),
        metric_column=column if metrics[0] is not None else None,
        metric_note=note,
        sequence_column=sequence_column,
        recordings_note=recordings_note,
        seconds=time.perf_counter() - start,
        settings={"sequence_column": sequence_column, "target": column, "provider": a.provider},
    )
