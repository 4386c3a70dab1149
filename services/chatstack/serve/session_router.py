"""Session affinity on Ray Serve: a Serve request router for the generation deployment that sends
a conversation's calls to the replica whose vLLM prefix cache already holds its prefix.

The routing key is Serve's own per-call session id (`RequestMetadata.session_id`), which each kind
of caller can set without touching the request:

- the gateway replica: `handle.options(session_id=<chatstack session id>)` (`HandleDownstream`);
- a gRPC client of the generation application through Serve's gRPC proxy: metadata
  `session_id: <id>` (the proxy copies it onto its handle call);
- an HTTP client: the header named by `RAY_SERVE_SESSION_ID_HEADER_KEY` (default `x-session-id`).

With a key, the replica is picked as the standalone gateway's `session_affinity` policy picks it:
consistent hashing with bounded loads (`BoundedLoadHashRing`, keyed on replica unique ids, so the
gateway's router and every proxy's router agree), where a replica's load is its queue length as
this router knows it: Serve's queue-length cache (the replica's last reported ongoing requests,
plus this router's sends since, minus their completions; an entry older than
`RAY_SERVE_QUEUE_LENGTH_CACHE_TIMEOUT_S`, 10 s, counts as 0). If the chosen replica is full
(`max_ongoing_requests`), the others follow, least loaded first. Without a key it is Serve's
default, power of two choices.

Each pending call gets the replica chosen for it. Serve's base router matches a choice to a call by
internal request id, which every handle call made while serving one Serve request shares (two
concurrent calls from one gateway request: the second is never routed), and its FIFO mixin gives a
choice to the oldest waiting call, whatever its session; so this router matches by identity.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from ray.serve._private.request_router import PowerOfTwoChoicesRequestRouter
from ray.serve.request_router import PendingRequest, RunningReplica

from chatstack.gateway.replicas.routing import VIRTUAL_NODES, BoundedLoadHashRing

log = logging.getLogger(__name__)

ROUTER_PATH = "chatstack.serve.session_router:SessionAffinityRouter"  # request_router_class
DEFAULT_LOAD_FACTOR = 0.25


def affinity_order(ring: BoundedLoadHashRing, replicas: Sequence[str], load: Mapping[str, int],
                   key: str) -> list[str]:
    """The replica the key goes to (its ring home unless above the load bound), then the others."""
    chosen = ring.pick(replicas, load, key)
    return [chosen, *(r for r in replicas if r != chosen)]


class SessionAffinityRouter(PowerOfTwoChoicesRequestRouter):
    """Serve request router: bounded-load consistent hashing on the call's session id, power of
    two choices without one (see module docstring). `request_router_kwargs`: `load_factor` (ε),
    `virtual_nodes`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ring = BoundedLoadHashRing(DEFAULT_LOAD_FACTOR)

    def initialize_state(self, **kwargs: Any) -> None:
        """Serve calls it with `request_router_kwargs` (`load_factor`, `virtual_nodes`); another
        kwarg is a TypeError."""
        unknown = set(kwargs) - {"load_factor", "virtual_nodes"}
        if unknown:
            raise TypeError(f"SessionAffinityRouter: unknown request_router_kwargs {sorted(unknown)}")
        load_factor = float(kwargs.get("load_factor", DEFAULT_LOAD_FACTOR))
        self._ring = BoundedLoadHashRing(load_factor, int(kwargs.get("virtual_nodes", VIRTUAL_NODES)))
        log.info("session affinity router for %s: load_factor=%s", self._deployment_id, load_factor)

    async def choose_replicas(self, candidate_replicas: list[RunningReplica],
                              pending_request: PendingRequest | None = None) -> list[list[RunningReplica]]:
        """Ranks of replicas to try: the session's replica, then the others (Serve takes the least
        loaded non-full replica of the first rank that has one, and backs off if none has)."""
        if pending_request is None or not pending_request.metadata.session_id or not candidate_replicas:
            return await super().choose_replicas(candidate_replicas, pending_request)
        key = pending_request.metadata.session_id
        pending_request.routing_context.should_backoff = True  # all full: back off before retrying
        by_id = {r.replica_id.unique_id: r for r in candidate_replicas}
        cache = self.replica_queue_len_cache
        load = {uid: cache.get(r.replica_id) or 0 for uid, r in by_id.items()}
        first, *rest = affinity_order(self._ring, sorted(by_id), load, key)
        return [[by_id[first]], [by_id[uid] for uid in rest]] if rest else [[by_id[first]]]

    def _fulfill_next_pending_request(self, replica: RunningReplica, request_metadata: Any = None) -> None:
        """Give `replica` to the call it was chosen for (the pending request whose metadata this
        is), not to the oldest waiting call nor to one that merely shares its internal id."""
        for pending in self._pending_requests_to_fulfill:
            if pending.metadata is request_metadata:
                break
        else:
            return  # cancelled meanwhile: its routing task sees the future done
        if pending.future.done():
            return
        self._cancel_routing_task_for_pending_request(pending)
        self._record_queue_wait_time(pending)
        pending.future.set_result(replica)
        if self._pending_requests_by_id.get(request_metadata.internal_request_id) is pending:
            self._remove_pending_request_from_indices(pending)  # not a sibling's entry
