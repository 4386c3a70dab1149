"""The orphan reaper: what a service leaves behind dies with it, nothing else does."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatstack.core.orphan_reaper import ProcInfo, read_proc, signal_exact
from chatstack.core.process import wait_until

# Ignores SIGTERM (as a wedged engine process would), spawns `depth` more of itself below it and
# prints their pids (one JSON list), then waits forever.
STUBBORN = """
import json, signal, subprocess, sys
signal.signal(signal.SIGTERM, signal.SIG_IGN)
depth = int(sys.argv[1])
pids = []
if depth:
    below = subprocess.Popen([sys.executable, __file__, str(depth - 1)], stdout=subprocess.PIPE)
    pids = [below.pid, *json.loads(below.stdout.readline())]
print(json.dumps(pids), flush=True)
signal.pause()
"""

# A service: spawns a stubborn tree ("early"), waits for a line on stdin (the test may first put
# a bystander into its process group), starts its reaper (which sees "early" when it arms), then
# spawns one more stubborn process the reaper has not seen ("late"); prints every pid and waits.
SERVICE = """
import json, signal, subprocess, sys
from chatstack.core.orphan_reaper import start_orphan_reaper
stubborn = sys.argv[1]
early = subprocess.Popen([sys.executable, stubborn, "1"], stdout=subprocess.PIPE)
deep = json.loads(early.stdout.readline())
sys.stdin.readline()
helper = start_orphan_reaper()
late = subprocess.Popen([sys.executable, stubborn, "0"], stdout=subprocess.PIPE)
late.stdout.readline()
print(json.dumps({"helper": helper.pid, "early": early.pid, "deep": deep[0], "late": late.pid}), flush=True)
signal.pause()
"""


def _gone(proc: ProcInfo) -> bool:
    """The process is gone (a zombie counts: it runs no more, only waits for its parent)."""
    now = read_proc(proc.pid)
    return now is None or now.zombie or now.start != proc.start


def _info(pid: int) -> ProcInfo:
    info = read_proc(pid)
    assert info is not None, f"process {pid} is not running"
    return info


class Service:
    """A fake service process and everything it started, killed whatever happens at the end."""

    def __init__(self, tmp_path: Path) -> None:
        self.stubborn = tmp_path / "stubborn.py"
        self.stubborn.write_text(STUBBORN)
        self.proc: subprocess.Popen[str] | None = None
        self.others: list[ProcInfo] = []

    def start(self, leads_group: bool) -> subprocess.Popen[str]:
        """Start the service: its own process-group leader, or in this (pytest's) group."""
        self.proc = subprocess.Popen([sys.executable, "-c", SERVICE, str(self.stubborn)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     process_group=0 if leads_group else None)
        return self.proc

    def bystander(self, group: int | None) -> ProcInfo:
        """A stubborn process the test starts (not the service): in process group `group`."""
        proc = subprocess.Popen([sys.executable, str(self.stubborn), "0"], stdout=subprocess.PIPE,
                                process_group=group)
        assert proc.stdout is not None
        proc.stdout.readline()
        self.others.append(_info(proc.pid))
        return self.others[-1]

    def run(self) -> dict[str, ProcInfo]:
        """Let the service arm its reaper; its processes by role."""
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        pids = json.loads(self.proc.stdout.readline())
        procs = {role: _info(pid) for role, pid in pids.items()}
        self.others.extend(procs.values())
        return procs

    def kill_all(self) -> None:
        """SIGKILL the service and whatever it or the test started that still runs."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
        for info in self.others:
            signal_exact(info.pid, info.start, signal.SIGKILL)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    svc = Service(tmp_path)
    try:
        yield svc
    finally:
        svc.kill_all()


def _kill_and_wait_for_reaper(svc: Service, procs: dict[str, ProcInfo]) -> None:
    assert svc.proc is not None
    svc.proc.kill()  # kill -9: the service cleans nothing up
    svc.proc.wait(10)
    wait_until(lambda: _gone(procs["helper"]), 10, "the reaper to finish", interval=0.02)


def test_a_group_leader_service_killed_outright_leaves_nothing_behind(service: Service) -> None:
    # As under ManagedProcess: the service leads its group, so even the process it started after
    # the reaper's last look ("late") is found (in the group).
    service.start(leads_group=True)
    procs = service.run()
    assert "--leads-group" in Path(f"/proc/{procs['helper'].pid}/cmdline").read_text()
    _kill_and_wait_for_reaper(service, procs)
    for role in ("early", "deep", "late"):
        assert _gone(procs[role]), role


def test_a_group_leader_spares_processes_that_joined_its_group_from_outside(service: Service) -> None:
    # `python -m chatstack.tokenizer | tee log` puts tee in the service's group: tee must live on.
    proc = service.start(leads_group=True)
    tee = service.bystander(group=proc.pid)
    procs = service.run()
    _kill_and_wait_for_reaper(service, procs)
    for role in ("early", "deep", "late"):
        assert _gone(procs[role]), role
    assert not _gone(tee)


def test_a_service_in_someone_elses_group_kills_only_its_descendants(service: Service) -> None:
    # Here the group is pytest's: a process group kill would hit pytest and the bystander.
    service.start(leads_group=False)
    bystander = service.bystander(group=None)
    procs = service.run()
    assert "--leads-group" not in Path(f"/proc/{procs['helper'].pid}/cmdline").read_text()
    _kill_and_wait_for_reaper(service, procs)
    assert _gone(procs["early"])
    assert _gone(procs["deep"])  # spawned by "early" before the reaper's first look
    assert not _gone(bystander)
