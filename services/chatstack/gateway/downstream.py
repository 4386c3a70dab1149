"""gRPC clients of the backend services, with deadlines, request ids and error mapping.

Every call carries the request id (and the owner, for the session service), gets the client's
remaining deadline (or the configured default), and maps a downstream status to a domain error
that names the service, so the gateway answers e.g. `UNAVAILABLE: generation service
unavailable: ...` quickly instead of hanging.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import grpc

from chatstack.catalog import GENERATION, REWARD, SAFETY, SESSION, TOKENIZER
from chatstack.core import errors
from chatstack.core.request_context import OWNER_KEY, downstream_metadata
from chatstack.core.retry_policy import retry_channel_options
from chatstack.gateway.backend_status import call_deadline, map_status
from chatstack.gateway.config import GatewayConfig
from chatstack.gateway.replicas.discovery import parse_target
from chatstack.gateway.replicas.replica_set import BackendMetrics, ReplicaSet
from chatstack.gateway.replicas.routing import make_router
from chatstack.v1 import (
    generation_pb2,
    generation_pb2_grpc,
    reward_pb2_grpc,
    safety_pb2_grpc,
    session_pb2_grpc,
    tokenizer_pb2_grpc,
)

# backend -> (the proto service its health reports, its stub)
_BACKENDS: dict[str, tuple[str, Any]] = {
    TOKENIZER.name: (TOKENIZER.proto_service, tokenizer_pb2_grpc.TokenizerServiceStub),
    GENERATION.name: (GENERATION.proto_service, generation_pb2_grpc.GenerationServiceStub),
    REWARD.name: (REWARD.proto_service, reward_pb2_grpc.RewardServiceStub),
    SESSION.name: (SESSION.proto_service, session_pb2_grpc.SessionServiceStub),
    SAFETY.name: (SAFETY.proto_service, safety_pb2_grpc.SafetyServiceStub),  # when configured
}

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    # Same message ceiling as the servers.
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    # Keep long-lived backend connections healthy; servers permit pings every 10 s.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    # Reconnect quickly after a backend restarts instead of backing off for up to 120 s.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    # Read-only calls that race a backend's max-connection-age GOAWAY are retried once.
    *retry_channel_options(),
]


def map_rpc_error(service: str, err: grpc.aio.AioRpcError) -> errors.ChatstackError:
    """A downstream failure as a domain error naming the service."""
    return map_status(service, err.code(), err.details() or err.code().name)


class Downstream:
    """The backends over gRPC (the safety service only when it has an address): a `ReplicaSet`
    each (one channel per replica, health-aware, routed by the backend's policy), with deadlines,
    metadata and error mapping per call."""

    def __init__(self, config: GatewayConfig, metrics: BackendMetrics) -> None:
        self.config = config
        self.replica_sets = {
            service: ReplicaSet(
                service, parse_target(getattr(config, f"{service}_address"), f"{service}_address"),
                health_name, make_router(getattr(config, f"{service}_routing"), config.affinity_load_factor),
                stub, CHANNEL_OPTIONS, metrics, config.resolve_interval_seconds)
            for service, (health_name, stub) in _BACKENDS.items() if getattr(config, f"{service}_address")
        }

    async def close(self) -> None:
        """Close every channel."""
        for replicas in self.replica_sets.values():
            await replicas.close()

    def timeout(self) -> float:
        """The deadline of a call made now (see `call_deadline`)."""
        return call_deadline(self.config.default_deadline_seconds)

    async def call(self, service: str, method: str, request: Any, owner: str | None = None,
                   timeout: float | None = None, route_key: str | None = None) -> Any:  # noqa: ASYNC109
        """One unary call of `method` on a replica of `service` that the routing picks (by
        `route_key` under session_affinity), with deadline (`timeout`, default: the client's
        remaining deadline), metadata and error mapping."""
        timeout = timeout or self.timeout()
        replicas = self.replica_sets[service]
        replica = await replicas.pick(route_key, timeout)
        extra = {OWNER_KEY: owner} if owner else {}
        try:
            with replicas.track(replica):
                return await getattr(replica.stub, method)(
                    request, timeout=timeout, metadata=downstream_metadata(extra))
        except grpc.aio.AioRpcError as err:
            raise map_rpc_error(service, err) from err

    async def generate_stream(self, request: generation_pb2.GenerateStreamRequest,
                              route_key: str | None = None
                              ) -> AsyncGenerator[generation_pb2.GenerateStreamResponse]:
        """GenerateStream on the replica the routing picks; closing the iterator (or cancelling
        the task) cancels the RPC, which aborts the request in the engine."""
        timeout = self.timeout()
        replicas = self.replica_sets["generation"]
        replica = await replicas.pick(route_key, timeout)
        call = replica.stub.GenerateStream(request, timeout=timeout, metadata=downstream_metadata())
        try:
            with replicas.track(replica):
                async for message in call:
                    yield message
        except grpc.aio.AioRpcError as err:
            raise map_rpc_error("generation", err) from err
        finally:
            call.cancel()  # no-op when finished; aborts generation when we stop early
