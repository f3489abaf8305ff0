"""The README's serving snippets run as written: the Batcher's on its own, the
clients' against a real ``stream-gru serve model.onnx`` (on a free port instead of
8000)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Server

pytest.importorskip("tritonclient.http")
pytest.importorskip("websockets.sync.client")
ROOT = Path(__file__).resolve().parents[2]


def _snippets() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Serving a fleet") : readme.index("\n## Speed")]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def _run(code: str, cwd: Path) -> str:
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, f"{code}\n{result.stderr}"
    return result.stdout


def test_the_readme_serving_snippets_run(fleet_model, tmp_path):
    snippets = _snippets()
    assert len(snippets) == 4 and "Batcher" in snippets[0]
    shutil.copyfile(fleet_model.onnx, tmp_path / "model.onnx")
    _run(snippets[0], tmp_path)
    with Server(tmp_path / "model.onnx") as server:
        port = server.url.rsplit(":", 1)[1]
        outputs = [_run(code.replace("localhost:8000", f"127.0.0.1:{port}"), tmp_path)
                   for code in snippets[1:]]  # fmt: skip
        assert "'stream': 'opened'" in outputs[0]
        assert '"key": "dev-1"' in outputs[1].replace("'", '"') and "step" in outputs[1]
        status, _, _ = server.request("GET", "/v1/streams/dev-1999")
        assert status == 200  # the binary frame opened all 2,000
