"""The onnxruntime session: provider choice, threads and spinning.

The defaults suit a real-time process: one intra-op thread, sequential execution, and
no spinning thread pools, so a loaded model that is not stepping uses no CPU
(docs/design.md, trap 9).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ModelError

if TYPE_CHECKING:
    import onnxruntime

__all__ = [
    "PROVIDERS",
    "Provider",
    "SessionOptions",
    "check_placement",
    "create_session",
    "import_onnxruntime",
]

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
PROVIDERS = ("auto", "cpu", "cuda")
Provider = Literal["auto", "cpu", "cuda"]
_ALIASES = {"cpu": "cpu", CPU.lower(): "cpu", "cuda": "cuda", CUDA.lower(): "cuda", "auto": "auto"}

GPU_INSTALL_HINT = (
    "install the GPU wheel in place of the CPU one: "
    "pip uninstall -y onnxruntime && pip install 'stream-gru[gpu]' "
    "(onnxruntime-gpu needs a matching CUDA and cuDNN; see the README, 'GPU')"
)


@dataclass(frozen=True)
class SessionOptions:
    """How the session runs.

    ``provider``: "auto" (CUDA where usable, else CPU), "cpu" or "cuda".
    ``threads``: intra-op threads (1 is the lowest latency for small models).
    ``spinning``: let idle pool threads spin for lower wake-up latency at the cost of
    burning CPU while idle; off by default.
    ``memory_arena``: onnxruntime's CPU memory arena. Off by default: without it a
    one-step call was about 10% faster here (8.6 vs 9.5 us for H=64), large batches ran
    the same, and memory goes back to the system between calls.
    """

    provider: Provider | str = "auto"  # also onnxruntime's own names, any case
    threads: int = 1
    spinning: bool = False
    memory_arena: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.provider, str) or self.provider.lower() not in _ALIASES:
            raise ValueError(f"provider must be one of {PROVIDERS}, got {self.provider!r}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 0:
            raise ValueError(
                f"threads must be a non-negative int (0: onnxruntime's default), got "
                f"{self.threads!r}"
            )
        for name in ("spinning", "memory_arena"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")


def import_onnxruntime() -> Any:
    """Import onnxruntime, or say how to install it."""
    try:
        import onnxruntime
    except ImportError as e:
        from ..install import install_hint

        raise ImportError(
            f"stream_gru needs onnxruntime to run models: {install_hint('cpu')} "
            f"(or the 'gpu' extra for CUDA)"
        ) from e
    return onnxruntime


def _ort_options(ort: Any, options: SessionOptions, profile: bool = False) -> Any:
    so = ort.SessionOptions()
    if profile:  # read once by check_placement, after the first run
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tempfile.gettempdir(), f"stream_gru_{os.getpid()}")
    so.intra_op_num_threads = options.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.enable_cpu_mem_arena = options.memory_arena
    spin = "1" if options.spinning else "0"
    so.add_session_config_entry("session.intra_op.allow_spinning", spin)
    so.add_session_config_entry("session.inter_op.allow_spinning", spin)
    so.log_severity_level = 3
    return so


def _profiled(providers: list[str]) -> bool:
    """Whether a new session profiles its first call, for ``check_placement``: on CUDA,
    where a node left on the CPU costs a copy each way at every step."""
    return CUDA in providers


def create_session(
    model: bytes, options: SessionOptions, *, source: str = "model"
) -> tuple[onnxruntime.InferenceSession, str]:
    """Open the model's bytes with the requested provider; returns (session, provider).

    Raises ``ModelError`` where onnxruntime cannot load the file, ``RuntimeError`` where
    ``provider="cuda"`` is not usable here.
    """
    ort = import_onnxruntime()
    wanted = _ALIASES[options.provider.lower()]
    available = list(ort.get_available_providers())
    if wanted == "cuda" and CUDA not in available:
        raise RuntimeError(
            f"provider='cuda' needs the CUDA execution provider, but onnxruntime "
            f"{ort.__version__} offers {available}; {GPU_INSTALL_HINT}"
        )
    providers = (
        [CUDA, CPU] if wanted == "cuda" or (wanted == "auto" and CUDA in available) else [CPU]
    )
    try:
        session = ort.InferenceSession(
            model,
            sess_options=_ort_options(ort, options, profile=_profiled(providers)),
            providers=providers,
        )
    except Exception as e:  # onnxruntime raises its own pybind exception types
        raise ModelError(f"onnxruntime cannot load {source}: {str(e).strip()}") from None
    in_use = session.get_providers()[0]
    if wanted == "cuda" and in_use != CUDA:
        raise RuntimeError(
            f"provider='cuda' was requested but the session fell back to {in_use} "
            f"(the CUDA libraries could not be loaded); {GPU_INSTALL_HINT}"
        )
    return session, in_use


# Nodes onnxruntime adds to move tensors between host and device: on the CPU by design.
_TRANSFER_OPS = {"MemcpyToHost", "MemcpyFromHost"}


def check_placement(session: Any, wanted: str, *, source: str) -> dict[str, str] | None:
    """Where each node of ``session`` ran on its first call: {node: provider}.

    Works on a session made with profiling on (``create_session`` turns it on for
    CUDA), after one run; ends the profiling and deletes its file. Warns, naming them,
    about the nodes that ran elsewhere than ``wanted`` (docs/design.md, trap 4: a GRU node
    the CUDA provider does not take runs on the CPU, silently, at every step). Returns
    None where the session was not profiling.
    """
    try:
        path = session.end_profiling()
    except Exception:  # profiling was not enabled
        return None
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            events = json.load(f)
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)
    placement: dict[str, str] = {}
    for event in events:
        name = str(event.get("name", ""))
        if event.get("cat") == "Node" and name.endswith("_kernel_time"):
            args = event.get("args", {})
            if args.get("op_name") not in _TRANSFER_OPS:
                placement[name.removesuffix("_kernel_time")] = str(args.get("provider"))
    elsewhere = sorted(n for n, p in placement.items() if p != wanted)
    if elsewhere:
        warnings.warn(
            f"{source}: {len(elsewhere)} of {len(placement)} nodes run on another provider "
            f"than {wanted}: {', '.join(f'{n} ({placement[n]})' for n in elsewhere[:10])}. "
            f"Each step copies their data between host and device; see docs/design.md, trap 4.",
            RuntimeWarning,
            stacklevel=3,
        )
    return placement
