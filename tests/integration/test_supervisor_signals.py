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
from chatstack.core.sched_group import autogroup, autogroups_enabled

pytestmark = pytest.mark.integration

# supervise() with Redis and one session service; argv: run dir, the session's Redis URL ("" =
# the supervisor's Redis), its ports "redis,session,metrics" ("" = free ones). SIGHUP is set to
# its default first: under `nohup make test` the test process ignores it, and the supervisor
# rightly keeps an inherited ignored SIGHUP ignored, so the SIGHUP test would find it deaf.
SUPERVISOR = """
import signal, sys
signal.signal(signal.SIGHUP, signal.SIG_DFL)
from pathlib import Path
from chatstack.core.process import free_port
from chatstack.local_stack import LocalService, supervise
run, redis_url = Path(sys.argv[1]), sys.argv[2]
if sys.argv[3]:
    redis_port, port, metrics_port = map(int, sys.argv[3].split(","))
else:
    redis_port, port, metrics_port = free_port(), free_port(), free_port()
def services(url, keys_file):
    return [LocalService("session", "session", port, metrics_port, ("--redis-url", redis_url or url))]
sys.exit(supervise(run, redis_port, services, port_wait=float(sys.argv[4]), group_nice=int(sys.argv[5])))
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

    def start(self, redis_url: str = "", ports: tuple[int, int, int] | None = None,
              port_wait: float = 30.0, group_nice: int = 0) -> subprocess.Popen[bytes]:
        """A supervisor whose session service uses `redis_url` ("" = the supervisor's Redis), on
        `ports` (redis, session, session metrics; default free ones); with a `group_nice`, in a
        session of its own (so this test's scheduling group is never touched)."""
        argv = with_parent_death_signal([sys.executable, "-c", SUPERVISOR, str(self.run_dir), redis_url,
                                         ",".join(map(str, ports)) if ports else "", str(port_wait),
                                         str(group_nice)])
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                **({"start_new_session": True} if group_nice else {"process_group": 0}))
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


def _direct_child(proc: subprocess.Popen[bytes], marker: str) -> int:
    """The pid of the supervisor's child whose command line holds `marker`."""
    for info in _tree(proc.pid):
        if info.ppid == proc.pid and marker in Path(f"/proc/{info.pid}/cmdline").read_bytes().decode(errors="replace"):
            return info.pid
    raise AssertionError(f"no child of the supervisor runs {marker!r}")


def _session_answers(port: int) -> bool:
    import grpc

    from chatstack.v1 import session_pb2, session_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            session_pb2_grpc.SessionServiceStub(channel).CreateSession(
                session_pb2.CreateSessionRequest(), metadata=(("x-chatstack-owner", "probe"),), timeout=2)
        except grpc.RpcError:
            return False
    return True


def test_a_killed_service_and_a_killed_redis_come_back_by_themselves(supervisors: Supervisors) -> None:
    ports = (free_port(), free_port(), free_port())
    proc = supervisors.start(ports=ports)
    out = _read_until(proc, "Ctrl-C stops all", timeout=120)
    supervisors.children(proc, at_least=3, timeout=30)
    redis_pid, session_pid = _direct_child(proc, "redis-server"), _direct_child(proc, "chatstack.session")

    os.kill(session_pid, signal.SIGKILL)
    out = _read_until(proc, "session is back up", timeout=60)
    assert "!!! session exited (code -9); restarting it" in out
    assert _direct_child(proc, "redis-server") == redis_pid  # the rest of the stack kept running
    new_session = _direct_child(proc, "chatstack.session")
    assert new_session != session_pid
    wait_until(lambda: _session_answers(ports[1]), 30, "the restarted session service to answer")

    os.kill(redis_pid, signal.SIGKILL)
    out = _read_until(proc, "redis is back up", timeout=60)
    assert "!!! redis exited (code -9)" in out
    wait_until(lambda: _session_answers(ports[1]), 30, "the session service to reach the new Redis")
    assert _direct_child(proc, "chatstack.session") == new_session  # not restarted for Redis' sake
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0


def test_a_second_stack_on_taken_ports_names_them_and_starts_nothing(supervisors: Supervisors) -> None:
    ports = (free_port(), free_port(), free_port())
    first = supervisors.start(ports=ports)
    _read_until(first, "Ctrl-C stops all", timeout=120)
    second = supervisors.start(ports=ports, port_wait=1.0)
    assert second.wait(60) == 1
    assert second.stdout is not None
    out = second.stdout.read().decode()
    assert f"port(s) taken: {ports[0]} (redis), {ports[1]} (session gRPC), {ports[2]} (session metrics)" in out
    assert "chatstack is up" not in out
    assert _session_answers(ports[1])  # the first stack is untouched
    first.send_signal(signal.SIGTERM)
    assert first.wait(60) == 0


@pytest.mark.skipif(not autogroups_enabled(), reason="the kernel does not group processes by session here")
def test_the_whole_stack_runs_in_one_scheduling_group_that_yields_the_cpu(supervisors: Supervisors) -> None:
    # One group for the whole stack, at a lower weight than the rest of the machine: a process of
    # the stack in a group of its own (an engine spinning in one kept every other group off a core
    # for seconds), or the group at full weight, is what chatstack.core.sched_group forbids.
    proc = supervisors.start(group_nice=7)
    out = _read_until(proc, "Ctrl-C stops all", timeout=120)
    group = autogroup(proc.pid)
    assert group is not None and group.nice == 7 and group != autogroup()
    assert f"scheduling group {group.name} at nice 7 while the stack runs" in out
    children = supervisors.children(proc, at_least=3, timeout=30)  # Redis, session, its reaper
    assert {autogroup(c.pid) for c in children} == {group}
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
