"""The runtime imports only numpy and onnxruntime."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

BLOCK = "import sys; sys.modules['torch'] = None; sys.modules['onnx'] = None\n"


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_import_and_run_with_torch_and_onnx_blocked(gru_model):
    result = _python(
        f"""
        import numpy as np
        import stream_gru as sg
        model = sg.load({str(gru_model.onnx)!r})
        s = model.stream()
        print(s.feed(np.ones((4, 3))).shape, s.snapshot()[:4])
        """
    )
    assert result.returncode == 0, result.stderr
    assert "(4, 2) b'SGRU'" in result.stdout


def test_runtime_modules_do_not_import_training_libraries():
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, stream_gru, stream_gru.tools.pipe, stream_gru.cli;"
            "print(sorted(m for m in ('torch', 'onnx', 'onnxscript', 'tqdm', 'matplotlib', 'ray')"
            " if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_training_without_torch_says_how_to_install():
    result = _python(
        """
        from stream_gru.cli import main
        main(["export", "x.pt", "--out", "y.onnx"])
        """
    )
    assert result.returncode != 0
    assert "train extra" in result.stderr and "make install" in result.stderr


def test_install_hints_from_a_checkout_and_from_an_index(monkeypatch):
    """From this checkout: the README's commands, torch pinned as the Makefile pins it;
    installed from an index: the extra's name."""
    import re

    from stream_gru import install

    root = Path(__file__).resolve().parent.parent
    pin = re.search(r"(?m)^TORCH\s*:=\s*(\S+)", (root / "Makefile").read_text()).group(1)
    assert install.checkout_root() == root
    hint = install.install_hint("train")
    assert f"pip install {pin} '{root}[train]'" in hint and "make install" in hint
    assert "torch" not in install.install_hint("ray")
    monkeypatch.setattr(install, "checkout_root", lambda: None)
    assert install.install_hint("train") == "pip install 'stream-gru[train]'"
    assert install.install_hint("cpu") == "pip install 'stream-gru[cpu]'"


def test_load_without_onnxruntime_says_how_to_install(gru_model):
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.modules['onnxruntime'] = None\n"
            "import stream_gru as sg\n"
            f"sg.load({str(gru_model.onnx)!r})",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "needs onnxruntime" in result.stderr and "[cpu]'" in result.stderr


def test_the_batcher_needs_no_web_stack_and_serve_says_how_to_install(gru_model):
    """``stream_gru.serve`` (the Batcher) imports with the serve extra's packages
    blocked; ``stream-gru serve`` then names the extra."""
    block = "".join(
        f"sys.modules[{name!r}] = None\n"
        for name in ("starlette", "uvicorn", "prometheus_client", "websockets", "torch", "onnx")
    )
    code = (
        "import sys, asyncio\n" + block + "import numpy as np, stream_gru as sg\n"
        "from stream_gru.serve import Batcher\n"
        f"pool = sg.load({str(gru_model.onnx)!r}).pool(); pool.open('a')\n"
        "async def main():\n"
        "    async with Batcher(pool) as b:\n"
        "        print((await b.step('a', np.ones(3))).shape)\n"
        "asyncio.run(main())\n"
        "from stream_gru.cli import main\n"
        f"sys.exit(main(['serve', {str(gru_model.onnx)!r}]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.stdout.strip() == "(2,)", result.stderr
    assert result.returncode == 1 and "serve needs the serve extra" in result.stderr
    assert "Traceback" not in result.stderr
