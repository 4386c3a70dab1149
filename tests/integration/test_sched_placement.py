"""Every process of the stack, the vLLM engines' included, shares its starter's scheduling group
(issue 24, `chatstack.core.sched_group`).

A busy engine in a group of its own kept every other group off a core for seconds, the request
path's included; sharing one group with the engines keeps the request path's tail short, and the
group as a whole is what yields to the rest of the machine. This fails if anything the services
start (vLLM's EngineCore and workers, a reaper) lands in a session, hence a group, of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatstack.core.orphan_reaper import descendants, scan
from chatstack.core.sched_group import autogroup, autogroups_enabled
from tests.stack_fixtures import GatewayProcess

pytestmark = pytest.mark.skipif(not autogroups_enabled(), reason="the kernel does not group processes by session here")


def service_pid(address: str) -> int:
    """The pid of the chatstack service listening on `address` (from its command line)."""
    port = address.rsplit(":", 1)[1]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(a.startswith("chatstack.") for a in argv) and "--port" in argv \
                and argv[argv.index("--port") + 1] == port:
            return int(entry.name)
    raise AssertionError(f"no chatstack service listens on {address}")


def test_every_process_of_the_stack_engines_included_shares_the_callers_group(
        stack_addresses: dict[str, str], gateway_process: GatewayProcess) -> None:
    mine = autogroup()
    procs = scan()
    names: dict[str, set[str]] = {}
    for service, address in {**stack_addresses, "gateway": gateway_process.address}.items():
        root = service_pid(address)
        tree = [root, *descendants([root], procs)]
        names[service] = {Path(f"/proc/{pid}/comm").read_text().strip() for pid in tree}
        groups = {pid: autogroup(pid) for pid in tree}
        assert set(groups.values()) == {mine}, f"{service}: {groups} (this test's: {mine})"
    for engine in ("generation", "reward"):  # the engines were looked at, not just their frontends
        assert {"VLLM::EngineCor", "VLLM::Worker"} <= names[engine], names[engine]
