"""A local Ray head node in its own process (`ray start --head --block`), for tests and benchmarks.

Why not `ray.init()` in the caller: a new local cluster makes the caller fork Ray's GCS server and
raylet with a Python `preexec_fn`. In a process that already runs other threads (a pytest
session that holds gRPC channels, asyncio executors and service fixtures), a forked child can
deadlock on a lock another thread held at fork time before it ever reaches `exec`. Then the GCS
never writes its port file and `ray.init()` fails after 30 s with "Timed out waiting for file
.../gcs_server_port_...". Our CI hit exactly this. The `ray start` CLI forks from a fresh,
single-purpose process instead, and the caller only connects: `head.connect(namespace)`.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from chatstack.core.process import ManagedProcess, free_port, wait_until

READY_LINE = "Ray runtime started"
# A throwaway local test cluster runs without token auth: a driver that connects to an existing
# cluster reads the auth mode once, when Ray's config is first loaded in its process, so it cannot
# be switched on later in a process that imported Ray before (as a pytest session may have).
AUTH_MODE = "RAY_AUTH_MODE"


class RayHead:
    """`ray start --head --block` on loopback with its own temp dir; `stop()` ends every Ray process."""

    def __init__(self, temp_dir: Path, num_cpus: int, log_path: Path) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        temp_dir.mkdir(parents=True, exist_ok=True)
        self.process = ManagedProcess("ray-head", [
            sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
            "--port", str(self.port), "--num-cpus", str(num_cpus), "--include-dashboard", "false",
            "--disable-usage-stats", "--temp-dir", str(temp_dir.resolve()),
        ], log_path, env={AUTH_MODE: "disabled"})

    def start(self, timeout: float = 120.0) -> RayHead:
        """Start the head and wait until it says the runtime is up."""
        self.process.start()
        try:
            wait_until(lambda: READY_LINE in self.process.tail(200), timeout,
                       f"the Ray head on {self.address}", alive=self.process.alive, interval=0.2)
        except (TimeoutError, RuntimeError) as exc:
            self.stop()
            raise RuntimeError(f"{exc}\n--- {self.process.log_path} ---\n{self.process.tail()}") from exc
        return self

    def connect(self, namespace: str) -> None:
        """`ray.init` this process as a driver of the head."""
        import ray

        os.environ[AUTH_MODE] = "disabled"
        ray.init(address=f"127.0.0.1:{self.port}", log_to_driver=False, namespace=namespace)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the head (it shuts its node down), then SIGKILL whatever is left of its group."""
        self.process.stop(timeout)
        if self.process.proc is not None:
            try:
                os.killpg(self.process.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
