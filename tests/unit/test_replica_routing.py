"""Routing policies and backend address forms of the gateway's replica sets (pure, no servers)."""

from __future__ import annotations

from collections import Counter

import pytest

from chatstack.gateway.config import GatewayConfig
from chatstack.gateway.replicas.discovery import Target, parse_target, resolve
from chatstack.gateway.replicas.routing import BoundedLoadHashRing, LeastLoaded, RoundRobin, make_router

TWO = ["10.0.0.1:50052", "10.0.0.2:50052"]
THREE = [*TWO, "10.0.0.3:50052"]
KEYS = [f"session-{i:04d}" for i in range(2000)]


def test_round_robin_takes_each_replica_in_turn() -> None:
    router = RoundRobin()
    assert [router.pick(THREE, {}, None) for _ in range(6)] == THREE * 2


def test_least_loaded_takes_the_fewest_in_flight_and_rotates_ties() -> None:
    router = LeastLoaded()
    assert router.pick(THREE, {TWO[0]: 3, TWO[1]: 1, THREE[2]: 2}, None) == TWO[1]
    assert {router.pick(THREE, {}, None) for _ in range(3)} == set(THREE)


def test_affinity_sends_a_key_to_one_replica_and_spreads_keys_evenly() -> None:
    ring = BoundedLoadHashRing()
    homes = {key: ring.pick(TWO, {}, key) for key in KEYS}
    assert all(ring.pick(TWO, {}, key) == home for key, home in homes.items())
    shares = Counter(homes.values())
    assert all(0.42 < shares[r] / len(KEYS) < 0.58 for r in TWO), shares


def test_affinity_is_the_same_in_every_process() -> None:
    # blake2b, not Python's salted hash(): two gateways send a session to the same replica
    assert BoundedLoadHashRing().pick(THREE, {}, "session-0001") == BoundedLoadHashRing().pick(
        list(THREE), {}, "session-0001")


def test_adding_a_replica_moves_only_its_share_of_keys() -> None:
    ring = BoundedLoadHashRing()
    before = {key: ring.pick(TWO, {}, key) for key in KEYS}
    after = {key: ring.pick(THREE, {}, key) for key in KEYS}
    moved = [key for key in KEYS if before[key] != after[key]]
    assert all(after[key] == THREE[2] for key in moved)  # nothing moves between the old two
    assert 0.25 < len(moved) / len(KEYS) < 0.42
    # removing it again brings every key home
    assert {key: ring.pick(TWO, {}, key) for key in KEYS} == before


def test_a_replica_over_its_bound_passes_the_key_on_and_gets_it_back_below() -> None:
    ring = BoundedLoadHashRing(load_factor=0.25)
    key = KEYS[0]
    home = ring.pick(TWO, {}, key)
    other = next(r for r in TWO if r != home)
    # the cap is ceil(1.25 * (in flight + 1) / 2): 4 with 4 + 1 in flight, and home holds 4
    assert ring.pick(TWO, {home: 4, other: 1}, key) == other
    # 3 + 1 in flight: cap ceil(3.125) = 4, home has room
    assert ring.pick(TWO, {home: 3, other: 1}, key) == home
    assert ring.pick(TWO, {home: 0, other: 0}, key) == home


def test_bounded_load_keeps_one_hot_key_from_piling_onto_a_replica() -> None:
    ring = BoundedLoadHashRing(load_factor=0.25)
    load = dict.fromkeys(THREE, 0)
    for _ in range(30):  # 30 concurrent calls of one session
        load[ring.pick(THREE, load, "hot")] += 1
    assert max(load.values()) <= 13  # ceil(1.25 * 30 / 3)
    assert min(load.values()) > 0


def test_without_a_key_affinity_is_least_loaded() -> None:
    ring = BoundedLoadHashRing()
    assert ring.pick(TWO, {TWO[0]: 2, TWO[1]: 0}, None) == TWO[1]


def test_make_router_by_policy_name() -> None:
    assert isinstance(make_router("round_robin", 0.25), RoundRobin)
    assert isinstance(make_router("least_loaded", 0.25), LeastLoaded)
    ring = make_router("session_affinity", 0.5)
    assert isinstance(ring, BoundedLoadHashRing) and ring.load_factor == 0.5


@pytest.mark.parametrize(("text", "target"), [
    ("127.0.0.1:50052", Target(static=("127.0.0.1:50052",))),
    ("a:1, b:2", Target(static=("a:1", "b:2"))),
    ("[::1]:50052", Target(static=("[::1]:50052",))),
    ("dns:///chatstack-generation-headless.chat.svc.cluster.local:50052",
     Target(dns_name="chatstack-generation-headless.chat.svc.cluster.local", port=50052)),
    ("dns://127.0.0.1:5353/generation.test:50052",
     Target(dns_name="generation.test", port=50052, dns_server=("127.0.0.1", 5353))),
])
def test_address_forms(text: str, target: Target) -> None:
    assert parse_target(text) == target


@pytest.mark.parametrize("text", ["", "host", "host:port", "host:0", "dns:///name", "dns://x/", "a:1,b"])
def test_a_malformed_address_is_refused_naming_the_setting(text: str) -> None:
    with pytest.raises(ValueError, match="generation_address"):
        GatewayConfig(generation_address=text)


async def test_a_dns_name_without_a_server_resolves_with_the_system_resolver() -> None:
    # /etc/hosts and search domains apply, as for any process in a pod
    assert "127.0.0.1:50052" in await resolve(parse_target("dns:///localhost:50052"))
    with pytest.raises(OSError):
        await resolve(parse_target("dns:///no-such-host.invalid:50052"))
    assert await resolve(parse_target("b:2,a:1")) == ["b:2", "a:1"]  # a static list as written
