"""``stream-gru serve``: the application of ``app.py`` on uvicorn.

Bound to 127.0.0.1 unless told otherwise; any other address needs ``--token-file``.
SIGTERM or SIGINT: uvicorn stops accepting, the requests in flight finish (at most
``drain_timeout`` seconds), then the service runs what is queued and saves the pool
atomically to ``--state``, and the process exits 0; started again with the same
``--state``, every stream continues exactly. Between shutdowns the pool is saved every
``save_every`` seconds, so a crash loses at most that much.
"""

from __future__ import annotations

import ipaddress
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import uvicorn

from ..core.session import Provider
from ..errors import ServeError
from ..fleet.model import load
from ..formats.files import read_regular
from .app import build_app
from .service import ServeOptions, StreamService

__all__ = ["ServerOptions", "is_loopback", "read_token", "run_server"]


@dataclass(frozen=True)
class ServerOptions:
    """Where and how the server listens, apart from what the service does."""

    host: str = "127.0.0.1"
    port: int = 8000
    token_file: Path | None = None
    drain_timeout: float = 30.0
    provider: Provider = "auto"
    threads: int = 1
    log_level: str = "info"


class _GracefulServer(uvicorn.Server):
    """uvicorn's server, but a SIGTERM or SIGINT ends in exit status 0 after the graceful
    shutdown (uvicorn re-raises the signal then, ending the process by it). A second
    SIGINT still forces the exit."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True


def is_loopback(host: str) -> bool:
    """Whether ``host`` reaches this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(path: Path) -> str:
    """The bearer token in ``path`` (its first line, stripped): at least 16 characters."""
    try:
        text = read_regular(path).decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ServeError(f"--token-file {path}: cannot read it ({e})") from None
    token = text.strip().splitlines()[0].strip() if text.strip() else ""
    if len(token) < 16 or any(c.isspace() for c in token):
        raise ServeError(
            f"--token-file {path}: the token must be one line of at least 16 characters "
            f"without spaces (e.g. python -c 'import secrets; print(secrets.token_urlsafe())')"
        )
    return token


def run_server(
    model_path: str | os.PathLike[str], options: ServeOptions, server: ServerOptions
) -> None:
    """Serve until SIGTERM or SIGINT; ``ServeError`` for settings it refuses to start
    with (a public address without a token, an unreadable token file)."""
    token = read_token(server.token_file) if server.token_file is not None else None
    if token is None and not is_loopback(server.host):
        raise ServeError(
            f"refusing to serve on {server.host} without --token-file: anyone who can reach "
            f"it could step, read and close every stream. Give --token-file PATH (clients "
            f"send Authorization: Bearer <token>), or bind 127.0.0.1 behind a proxy that "
            f"authenticates"
        )
    model = load(model_path, provider=server.provider, threads=server.threads)
    service = StreamService(model, options)
    app = build_app(service, token=token)
    config = uvicorn.Config(
        app,
        host=server.host,
        port=server.port,
        log_level=server.log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=max(1, round(server.drain_timeout)),
        ws_max_size=options.max_body_bytes,
        ws="websockets-sansio",
        ws_per_message_deflate=False,  # samples are floats: compressing them costs, not saves
        http="auto",  # httptools where installed (the serve extra), else h11
        loop="auto",  # uvloop where installed
    )
    _GracefulServer(config).run()
