"""Rebuild the small models the tests run: ``python tests/models/build.py`` (needs the
train extra: torch and onnx).

Each is built from seeded random weights with a non-trivial normalization (so the
normalization inside the graph is exercised), saved as a checkpoint and exported to
ONNX with its embedded one-step graphs. The ONNX files are committed so the runtime's
tests run without torch; the checkpoints are committed beside them so the export
tests verify the very files the runtime tests use (``tests/export`` checks that each
ONNX file still verifies against its checkpoint, and that this script still makes
files of the same spec). ``NAME.reference.npz`` holds PyTorch's float64 outputs and
final states for 2,000 chained steps of seeded inputs, so ``tests/core`` holds the
runtime to PyTorch's numbers without torch. Run it again when the export or the
metadata format changes.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Recipe:
    """One test model: its shapes, cell, task and seed."""

    name: str
    cell: str
    task: str
    seed: int
    input_size: int = 3
    hidden_size: int = 8
    num_layers: int = 2
    output_size: int = 2
    normalized: bool = True  # a non-trivial feature (and target) normalization


RECIPES = (
    Recipe("gru", "gru", "classification", seed=1),  # a 2-layer GRU classifier
    Recipe("gru_twin", "gru", "classification", seed=2),  # same shapes, other weights
    Recipe("lstm", "lstm", "regression", seed=3),  # with target de-normalization
    # The fleet size the benchmarks measure: a 1-layer GRU, H=64, I=8, O=4.
    Recipe("fleet", "gru", "classification", seed=11, input_size=8, hidden_size=64,
           num_layers=1, output_size=4, normalized=False),
)  # fmt: skip


def build(recipe: Recipe, out_dir: Path) -> Path:
    """Write ``NAME.pt`` and ``NAME.onnx`` into ``out_dir``; the ONNX path."""
    import torch

    from stream_gru.export import export_onnx
    from stream_gru.training.network import GRUConfig, GRUModel, Normalization, save_checkpoint

    torch.manual_seed(recipe.seed)
    cfg = GRUConfig(
        input_size=recipe.input_size,
        hidden_size=recipe.hidden_size,
        num_layers=recipe.num_layers,
        output_size=recipe.output_size,
        task=recipe.task,
        cell=recipe.cell,
    )
    norm = None
    if recipe.normalized:
        targets = ((100.0, -5.0), (20.0, 0.5)) if recipe.task == "regression" else ((), ())
        norm = Normalization((1.0, -2.0, 0.5), (2.0, 0.5, 3.0), *targets)
    net = GRUModel(cfg, norm) if norm is not None else GRUModel(cfg)
    if recipe.input_size == 3:
        features = ["ax", "ay", "az"]
    else:
        features = [f"f{i}" for i in range(recipe.input_size)]
    if recipe.task == "regression":
        outputs = [f"t{i + 1}" for i in range(recipe.output_size)]
        training = {"target": "t", "horizon": 0}
    else:
        outputs = ["walk", "rest"] if recipe.output_size == 2 else list("abcd")
        training = {"target": "label", "horizon": 0} if recipe.normalized else None
    ckpt = save_checkpoint(
        out_dir / f"{recipe.name}.pt",
        net,
        feature_names=features,
        output_names=outputs,
        **({"training": training} if training is not None else {}),
    )
    return export_onnx(ckpt, out_dir / f"{recipe.name}.onnx").path


REFERENCE_STEPS = 2_000


def write_reference(recipe: Recipe, out_dir: Path) -> Path:
    """PyTorch float64 on ``REFERENCE_STEPS`` chained steps of seeded inputs, from the
    checkpoint ``build`` wrote: ``x`` (float32, as the runtime gets it), ``y`` (float64)
    and the final state of each state input, named as in the ONNX file."""
    import numpy as np
    import torch

    from stream_gru.training.network import load_checkpoint

    net = load_checkpoint(out_dir / f"{recipe.name}.pt").double()
    rng = np.random.default_rng(recipe.seed)
    x = (rng.standard_normal((REFERENCE_STEPS, recipe.input_size)) * 2 + 1).astype(np.float32)
    with torch.inference_mode():
        y, state = net(torch.from_numpy(x[None]).double())
    states = [state] if recipe.cell == "gru" else list(state)
    names = ["h0"] if recipe.cell == "gru" else ["h0", "c0"]
    arrays = {f"state_{n}": s[:, 0].numpy() for n, s in zip(names, states, strict=True)}
    path = out_dir / f"{recipe.name}.reference.npz"
    np.savez_compressed(path, x=x, y=y[0].numpy(), **arrays)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder for the files")
    args = parser.parse_args(argv)
    for recipe in RECIPES:
        paths = [build(recipe, args.out)]
        if recipe.name in ("gru", "lstm"):
            paths.append(write_reference(recipe, args.out))
        for path in paths:
            print(f"{path} ({path.stat().st_size / 1024:.1f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
