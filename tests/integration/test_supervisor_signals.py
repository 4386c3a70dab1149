"""`make run`'s supervisor (chatstack.local_stack.supervise) stops everything on SIGINT, SIGHUP or
SIGTERM, also when its output pipe is gone (`make run | tee log`, Ctrl-C ends tee too).

The supervisor runs the real code with a cheap stack: Redis and the session service (no vLLM).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatstack.core.orphan_reaper import ProcInfo, descendants, read_proc, scan, signal_exact
from chatstack.core.parent_death import with_parent_death_signal
from chatstack.core.process import free_port, wait_until

pytestmark = pytest.mark.integration

# supervise() with Redis and one session service; argv: run dir, the session's Redis URL ("" =
# the supervisor's Redis).
SUPERVISOR = """
import sys
from pathlib import Path
from chatstack.core.process import free_port
from chatstack.local_stack import LocalService, supervise
run, redis_url = Path(sys.argv[1]), sys.argv[2]
def services(url, keys_file):
    return [LocalService("session", "session", free_port(), free_port(), ("--redis-url", redis_url or url))]
sys.exit(supervise(run, free_port(), services))
"""


def _read_until(proc: subprocess.Popen[bytes], marker: str, timeout: float) -> str:
    """The supervisor's output up to and including `marker`; fails after `timeout` seconds."""
    assert proc.stdout is not None
    fd, out = proc.stdout.fileno(), b""
    deadline = time.monotonic() + timeout
    while marker.encode() not in out:
        left = deadline - time.monotonic()
        assert left > 0, f"no {marker!r} within {timeout}s; output so far:\n{out.decode()}"
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 4096)
            assert chunk, f"output ended before {marker!r}:\n{out.decode()}"
            out += chunk
    return out.decode()


def _tree(root: int) -> list[ProcInfo]:
    """The processes below `root` now."""
    procs = scan()
    return [procs[pid] for pid in descendants([root], procs)]


def _gone(proc: ProcInfo) -> bool:
    now = read_proc(proc.pid)
    return now is None or now.zombie or now.start != proc.start


def _exists(proc: ProcInfo) -> bool:
    """Not even a zombie: the supervisor has waited for it."""
    now = read_proc(proc.pid)
    return now is not None and now.start == proc.start


class Supervisors:
    """Starts supervisors (output to a pipe, like `| tee`); `kill_all` ends what is left."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.started: list[subprocess.Popen[bytes]] = []
        self.seen: list[ProcInfo] = []

    def start(self, redis_url: str = "") -> subprocess.Popen[bytes]:
        """A supervisor whose session service uses `redis_url` ("" = the supervisor's Redis)."""
        argv = with_parent_death_signal([sys.executable, "-c", SUPERVISOR, str(self.run_dir), redis_url])
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, process_group=0)
        self.started.append(proc)
        return proc

    def children(self, proc: subprocess.Popen[bytes], at_least: int, timeout: float) -> list[ProcInfo]:
        """The processes below supervisor `proc`, once there are `at_least` of them."""
        wait_until(lambda: len(_tree(proc.pid)) >= at_least, timeout,
                   f"{at_least} processes below the supervisor")
        found = _tree(proc.pid)
        self.seen.extend(found)
        return found

    def kill_all(self) -> None:
        """SIGKILL every supervisor and every process seen below one."""
        for proc in self.started:
            proc.kill()
            proc.wait(10)
        for info in self.seen:
            signal_exact(info.pid, info.start, signal.SIGKILL)


@pytest.fixture
def supervisors(tmp_path: Path) -> Iterator[Supervisors]:
    sup = Supervisors(tmp_path / "run")
    try:
        yield sup
    finally:
        sup.kill_all()


def _stop_with_a_dead_pipe(proc: subprocess.Popen[bytes], sig: int, children: list[ProcInfo]) -> None:
    """Close the supervisor's output pipe (the reader is gone), send `sig`, check it stops all."""
    assert proc.stdout is not None
    proc.stdout.close()
    proc.send_signal(sig)
    assert proc.wait(60) == 0
    # The supervisor itself stopped and waited for its children (Redis, the session service)...
    direct = [c for c in children if c.ppid == proc.pid]
    assert len(direct) == 2
    assert not [c for c in direct if _exists(c)]
    # ...and what they started (the session service's orphan reaper) ends with them.
    wait_until(lambda: all(_gone(c) for c in children), 10, "every process of the stack to end",
               interval=0.05)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP, signal.SIGTERM],
                         ids=["SIGINT", "SIGHUP", "SIGTERM"])
def test_a_running_stack_stops_on_a_signal_with_its_output_pipe_gone(supervisors: Supervisors,
                                                                    sig: int) -> None:
    proc = supervisors.start()
    out = _read_until(proc, "Ctrl-C stops all", timeout=120)
    assert "  session    grpc 127.0.0.1:" in out
    # Redis, the session service and the session service's orphan reaper.
    children = supervisors.children(proc, at_least=3, timeout=30)
    _stop_with_a_dead_pipe(proc, sig, children)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP], ids=["SIGINT", "SIGHUP"])
def test_a_start_up_in_progress_is_aborted_by_a_signal(supervisors: Supervisors, sig: int) -> None:
    # The session service waits for a Redis that is not there: it never turns SERVING, so the
    # signal finds the supervisor waiting for it.
    proc = supervisors.start(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    _read_until(proc, "starting session ...", timeout=60)
    children = supervisors.children(proc, at_least=3, timeout=60)
    _stop_with_a_dead_pipe(proc, sig, children)
