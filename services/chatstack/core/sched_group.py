"""The local stack as one scheduling group that yields the CPU to the rest of the machine (issue 24).

Linux shares a core between scheduling groups first, then between the tasks of a group. A session
is a group (autogroups, `sched_autogroup_enabled`: a desktop, a VM, `make run`); in a container the
cgroup is. A busy vLLM engine on CPU keeps its cores busy, and between steps its processes
spin-wait on each other (`sched_yield` loops on a shared-memory queue for up to a second after each
message; a non-spinning wait cannot be had: vLLM's fallback relies on a notification that can be
dropped and stalled each step). Measured on this 2-core VM (kernel 6.18, EEVDF, preempt=none)
while 32 streams ran:

- a process in another session than the engine's, sleeping 5 ms at a time, waited up to 12 s for
  a core (47 s of 60 s); the kernel's own ksoftirqd and RCU threads 160-400 ms. That is how every
  RPC of a load test run from another terminal stalled for 1-2 s at a time, health checks
  included (health `Check` p99 0.8 s, max 3.1 s, over 10 minutes);
- in the engine's own session nothing waited over 65 ms, and plain CPU burners in another session
  caused no wait at all;
- lowering the engine inside its group (nice 10, even SCHED_IDLE for every engine thread) did not
  help: the group as a whole kept the core. Giving each engine a group of its own at a lower
  weight fixed the other groups but starved the engines' own frontends and stretched the request
  path's tail (cheap RPCs' p99 13-17x their p50);
- one group for the whole stack, engines and request path together, at nice 10: the request path
  shares its group with the engines as before (cheap RPCs' p99 <= 4.5x p50) and every other group
  on the machine (clients, terminals, the kernel's threads) gets a core first (longest wait 7.5 ms).

So `make run` and `make run-ray` keep every process of the stack in the supervisor's session (every
child chatstack starts stays in it: `ManagedProcess`), and run with that group's nice raised
(`yielding_group`), restored when they stop. Raising a nice needs no privilege, nor does setting
it back down to where it was as long as that is >= 0. Linux only; elsewhere nothing changes.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

AUTOGROUP_SWITCH = Path("/proc/sys/kernel/sched_autogroup_enabled")
#: The kernel's rate limit on changing an autogroup's nice without CAP_SYS_ADMIN (HZ / 10).
RATE_LIMIT_SECONDS = 0.11
RATE_LIMIT_RETRIES = 5


def autogroups_enabled() -> bool:
    """Whether the kernel schedules by session (autogroups) at all."""
    try:
        return AUTOGROUP_SWITCH.read_text().strip() == "1"
    except OSError:
        return False


@dataclass(frozen=True)
class Autogroup:
    """A process's scheduler autogroup: its name (`/autogroup-N`) and nice."""

    name: str
    nice: int


def autogroup(pid: int | str = "self") -> Autogroup | None:
    """`pid`'s autogroup, or None where the kernel has none or `pid` is in the root group (init's
    session, as in a container that never called setsid: its weight cannot be changed)."""
    try:
        name, _, nice = Path(f"/proc/{pid}/autogroup").read_text().split()
    except (OSError, ValueError):
        return None
    return Autogroup(name, int(nice))


def set_autogroup_nice(nice: int, pid: int | str = "self") -> bool:
    """Set the nice of `pid`'s autogroup (>= 0 needs no privilege); False where it cannot. Without
    CAP_SYS_ADMIN the kernel takes one such change per 100 ms machine-wide (EAGAIN): retried."""
    if not autogroups_enabled():
        return False
    for attempt in range(RATE_LIMIT_RETRIES + 1):
        try:
            Path(f"/proc/{pid}/autogroup").write_text(str(nice))
            return True
        except OSError as exc:
            if exc.errno != errno.EAGAIN or attempt == RATE_LIMIT_RETRIES:
                return False
            time.sleep(RATE_LIMIT_SECONDS)
    return False


@contextmanager
def yielding_group(nice: int) -> Iterator[Autogroup | None]:
    """For the block: this process's scheduling group (its session's autogroup, which every process
    it starts shares) at `nice`, then the nice it had. Yields the group as set, or None when it was
    left alone (no autogroups, `nice` <= 0, or the group already at `nice` or lower in priority)."""
    before = autogroup() if autogroups_enabled() else None
    if before is None or nice <= 0 or before.nice >= nice or not set_autogroup_nice(nice):
        yield None
        return
    try:
        log.info("scheduling group %s at nice %d while the stack runs (was %d)", before.name, nice,
                 before.nice)
        yield autogroup()
    finally:
        set_autogroup_nice(before.nice)
