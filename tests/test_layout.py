"""The package's shape: layers (import-linter, in ``make lint``), no import cycle, no
module past what one person can hold in mind, documents cited where they exist, the
tests mirroring the parts, and the runtime's tests free of torch."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the layers are checked by make lint

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "stream_gru"
MAX_MODULE_LINES = 500
# Kept for the old spellings of earlier releases (stream_gru.cli, stream_gru.datasets).
SHIMS = {"cli", "datasets", "__main__"}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_module_is_over_500_lines():
    sizes = {p.relative_to(ROOT): len(p.read_text().splitlines()) for p in _modules()}
    too_long = {str(p): n for p, n in sizes.items() if n > MAX_MODULE_LINES}
    assert not too_long, f"split these modules: {too_long}"


def test_no_import_cycle_between_modules_type_checking_imports_included():
    graph = grimp.build_graph("stream_gru", exclude_type_checking_imports=False)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan: strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in graph.find_modules_directly_imported_by(module):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    assert cycles == []
    assert len(graph.modules) > 60  # the graph was really built


def test_every_part_has_a_place_in_the_layers():
    """A new subpackage or top-level module must be given its layer (pyproject.toml)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c for c in config["contracts"] if c["id"] == "layers"]
    named = {n.strip() for layer in layers["layers"] for n in layer.split("|")}
    parts = {p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    parts |= {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert parts - SHIMS == named, "give each part of stream_gru its layer in pyproject.toml"
    assert set(layers["exhaustive_ignores"]) == SHIMS


def test_the_shims_only_forward():
    """The old spellings hold no code of their own: they import from their new home."""
    for name in ("cli", "datasets"):
        tree = ast.parse((PACKAGE / f"{name}.py").read_text())
        kinds = {type(node).__name__ for node in tree.body}
        assert kinds <= {"Expr", "ImportFrom", "Assign", "Import", "If"}, (name, kinds)
        for node in tree.body:
            if isinstance(node, ast.If):  # only the ``python -m`` entry
                assert ast.unparse(node.test) == "__name__ == '__main__'", name


def test_the_layers_hold(tmp_path):
    """The import-linter contracts (``make lint`` runs them too)."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    if not lint_imports.exists():
        pytest.skip("import-linter is not installed (the dev extra)")
    result = subprocess.run([str(lint_imports)], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


CITED_FILE = re.compile(
    r"(?<![\w/.])((?:docs|benchmarks|tests|examples|export|stream_gru)/[\w./-]+\.(?:md|py))\b"
)


def _project_texts() -> list[Path]:
    files = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *_modules()]
    for folder in ("benchmarks", "examples", "export", "tests"):
        files += (ROOT / folder).rglob("*.py")
        files += (ROOT / folder).rglob("*.md")
    return files


def test_nothing_cites_a_document_the_repo_lacks():
    missing = {}
    for path in _project_texts():
        text = path.read_text()
        for banned in (f"{name}.md" for name in ("DESIGN", "STYLE", "GPU")):  # not the repo's
            assert banned not in text, f"{path.relative_to(ROOT)} cites {banned}"
        for cited in CITED_FILE.findall(text):
            if not (ROOT / cited).exists():
                missing.setdefault(str(path.relative_to(ROOT)), []).append(cited)
    assert not missing, missing


def test_the_package_never_imports_its_own_root():
    """Modules import the part they need (``from ..core.stream import Stream``), never
    ``stream_gru`` itself: the root re-exports, it is not a dependency."""
    offenders = []
    for path in _modules():
        if path.parent == PACKAGE and path.name in ("__init__.py", "__main__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "stream_gru" and node.level == 0:
                offenders.append(str(path.relative_to(ROOT)))
            if isinstance(node, ast.ImportFrom) and node.level > 0 and node.module is None:
                depth = len(path.relative_to(PACKAGE).parts) - 1
                if node.level > depth:
                    offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_the_tests_mirror_the_parts():
    parts = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    folders = {p.name for p in (ROOT / "tests").iterdir() if (p / "__init__.py").exists()}
    assert parts <= folders, f"a tests/ folder for each part: {sorted(parts - folders)}"


def test_the_runtime_tests_pass_without_torch_or_ray():
    """tests/core and tests/formats run on the committed models (tests/models), with
    torch and Ray absent; none of them skips for it. (Those that edit a model file use
    the onnx package, of the train extra; without it they skip.)"""
    env = {**os.environ, "STREAM_GRU_TEST_WITHOUT": "torch,ray"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
         "tests/core", "tests/formats"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    skipped = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert all("CUDA" in line for line in skipped), skipped
    assert " passed" in result.stdout
