"""The generation deployment's Serve request router, without a Ray cluster: fake replicas (what
Serve's router reads of a `RunningReplica`) behind the real `RequestRouter` machinery.

tests/serve/test_serve_runtime.py routes real Serve calls (handle and gRPC proxy) through it."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable

import pytest

pytest.importorskip("ray")

from ray.serve._private.common import DeploymentHandleSource, DeploymentID, ReplicaID, RequestMetadata
from ray.serve.request_router import PendingRequest

from chatstack.gateway.replicas.routing import BoundedLoadHashRing
from chatstack.serve.session_router import SessionAffinityRouter, affinity_order

DEPLOYMENT = DeploymentID(name="GenerationDeployment", app_name="generation")
_ids = itertools.count()


class FakeReplica:
    """The part of Serve's `RunningReplica` its router uses: id, capacity, queue length probe."""

    def __init__(self, unique_id: str, queue_len: int = 0, max_ongoing_requests: int = 256) -> None:
        self.replica_id = ReplicaID(unique_id=unique_id, deployment_id=DEPLOYMENT)
        self.queue_len = queue_len
        self.max_ongoing_requests = max_ongoing_requests
        self.node_id = "node-1"
        self.availability_zone = None
        self.multiplexed_model_ids: set[str] = set()

    async def get_queue_len(self, *, deadline_s: float) -> int:
        return self.queue_len


def router(replicas: Iterable[FakeReplica], **kwargs: float) -> SessionAffinityRouter:
    r = SessionAffinityRouter(deployment_id=DEPLOYMENT, handle_source=DeploymentHandleSource.REPLICA,
                              self_node_id="node-1", use_replica_queue_len_cache=True)
    r.initialize_state(**kwargs)
    r.update_replicas(list(replicas))
    return r


def call(session_id: str = "", internal_request_id: str | None = None) -> PendingRequest:
    rid = internal_request_id or f"internal-{next(_ids)}"
    return PendingRequest(args=[], kwargs={}, metadata=RequestMetadata(
        request_id=rid, internal_request_id=rid, call_method="Generate", session_id=session_id))


async def route(r: SessionAffinityRouter, *calls: PendingRequest) -> list[str]:
    """The replica each call is routed to, routed concurrently as Serve does."""
    chosen = await asyncio.wait_for(asyncio.gather(*(r._choose_replica_for_request(c) for c in calls)), 10)
    return [replica.replica_id.unique_id for replica in chosen]


def home(replicas: list[str], key: str) -> str:
    return BoundedLoadHashRing().home(sorted(replicas), key)


def test_affinity_order_puts_the_keys_replica_first_then_the_others() -> None:
    ring, replicas = BoundedLoadHashRing(0.25), ["a", "b", "c"]
    order = affinity_order(ring, replicas, {}, "session-1")
    assert order[0] == home(replicas, "session-1") and sorted(order) == replicas


def test_affinity_order_passes_a_call_on_when_the_home_replica_is_above_the_bound() -> None:
    ring, replicas = BoundedLoadHashRing(0.25), ["a", "b"]
    key = "session-1"
    busy = home(replicas, key)
    order = affinity_order(ring, replicas, {busy: 6}, key)  # cap: ceil(1.25 * 7 / 2) = 5
    assert order[0] != busy and order[1] == busy


async def test_a_sessions_calls_all_go_to_its_replica_and_sessions_spread() -> None:
    names = ["r1", "r2", "r3"]
    r = router(FakeReplica(n) for n in names)
    sessions = [f"session-{i}" for i in range(24)]
    for _ in range(3):  # every turn of every conversation
        assert [(await route(r, call(s)))[0] for s in sessions] == [home(names, s) for s in sessions]
    assert {home(names, s) for s in sessions} == set(names)


async def test_the_choice_follows_the_queue_lengths_the_router_knows() -> None:
    names = ["r1", "r2"]
    key = "session-7"
    busy = home(names, key)
    r = router(FakeReplica(n, queue_len=9 if n == busy else 0) for n in names)
    await route(r, call())  # probes the queues into the router's cache: 9 and 0
    assert await route(r, call(key)) == [next(n for n in names if n != busy)]


async def test_a_full_replica_passes_the_call_to_another() -> None:
    names = ["r1", "r2"]
    key = "session-3"
    full = home(names, key)
    r = router(FakeReplica(n, queue_len=4 if n == full else 0, max_ongoing_requests=4) for n in names)
    assert await route(r, call(key)) == [next(n for n in names if n != full)]


async def test_concurrent_calls_sharing_an_internal_request_id_each_reach_their_own_replica() -> None:
    # What the gateway does: calls made while serving one Serve request share its internal id.
    names = ["r1", "r2"]
    r = router(FakeReplica(n) for n in names)
    sessions = [f"session-{i}" for i in range(6)]
    calls = [call(s, internal_request_id="one-gateway-request") for s in sessions]
    assert await route(r, *calls) == [home(names, s) for s in sessions]


async def test_calls_without_a_session_get_power_of_two_choices() -> None:
    r = router(FakeReplica(n, queue_len=q) for n, q in (("r1", 0), ("r2", 3)))
    assert await route(r, call(), call()) == ["r1", "r1"]  # two candidates: the shorter queue


def test_the_load_factor_comes_from_the_router_kwargs_and_unknown_kwargs_fail() -> None:
    r = SessionAffinityRouter(deployment_id=DEPLOYMENT, handle_source=DeploymentHandleSource.REPLICA)
    r.initialize_state(load_factor=0.5, virtual_nodes=40)
    assert (r._ring.load_factor, r._ring.virtual_nodes) == (0.5, 40)
    with pytest.raises(TypeError):
        r.initialize_state(load_factr=0.5)
