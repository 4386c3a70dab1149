"""Processes that die with their parent, and a reaper for what a service leaves behind.

`chatstack.core.parent_death` asks Linux for a signal when a process's parent dies
(`PR_SET_PDEATHSIG`); `ManagedProcess` gives it to every child chatstack starts. It is not
inherited, though, and vLLM starts its EngineCore and worker processes itself (multiprocessing):
after a `kill -9` of the generation or reward service they lived on, orphaned, holding memory.

`start_orphan_reaper()`, called once by a service at startup, starts a tiny helper process
(`python -m chatstack.core.orphan_reaper SERVICE_PID`, standard library only) that watches the
service and, once the service is gone however it went, SIGKILLs what it leaves behind:

* every descendant of the service the helper saw while the service lived (it scans `/proc` once a
  second), checked by pid *and* start time so a recycled pid is never hit, plus whatever those
  spawned since;
* when the service leads its own process group (as under `ManagedProcess`, or started from a
  shell), also every other member of that group, except the processes that were in the group
  without descending from the service (`python -m chatstack.tokenizer | tee log` puts `tee` in
  the service's group). A service that does not lead its group (run inside pytest, or by a
  Makefile recipe) shares it with unrelated processes, so only its recorded descendants are hit.

Victims are stopped (SIGSTOP) until no new one turns up, then killed, so none can fork a
survivor in between. The helper is its own process-group leader (out of the set it kills, out of
a `killpg` of the service's group) and ignores the terminal's signals: Ctrl-C, Ctrl-\\, Ctrl-Z and
a hang-up reach the whole foreground group, and it must outlive the service they end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from chatstack.core.parent_death import set_parent_death_signal, supported

POLL_SECONDS = 1.0
#: Sent by the kernel to the helper when the service dies; the helper blocks it and waits for it.
DEATH_SIGNAL = signal.SIGTERM
#: The terminal's signals: they reach the whole foreground process group.
TERMINAL_SIGNALS = (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTSTP)
READY = b"armed\n"
READY_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class ProcInfo:
    """What /proc/<pid>/stat says about one process."""

    pid: int
    ppid: int
    pgrp: int
    #: Clock ticks after boot at which it started: with the pid, it names one process for good.
    start: int
    zombie: bool

    @property
    def key(self) -> tuple[int, int]:
        """(pid, start time): unlike the pid alone, never reused."""
        return self.pid, self.start


def read_proc(pid: int) -> ProcInfo | None:
    """The process `pid`, or None if there is none (or it cannot be read)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold anything; fields 3.. follow it.
    fields = data.rsplit(b")", 1)[1].split()
    return ProcInfo(pid=pid, ppid=int(fields[1]), pgrp=int(fields[2]), start=int(fields[19]),
                    zombie=fields[0] in (b"Z", b"X"))


def scan() -> dict[int, ProcInfo]:
    """Every process visible in /proc, by pid."""
    procs = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (info := read_proc(int(name))) is not None:
            procs[info.pid] = info
    return procs


def descendants(roots: Iterable[int], procs: dict[int, ProcInfo]) -> set[int]:
    """The pids below `roots` (children, their children, ...) in the snapshot `procs`."""
    children: dict[int, list[int]] = {}
    for info in procs.values():
        children.setdefault(info.ppid, []).append(info.pid)
    found: set[int] = set()
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


class Tracker:
    """What the helper learns about the service's processes while the service lives."""

    def __init__(self, service: int, leads_group: bool, helper: int) -> None:
        self.service = service
        self.leads_group = leads_group
        self.helper = helper
        #: (pid, start) of every process seen below the service.
        self.descendants: set[tuple[int, int]] = set()
        #: (pid, start) of processes seen in the service's group that did not descend from it.
        self.foreign: set[tuple[int, int]] = set()

    def observe(self, procs: dict[int, ProcInfo]) -> None:
        """Record the service's descendants (and its group's strangers) in the snapshot `procs`."""
        below = descendants([self.service], procs) - {self.helper}
        self.descendants |= {procs[pid].key for pid in below}
        if self.leads_group:
            self.foreign |= {info.key for info in procs.values()
                             if info.pgrp == self.service and info.pid != self.service
                             and info.pid not in below and info.pid != self.helper}

    def targets(self, procs: dict[int, ProcInfo]) -> dict[int, int]:
        """pid → start time of each live process to kill in the snapshot `procs` (service gone)."""
        live = {pid: info for pid, info in procs.items() if not info.zombie}
        chosen = {pid for pid, info in live.items() if info.key in self.descendants}
        if self.leads_group:
            chosen |= {pid for pid, info in live.items()
                       if info.pgrp == self.service and info.key not in self.foreign}
        chosen |= descendants(chosen, live)
        chosen -= {self.helper, self.service}
        return {pid: live[pid].start for pid in chosen}


def signal_exact(pid: int, start: int, sig: int) -> bool:
    """Send `sig` to process `pid` only if it is still the one that started at `start`.

    With a pidfd the check and the signal reach the same process even if `pid` were recycled in
    between; without one (kernel < 5.3) the window is a few microseconds.
    """
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    except OSError:
        pidfd = None
    try:
        info = read_proc(pid)
        if info is None or info.start != start:
            return False
        if pidfd is None:
            os.kill(pid, sig)
        else:
            signal.pidfd_send_signal(pidfd, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False
    finally:
        if pidfd is not None:
            os.close(pidfd)


def reap(tracker: Tracker, max_rounds: int = 50) -> int:
    """Stop every target until no new one appears, then SIGKILL them all. Returns how many."""
    tried: set[int] = set()
    stopped: dict[int, int] = {}
    for _ in range(max_rounds):
        new = {pid: start for pid, start in tracker.targets(scan()).items() if pid not in tried}
        if not new:
            break
        for pid, start in new.items():
            tried.add(pid)
            if signal_exact(pid, start, signal.SIGSTOP):
                stopped[pid] = start
    return sum(signal_exact(pid, start, signal.SIGKILL) for pid, start in stopped.items())


def _report(message: str) -> None:
    """One line on stderr (the service's log); never raises (the log may be a dead pipe)."""
    with contextlib.suppress(OSError, ValueError):
        print(f"chatstack orphan reaper (pid {os.getpid()}): {message}", file=sys.stderr, flush=True)


def watch(service: int, leads_group: bool) -> int:
    """The helper's life: arm, tell the service, record its processes while it lives, then reap."""
    for sig in TERMINAL_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    # Blocked before it is armed: the death signal must wake `sigtimedwait`, never kill us.
    signal.pthread_sigmask(signal.SIG_BLOCK, {DEATH_SIGNAL})
    set_parent_death_signal(DEATH_SIGNAL)
    tracker = Tracker(service, leads_group, os.getpid())
    tracker.observe(scan())
    with contextlib.suppress(OSError):
        os.write(sys.stdout.fileno(), READY)
    with open(os.devnull, "wb") as devnull:  # the service closed its end: no more writes there
        os.dup2(devnull.fileno(), sys.stdout.fileno())
    # getppid() changes when the service dies: the death signal only ends the wait sooner.
    while os.getppid() == service:
        tracker.observe(scan())
        signal.sigtimedwait({DEATH_SIGNAL}, POLL_SECONDS)
    killed = reap(tracker)
    if killed:
        _report(f"service pid {service} is gone; killed {killed} process(es) it left behind")
    return killed


_helper: subprocess.Popen[bytes] | None = None


def _wait_ready(helper: subprocess.Popen[bytes], timeout: float) -> bool:
    """Read the helper's one line saying it is armed; False if it did not come in time."""
    assert helper.stdout is not None
    deadline = time.monotonic() + timeout
    received = b""
    with helper.stdout:
        fd = helper.stdout.fileno()
        while not received.endswith(b"\n") and (left := deadline - time.monotonic()) > 0:
            if not select.select([fd], [], [], left)[0]:
                break
            chunk = os.read(fd, 64)
            if not chunk:
                break
            received += chunk
    return received == READY


def start_orphan_reaper(timeout: float = READY_TIMEOUT_SECONDS) -> subprocess.Popen[bytes] | None:
    """Start this process's orphan reaper (see the module docstring); once per process.

    Call it from the main thread: the helper learns of the service's death from the kernel's
    parent-death signal, which fires when the thread that started it exits. Returns once the
    helper is armed (or after `timeout`, with a warning: it still arms itself later). Returns
    None where there is no /proc (not Linux).
    """
    global _helper
    if _helper is not None and _helper.poll() is None:
        return _helper
    if not supported() or not os.path.isdir("/proc/self"):
        return None
    argv = [sys.executable, "-m", "chatstack.core.orphan_reaper", str(os.getpid())]
    if os.getpgrp() == os.getpid():
        argv.append("--leads-group")
    _helper = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               process_group=0)
    if not _wait_ready(_helper, timeout):
        _report(f"helper pid {_helper.pid} did not report armed within {timeout:.0f}s")
    return _helper


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the helper process (`python -m chatstack.core.orphan_reaper PID`)."""
    parser = argparse.ArgumentParser(description="Kill what a service leaves behind when it dies.")
    parser.add_argument("service", type=int, help="pid of the service (this process's parent)")
    parser.add_argument("--leads-group", action="store_true",
                        help="the service leads its own process group: reap that group too")
    args = parser.parse_args(argv)
    watch(args.service, args.leads_group)
    return 0


if __name__ == "__main__":
    sys.exit(main())
