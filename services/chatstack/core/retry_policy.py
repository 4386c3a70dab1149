"""gRPC's retry policy for the calls safe to send twice, as a channel's service config.

A server with a maximum connection age (every chatstack service: `max_connection_age_seconds`)
sends GOAWAY; a call that races it can fail UNAVAILABLE ("Stream removed ... GOAWAY received ...
max_age", grpc/grpc#31733) although the server is healthy. UNAVAILABLE is the status gRPC
defines as safe to retry, but only a call that changes nothing, or whose repeat changes nothing
more (a feedback replaces the same turn's feedback), may be sent twice without a second look:
those are listed here, and gRPC retries them once, quickly. Other mutations (a session push,
pop, fork, a Chat) are not retried: a push that reached the server before its connection went
would be stored twice.
"""

from __future__ import annotations

import json

from chatstack.catalog import GATEWAY, GENERATION, REWARD, SESSION, TOKENIZER

# proto service -> its methods that are safe to send twice (None: all of them)
RETRYABLE: dict[str, tuple[str, ...] | None] = {
    TOKENIZER.proto_service: None,
    REWARD.proto_service: None,
    GENERATION.proto_service: ("GetModelInfo",),
    SESSION.proto_service: ("GetSession", "ListSessions", "PeekTurns", "ListTurns", "GetTurns", "GetContext"),
    GATEWAY.proto_service: ("GetSession", "ListSessions", "GetHistory", "SubmitFeedback"),
}


def retryable(service: str, method: str) -> bool:
    """Whether the policy retries `service`/`method` (full proto service name)."""
    methods = RETRYABLE.get(service, ())
    return methods is None or method in methods


def retry_service_config() -> str:
    """The service config (JSON) retrying the RETRYABLE calls once on UNAVAILABLE."""
    names: list[dict[str, str]] = []
    for service, methods in RETRYABLE.items():
        names += [{"service": service}] if methods is None else [
            {"service": service, "method": m} for m in methods]
    return json.dumps({"methodConfig": [{"name": names, "retryPolicy": {
        "maxAttempts": 2, "initialBackoff": "0.05s", "maxBackoff": "0.2s", "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"]}}]})


def retry_channel_options() -> list[tuple[str, object]]:
    """Channel options that turn the policy on."""
    return [("grpc.enable_retries", 1), ("grpc.service_config", retry_service_config())]
