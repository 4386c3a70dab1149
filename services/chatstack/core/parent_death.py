"""Children that die with their parent: a tiny exec launcher that asks Linux for a signal when
its parent dies (`PR_SET_PDEATHSIG`, kept across `exec`), then becomes the real program.

`with_parent_death_signal(argv)` wraps a command line: the child runs
`python -m chatstack.core.parent_death PARENT_PID SIGNAL -- argv...`, arms the signal, checks that
its parent is still PARENT_PID (if the parent died first, the kernel would never send it: exit
at once), and execs argv. The launcher is its own fresh process, so no Python code runs between
fork and exec in the parent's copy (a `preexec_fn` does: in a parent with other threads, gRPC's
fork handlers and locks held at fork time broke children there, e.g. a Ray head). Standard
library only, so it starts in milliseconds.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable, Sequence

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _resolve_prctl() -> Callable[..., int] | None:
    """libc's `prctl`, or None where there is none (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_PRCTL = _resolve_prctl()


def supported() -> bool:
    """True where the parent-death signal exists (Linux)."""
    return _PRCTL is not None


def set_parent_death_signal(sig: int) -> None:
    """Have the kernel send `sig` to this process when its parent dies (Linux; no-op elsewhere).

    It fires when the parent *thread* that forked this process exits, not only when the whole
    parent process does; it survives exec, and it is not inherited by this process's children.
    """
    if _PRCTL is not None and _PRCTL(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")


def with_parent_death_signal(argv: Sequence[str], sig: int = signal.SIGTERM) -> list[str]:
    """`argv` run so that it gets `sig` when the calling thread (its parent) exits; unchanged
    where the signal does not exist."""
    if not supported():
        return list(argv)
    return [sys.executable, "-m", "chatstack.core.parent_death", str(os.getpid()), str(int(sig)),
            "--", *argv]


def main(args: Sequence[str]) -> int:
    """`PARENT_PID SIGNAL -- argv...`: arm the signal, check the parent, exec argv."""
    parent, sig, separator, *argv = args
    if separator != "--" or not argv:
        print("usage: python -m chatstack.core.parent_death PARENT_PID SIGNAL -- argv...", file=sys.stderr)
        return 2
    set_parent_death_signal(int(sig))
    if os.getppid() != int(parent):
        return 1  # the parent is gone already: nobody would send the signal
    os.execvp(argv[0], argv)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
