"""Start a service (or redis-server) as a child process and wait until it is healthy.

Shared by `make run` (chatstack.local_stack) and the integration tests' fixtures.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chatstack.core.parent_death import with_parent_death_signal


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def health_status(address: str, service: str = "", timeout: float = 1.0) -> int | None:
    """The gRPC health status of `service` at `address`, or None if unreachable."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError:
            return None
        return int(reply.status)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str,
               alive: Callable[[], bool] | None = None, interval: float = 0.1) -> None:
    """Poll `predicate` until true; TimeoutError after `timeout`, RuntimeError if `alive` fails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if alive is not None and not alive():
            raise RuntimeError(f"process died while waiting for {what}")
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


class ManagedProcess:
    """A child process with its log in a file; SIGTERM on stop, SIGKILL if it lingers.

    The child leads its own process group (so `stop` can kill what it spawned, e.g. vLLM's engine
    processes) but stays in the caller's session. A new session (`setsid`) would also put it in its
    own scheduler autogroup (Linux `sched_autogroup_enabled`), and on a machine whose cores a vLLM
    engine keeps busy, the kernel then left the caller (a test, a benchmark's client, the gateway)
    without CPU for up to ~250 ms at a time: streamed messages the service had written sat unread
    until the engine went idle (`tests.benchmarks.probe_stream_delivery`).

    The child dies with its parent, however the parent dies (`kill -9` too): it gets SIGTERM
    (Linux `PR_SET_PDEATHSIG`), so a service still drains and shuts its engine down. The kernel
    sends it when the *thread* that started the child exits, so call `start` from a thread that
    lives as long as the child should (the main thread), never from a short-lived worker thread.
    What the child spawns itself does not inherit this; services reap theirs with
    `chatstack.core.orphan_reaper`.
    """

    def __init__(self, name: str, argv: Sequence[str], log_path: Path,
                 env: Mapping[str, str] | None = None, cwd: str | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        """Start the process (its output goes to log_path); call it from a long-lived thread."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(with_parent_death_signal(self.argv, signal.SIGTERM), stdout=log,
                                         stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd,
                                         process_group=0)
        return self

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        """Send a signal to the process."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL the process group. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode

    def kill_group(self) -> None:
        """SIGKILL whatever is left of the process group (a dead service's engine processes)."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.poll()

    def tail(self, lines: int = 40) -> str:
        """The last lines of the log (for failure messages)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def service_argv(module: str, *flags: str) -> list[str]:
    """argv that runs `python -m chatstack.<module>` with the current interpreter."""
    return [sys.executable, "-m", f"chatstack.{module}", *flags]


def grpc_service_process(name: str, module: str, port: int, metrics_port: int, log_dir: Path,
                         flags: Sequence[str] = (), env: Mapping[str, str] | None = None,
                         host: str = "127.0.0.1") -> ManagedProcess:
    """The (not yet started) process of a chatstack service on host:port."""
    return ManagedProcess(
        name,
        service_argv(module, "--host", host, "--port", str(port), "--metrics-port", str(metrics_port),
                     *flags),
        log_dir / f"{name}.log", env=env,
    )


def serving(address: str, health_service: str = "") -> bool:
    """Whether the gRPC health of `health_service` at `address` says SERVING."""
    return health_status(address, health_service) == health_pb2.HealthCheckResponse.SERVING


def start_grpc_service(name: str, module: str, port: int, metrics_port: int, log_dir: Path,
                       flags: Sequence[str] = (), env: Mapping[str, str] | None = None,
                       health_service: str = "", timeout: float = 180.0,
                       host: str = "127.0.0.1") -> ManagedProcess:
    """Start a chatstack service on host:port and block until its health says SERVING.

    If it fails to get there, or the wait is interrupted (Ctrl-C), the service is stopped first.
    """
    proc = grpc_service_process(name, module, port, metrics_port, log_dir, flags, env, host)
    address = f"{host}:{port}"
    try:
        proc.start()
        wait_until(lambda: serving(address, health_service), timeout, f"{name} SERVING on {address}",
                   alive=proc.alive, interval=0.2)
    except (TimeoutError, RuntimeError) as exc:
        proc.stop(5)
        raise RuntimeError(f"{exc}\n--- {proc.log_path} ---\n{proc.tail()}") from exc
    except BaseException:
        proc.stop(5)
        raise
    return proc
