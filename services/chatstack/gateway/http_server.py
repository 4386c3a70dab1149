"""The gateway's HTTP server (the OpenAI-compatible API) on its own port, in the gateway's process
and event loop, next to gRPC: uvicorn serving the FastAPI app, started and stopped with the
service (the runtime keeps the signal handling: uvicorn's own is switched off)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator

import uvicorn
from fastapi import FastAPI

log = logging.getLogger(__name__)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: the gateway's runtime owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None]:
        yield


class HttpServer:
    """Serves `app` on host:port (0 = a free port: `port` tells which after `start`)."""

    def __init__(self, app: FastAPI, host: str, port: int, grace_seconds: float,
                 keep_alive_seconds: float = 75.0) -> None:
        self.host = host
        self.port = port
        self._grace = grace_seconds
        self._server = _EmbeddedServer(uvicorn.Config(
            app, host=host, port=port, lifespan="off", log_config=None, access_log=False,
            timeout_keep_alive=int(max(1, keep_alive_seconds)),  # see GatewayConfig.http_keep_alive_seconds
            timeout_graceful_shutdown=int(max(1, grace_seconds))))
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind and serve; returns once the port is bound."""
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = int(sock.getsockname()[1])
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raise why it stopped
            await asyncio.sleep(0.01)
        log.info("OpenAI-compatible HTTP API on http://%s:%d/v1", self.host, self.port)

    async def stop(self) -> None:
        """Stop taking requests; let open ones (streams) finish within the grace period."""
        if self._task is None:
            return
        self._server.should_exit = True
        await asyncio.gather(self._task, return_exceptions=True)
