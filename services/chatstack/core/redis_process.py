"""A real `redis-server` as a child process (tests, benchmarks and `make run`)."""

from __future__ import annotations

import shutil
import signal
import socket
from pathlib import Path

from chatstack.core.process import ManagedProcess, wait_until


def redis_pid(port: int) -> int | None:
    """The process id of the Redis answering on 127.0.0.1:`port` (INFO server), None if none does."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"INFO server\r\n")
            data = b""
            while b"process_id:" not in data or not data.split(b"process_id:", 1)[1].count(b"\r\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                data += chunk
    except OSError:
        return None
    return int(data.split(b"process_id:", 1)[1].split(b"\r\n", 1)[0])


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
        """Start (or restart on the same dir) and wait until *this* server answers (another
        Redis still answering on the port, say a stopping stack's, does not count)."""
        proc = self.spawn()
        wait_until(self.ready, timeout, f"redis on port {self.port}", alive=proc.alive, interval=0.05)
        return self

    def ready(self) -> bool:
        """Whether the server this object started answers on its port."""
        pid = redis_pid(self.port)
        return pid is not None and self.proc is not None and self.proc.proc is not None \
            and pid == self.proc.proc.pid

    def spawn(self) -> ManagedProcess:
        """Start the server without waiting for it (the supervisor's restart)."""
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
        return self.proc.start()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final fsync (the durability test's crash)."""
        if self.proc and self.proc.proc:
            self.proc.signal(signal.SIGKILL)
            self.proc.proc.wait(10)

    def stop(self) -> None:
        """Graceful stop."""
        if self.proc:
            self.proc.stop(10)
