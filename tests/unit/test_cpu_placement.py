"""cpu_placement: finding the cores an engine's processes are bound to, and moving off them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from chatstack.core.cpu_placement import engine_cpus

CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
pytestmark = pytest.mark.skipif(len(CPUS) < 2, reason="needs Linux and at least 2 allowed CPUs")

# A process that starts a "model worker" bound to the cores in argv[1] (like vLLM's OpenMP
# binding), optionally one bound to every allowed core, then runs `BODY` and prints its result.
SCRIPT = textwrap.dedent("""
    import json, os, subprocess, sys, threading
    from chatstack.core.cpu_placement import keep_off_engine_cores, off_engine_cores
    bound = [int(c) for c in sys.argv[1].split(",") if c]
    worker = None
    if bound:
        worker = subprocess.Popen([sys.executable, "-c",  # lives until its stdin closes
            "import os, sys; os.sched_setaffinity(0, %r); print('ok', flush=True); sys.stdin.read()"
            % (bound,)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert worker.stdout.readline().strip() == "ok"
    early = threading.Event()
    thread = threading.Thread(target=early.wait, daemon=True)  # started before the move
    thread.start()
    def masks():
        return sorted({tuple(sorted(os.sched_getaffinity(int(t)))) for t in os.listdir("/proc/self/task")})
    if sys.argv[2] == "block":
        with off_engine_cores() as moved:
            inside = masks()
        print(json.dumps({"moved": sorted(moved) if moved is not None else None, "inside": inside,
                          "masks": masks()}))
    else:
        moved = keep_off_engine_cores()
        print(json.dumps({"moved": sorted(moved) if moved is not None else None, "masks": masks()}))
    if worker:
        worker.kill()
""")


def run(bound: list[int], how: str = "call") -> dict:  # type: ignore[type-arg]
    out = subprocess.run([sys.executable, "-c", SCRIPT, ",".join(map(str, bound)), how],
                         capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_moves_every_thread_off_the_cores_a_child_is_bound_to() -> None:
    result = run([CPUS[0]])
    assert result["moved"] == CPUS[1:]
    assert result["masks"] == [CPUS[1:]]  # every thread, the early one too


def test_off_engine_cores_moves_for_the_block_then_puts_every_thread_back() -> None:
    result = run([CPUS[0]], "block")
    assert result["moved"] == CPUS[1:]
    assert result["inside"] == [CPUS[1:]]
    assert result["masks"] == [CPUS]


def test_leaves_placement_alone_without_a_bound_child() -> None:
    result = run([])
    assert result["moved"] is None
    assert result["masks"] == [CPUS]


def test_leaves_placement_alone_when_the_engine_holds_every_core() -> None:
    # Bound to all allowed cores is not "bound" at all (a strict subset is): nothing to avoid.
    result = run(CPUS)
    assert result["moved"] is None
    assert result["masks"] == [CPUS]


def test_engine_cpus_looks_at_descendants_only() -> None:
    grandparent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import os, subprocess, sys
            child = subprocess.Popen([sys.executable, "-c",
                "import os, sys; os.sched_setaffinity(0, {{{CPUS[-1]}}}); print('ok', flush=True); sys.stdin.read()"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert child.stdout.readline().strip() == "ok"
            print(child.pid, flush=True)
            sys.stdin.read()  # until the test closes it (or dies); the child then sees EOF too
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert grandparent.stdout is not None
        bound_child = int(grandparent.stdout.readline())
        assert engine_cpus(grandparent.pid) == {CPUS[-1]}
        assert engine_cpus(bound_child) == set()  # its own mask is not its descendants'
    finally:
        grandparent.kill()
        grandparent.wait()
