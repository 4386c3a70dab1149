"""A real `redis-server` as a child process (tests, benchmarks and `make run`)."""

from __future__ import annotations

import shutil
import signal
import socket
from pathlib import Path

from chatstack.core.process import ManagedProcess, wait_until


def _pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisProcess:
    """redis-server on 127.0.0.1:`port` with its data (AOF) in `data_dir`.

    It dies with the process that started it, even on `kill -9` (see `ManagedProcess`; so call
    `start` from the main thread).
    """

    def __init__(self, port: int, data_dir: Path, appendfsync: str = "everysec") -> None:
        self.port = port
        self.data_dir = data_dir
        self.appendfsync = appendfsync
        self.proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        """redis:// URL of the server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> RedisProcess:
        """Start (or restart on the same dir) and wait for PONG."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed (make setup installs it)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
                str(self.data_dir), "--appendonly", "yes", "--appendfsync", self.appendfsync,
                "--save", "", "--daemonize", "no", "--protected-mode", "yes"]
        # Assigned before it starts, so `stop` reaches it even if the wait below is interrupted.
        # ManagedProcess makes it die with this process (SIGTERM: Redis shuts down cleanly).
        self.proc = ManagedProcess(f"redis-{self.port}", argv, self.data_dir / "redis.log")
        self.proc.start()
        wait_until(lambda: _pong(self.port), timeout, f"redis on port {self.port}",
                   alive=self.proc.alive, interval=0.05)
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final fsync (the durability test's crash)."""
        if self.proc and self.proc.proc:
            self.proc.signal(signal.SIGKILL)
            self.proc.proc.wait(10)

    def stop(self) -> None:
        """Graceful stop."""
        if self.proc:
            self.proc.stop(10)
