"""sched_group: the stack's scheduling group at a lower weight while it runs, then as it was."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from chatstack.core.sched_group import autogroup, autogroups_enabled

pytestmark = pytest.mark.skipif(not autogroups_enabled(), reason="the kernel does not group by session here")

# Run in a session of its own (so this test's own group is never touched): the group's nice before,
# inside yielding_group(argv[2]) (after presetting it to argv[1]), and after.
SCRIPT = textwrap.dedent("""
    import json, sys
    from chatstack.core.sched_group import autogroup, set_autogroup_nice, yielding_group
    preset, nice = int(sys.argv[1]), int(sys.argv[2])
    assert set_autogroup_nice(preset)
    with yielding_group(nice) as group:
        inside = autogroup().nice
        print(json.dumps({"yielded": group is not None, "inside": inside, "name": autogroup().name}),
              flush=True)
    print(json.dumps({"after": autogroup().nice}), flush=True)
""")


def run(preset: int, nice: int) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(preset), str(nice)], capture_output=True, text=True,
                         timeout=60, check=True, start_new_session=True).stdout.splitlines()
    first, second = json.loads(out[0]), json.loads(out[1])
    return {**first, "after": second["after"]}


def test_the_group_yields_while_the_block_runs_then_gets_its_nice_back() -> None:
    result = run(preset=0, nice=10)
    assert result["yielded"] is True and result["inside"] == 10 and result["after"] == 0
    # A group of its own, not this test's. This test may itself run in the kernel's root group (a
    # container's init session: no setsid), which has no name (/proc/self/autogroup is empty).
    mine = autogroup()
    assert result["name"] != (mine.name if mine is not None else None)


def test_a_group_already_lower_or_a_zero_nice_is_left_alone() -> None:
    result = run(preset=12, nice=10)
    assert result["yielded"] is False and result["inside"] == 12 and result["after"] == 12
    result = run(preset=0, nice=0)
    assert result["yielded"] is False and result["inside"] == 0 and result["after"] == 0
