"""Export and verify (the ``train`` extra: torch and onnx): a checkpoint to one ONNX
file (``onnx_export``), the one-step graphs pools run, built at export
(``step_graph``), and the proof that the file computes what the checkpoint computes
(``verify``).

    from stream_gru.export import export_onnx, verify

Imports: torch, onnx; from the package ``training``, ``data``, ``fleet``, ``core``,
``formats`` and the base modules (checked by ``make lint``).
"""

from .onnx_export import (
    OPSET,
    ExportResult,
    check_step_graph,
    check_structure,
    export_onnx,
    model_io,
)
from .verification import CheckResult, VerifyReport, check_against_checkpoint, verify

__all__ = [
    "OPSET",
    "CheckResult",
    "ExportResult",
    "VerifyReport",
    "check_against_checkpoint",
    "check_step_graph",
    "check_structure",
    "export_onnx",
    "model_io",
    "verify",
]
