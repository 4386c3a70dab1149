"""gRPC clients of the four backend services, with deadlines, request ids and error mapping.

Every call carries the request id (and the owner, for the session service), gets the client's
remaining deadline (or the configured default), and maps a downstream status to a domain error
that names the service, so the gateway answers e.g. `UNAVAILABLE: generation service
unavailable: ...` quickly instead of hanging.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from chatstack.core import errors
from chatstack.core.request_context import OWNER_KEY, downstream_metadata, remaining_seconds
from chatstack.gateway.config import GatewayConfig
from chatstack.v1 import (
    generation_pb2,
    generation_pb2_grpc,
    reward_pb2,
    reward_pb2_grpc,
    session_pb2,
    session_pb2_grpc,
    tokenizer_pb2,
    tokenizer_pb2_grpc,
)

T = TypeVar("T")

# Downstream status -> domain error class; the message keeps the service's own details.
_MAPPED: dict[grpc.StatusCode, type[errors.ChatstackError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidRequest,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.ABORTED: errors.VersionConflict,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.Overloaded,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.DeadlineExceeded,
}
# Not mapped, so UNAVAILABLE (retryable): CANCELLED (the client's own cancel reaches the gateway
# as a cancelled task, never as a downstream status: a downstream CANCELLED means the backend
# went away, e.g. while shutting down), INTERNAL, UNKNOWN and the rest.
_PASS_THROUGH_DETAILS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                         grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS}

CHANNEL_OPTIONS = [
    # Same message ceiling as the servers.
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    # Keep long-lived backend connections healthy; servers permit pings every 10 s.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    # Reconnect quickly after a backend restarts instead of backing off for up to 120 s.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]


def call_deadline(default_seconds: float) -> float:
    """Seconds a downstream call made now may take: the calling RPC's remaining deadline (the
    client's, or the service's default deadline), `default_seconds` outside an RPC."""
    left = remaining_seconds()
    return default_seconds if left is None else max(0.001, left)


def map_rpc_error(service: str, err: grpc.aio.AioRpcError) -> errors.ChatstackError:
    """A downstream failure as a domain error naming the service."""
    return map_status(service, err.code(), err.details() or err.code().name)


def map_status(service: str, code: grpc.StatusCode, details: str) -> errors.ChatstackError:
    """A downstream status as a domain error naming the service (any transport)."""
    if code in _PASS_THROUGH_DETAILS:
        return _MAPPED[code](details)
    cls = _MAPPED.get(code)
    if cls is not None:
        return cls(f"{service} service: {details}")
    return errors.BackendUnavailable(f"{service} service unavailable: {details}")


class Downstream:
    """Channels and stubs of the tokenizer, generation, reward and session services."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self._channels = {
            name: grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
            for name, address in (("tokenizer", config.tokenizer_address),
                                  ("generation", config.generation_address),
                                  ("reward", config.reward_address),
                                  ("session", config.session_address))
        }
        self.tokenizer = tokenizer_pb2_grpc.TokenizerServiceStub(self._channels["tokenizer"])
        self.generation = generation_pb2_grpc.GenerationServiceStub(self._channels["generation"])
        self.reward = reward_pb2_grpc.RewardServiceStub(self._channels["reward"])
        self.session = session_pb2_grpc.SessionServiceStub(self._channels["session"])

    async def close(self) -> None:
        """Close every channel."""
        for channel in self._channels.values():
            await channel.close()

    def timeout(self) -> float:
        """The deadline of a call made now (see `call_deadline`)."""
        return call_deadline(self.config.default_deadline_seconds)

    async def call(self, service: str, fn: Callable[..., Awaitable[T]], request: Any,
                   owner: str | None = None, timeout: float | None = None) -> T:  # noqa: ASYNC109
        """One unary call with deadline, metadata and error mapping (`timeout` is the gRPC
        deadline of this call, default: the client's remaining deadline)."""
        extra = {OWNER_KEY: owner} if owner else {}
        try:
            return await fn(request, timeout=timeout or self.timeout(),
                            metadata=downstream_metadata(extra))
        except grpc.aio.AioRpcError as err:
            raise map_rpc_error(service, err) from err

    async def generate_stream(self, request: generation_pb2.GenerateStreamRequest
                              ) -> AsyncIterator[generation_pb2.GenerateStreamResponse]:
        """GenerateStream; closing the iterator (or cancelling the task) cancels the RPC,
        which aborts the request in the engine."""
        call = self.generation.GenerateStream(request, timeout=self.timeout(),
                                              metadata=downstream_metadata())
        try:
            async for message in call:
                yield message
        except grpc.aio.AioRpcError as err:
            raise map_rpc_error("generation", err) from err
        finally:
            call.cancel()  # no-op when finished; aborts generation when we stop early


class StageClock:
    """Accumulates wall-clock seconds per stage of one Chat."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def add(self, stage: str, since: float) -> float:
        """Add now - since to `stage`; returns now."""
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - since
        return now


__all__ = ["Downstream", "StageClock", "call_deadline", "generation_pb2", "map_rpc_error", "map_status",
           "reward_pb2", "session_pb2", "tokenizer_pb2"]
