"""``stream-gru serve``: a fleet on the wire (``serve`` extra; ``stream_gru.serve``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import (
    HelpFormatter,
    check_output_folder,
    fail,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)

__all__ = ["add_parser", "run"]

EPILOG = """\
Clients: tritonclient.http (infer with sequence_id=..., sequence_start, sequence_end),
any KServe v2 client, or a WebSocket on /v1/stream sending {"key": K, "x": [...]} or
{"samples": {K: [...], ...}} and receiving one frame per sample. Admin by key:
GET/DELETE /v1/streams/KEY, GET/PUT /v1/streams/KEY/snapshot. Metrics: GET /metrics.
SIGTERM or Ctrl-C runs what is queued, saves --state, and exits 0.
"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "serve",
        help="serve a fleet over HTTP (KServe v2 / Triton sequences) and WebSocket",
        description=(
            "Serve MODEL to many streams at once: samples that arrive one by one are stepped "
            "together in one batched call per tick, within --max-delay-ms of the oldest. "
            "Speaks the KServe Open Inference Protocol v2 with Triton's sequence parameters "
            "and binary tensors (unmodified tritonclient works), a WebSocket endpoint for "
            "gateways, admin by key and Prometheus metrics. Every key is a string (sequence "
            "id 42 is key '42'). Needs the serve extra."
        ),
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    p.add_argument("model", type=Path, metavar="MODEL.onnx")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (others need a token)")
    p.add_argument("--port", type=non_negative_int, default=8000, help="port to bind")
    p.add_argument("--model-name", metavar="NAME", help="the name clients use (default: "
                   "the file's stem)")  # fmt: skip
    p.add_argument(
        "--max-delay-ms",
        type=non_negative_float,
        default=2.0,
        help="a tick runs when the oldest waiting sample has waited this long",
    )
    p.add_argument(
        "--max-batch", type=positive_int, default=8192, help="... or when this many samples wait"
    )
    p.add_argument(
        "--max-queue",
        type=positive_int,
        default=65_536,
        help="samples waiting at most; beyond: 503 with Retry-After",
    )
    p.add_argument(
        "--max-streams",
        type=positive_int,
        default=1_000_000,
        help="streams open at most; a new key beyond: 429",
    )
    p.add_argument(
        "--max-body-bytes",
        type=positive_int,
        default=8 << 20,
        help="largest request body or WebSocket frame; beyond: 413",
    )
    p.add_argument(
        "--state",
        type=Path,
        metavar="FILE",
        help="load the pool from FILE at start (where it exists), save it there "
        "every --save-every seconds and at shutdown",
    )
    p.add_argument(
        "--save-every",
        type=positive_float,
        default=30.0,
        metavar="SECONDS",
        help="with --state: seconds between saves (a crash loses at most this)",
    )
    p.add_argument(
        "--idle-timeout",
        type=positive_float,
        metavar="SECONDS",
        help="close streams idle this long (default: never)",
    )
    p.add_argument(
        "--archive",
        type=Path,
        metavar="DIR",
        help="keep expired streams' snapshots in DIR; a returning key resumes",
    )
    p.add_argument(
        "--require-start",
        action="store_true",
        help="a new key's first request must set sequence_start (as Triton does)",
    )
    p.add_argument(
        "--token-file",
        type=Path,
        metavar="PATH",
        help="require Authorization: Bearer <the token in PATH> (all but health)",
    )
    p.add_argument(
        "--drain-timeout",
        type=positive_float,
        default=30.0,
        metavar="SECONDS",
        help="at shutdown, the longest wait for requests in flight",
    )
    p.add_argument(
        "--provider",
        choices=("auto", "cpu", "cuda"),
        default="cpu",
        help="onnxruntime execution provider",
    )
    p.add_argument("--threads", type=positive_int, default=1, help="intra-op threads")
    p.add_argument("--log-level", choices=("critical", "error", "warning", "info", "debug"),
                   default="info", help="uvicorn's log level")  # fmt: skip
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    try:
        import prometheus_client  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
        import websockets  # noqa: F401
    except ImportError as e:
        from ...install import install_hint

        fail(f"serve needs the serve extra: {install_hint('serve')} ({e})", "stream-gru serve")
    from ...serve.server import ServerOptions, run_server
    from ...serve.service import ServeOptions, default_model_name

    check_output_folder(args.state, "--state")
    options = ServeOptions(
        model_name=args.model_name or default_model_name(args.model),
        max_delay=args.max_delay_ms / 1000,
        max_batch=args.max_batch,
        max_queue=args.max_queue,
        max_streams=args.max_streams,
        max_body_bytes=args.max_body_bytes,
        idle_timeout=args.idle_timeout,
        archive=args.archive,
        state=args.state,
        save_every=args.save_every,
        require_start=args.require_start,
    )
    server = ServerOptions(
        host=args.host, port=args.port, token_file=args.token_file,
        drain_timeout=args.drain_timeout, provider=args.provider, threads=args.threads,
        log_level=args.log_level,
    )  # fmt: skip
    run_server(args.model, options, server)
    return 0
