"""ManagedProcess: where its child runs (process group, session), what `stop` reaches, and that
the child dies with its parent."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from chatstack.core.parent_death import with_parent_death_signal
from chatstack.core.process import ManagedProcess, wait_until

# A child that starts a grandchild, writes the grandchild's pid, and waits for a signal; so does
# the grandchild.
SPAWNER = """
import signal, subprocess, sys
grandchild = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"])
open(sys.argv[1], "w").write(str(grandchild.pid))
signal.pause()
"""


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return status == "Z"


def _wait_for(path: Path, timeout: float = 10.0) -> str:
    wait_until(lambda: path.exists() and bool(path.read_text()), timeout, f"{path} written", interval=0.02)
    return path.read_text()


@pytest.fixture
def spawner(tmp_path: Path):  # type: ignore[no-untyped-def]
    pid_file = tmp_path / "grandchild.pid"
    proc = ManagedProcess("spawner", [sys.executable, "-c", SPAWNER, str(pid_file)],
                          tmp_path / "spawner.log").start()
    try:
        yield proc, int(_wait_for(pid_file))
    finally:
        proc.stop(5)
        with contextlib.suppress(ProcessLookupError):  # the grandchild outlives a SIGTERMed child
            os.killpg(proc.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]


def test_child_leads_its_own_process_group_in_the_callers_session(spawner) -> None:  # type: ignore[no-untyped-def]
    # Same session = same scheduler autogroup as the caller: a new session let a busy engine's
    # autogroup starve the caller's reads for hundreds of ms (see ManagedProcess's docstring).
    proc, grandchild = spawner
    assert os.getsid(proc.proc.pid) == os.getsid(0)
    assert os.getpgid(proc.proc.pid) == proc.proc.pid != os.getpgid(0)
    assert os.getpgid(grandchild) == proc.proc.pid


def test_stop_kills_what_the_child_spawned_when_it_ignores_sigterm(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    stubborn = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + SPAWNER
    proc = ManagedProcess("stubborn", [sys.executable, "-c", stubborn, str(pid_file)],
                          tmp_path / "stubborn.log").start()
    grandchild = int(_wait_for(pid_file))
    code = proc.stop(timeout=0.5)
    assert code == -9  # SIGTERM was ignored, the group got SIGKILL
    wait_until(lambda: _gone(grandchild), 5, "the grandchild to be gone", interval=0.02)


# A parent that starts a ManagedProcess child (which waits for a signal), writes the child's pid,
# and waits to be killed.
PARENT = """
import signal, sys
from pathlib import Path
from chatstack.core.process import ManagedProcess
child = ManagedProcess("child", [sys.executable, "-c", "import signal; signal.pause()"],
                       Path(sys.argv[2])).start()
open(sys.argv[1], "w").write(str(child.proc.pid))
signal.pause()
"""


def test_child_dies_when_its_parent_is_killed_outright(tmp_path: Path) -> None:
    # `kill -9` of a supervisor (or of pytest) runs no cleanup: the kernel's parent-death signal
    # (SIGTERM) is what ends the child.
    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(pid_file), str(tmp_path / "child.log")],
                              process_group=0)
    child = 0
    try:
        child = int(_wait_for(pid_file))
        parent.kill()
        parent.wait(10)
        wait_until(lambda: _gone(child), 5, "the child to die with its parent", interval=0.02)
    finally:
        parent.kill()
        parent.wait(10)
        if child:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)


def test_the_launcher_execs_under_its_parent_and_exits_if_the_parent_is_gone_already() -> None:
    argv = with_parent_death_signal([sys.executable, "-c", "print('ran')"])
    assert subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout == "ran\n"
    # As if this process had died before the child armed its death signal: another parent pid.
    orphaned = [*argv[:3], str(os.getpid() + 999_999), *argv[4:]]
    result = subprocess.run(orphaned, capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stdout) == (1, "")
