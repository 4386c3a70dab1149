"""The per-call scope both runtimes share, exercised through the Ray Serve ingress (no Ray needed:
a fake of Serve's gRPC context) and the guarded deserializer."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry

from chatstack.core.call_scope import MalformedRequest, guarded_deserializer
from chatstack.core.errors import InvalidRequest
from chatstack.core.metrics import RpcMetrics
from chatstack.core.request_context import current_request_id, remaining_seconds
from chatstack.serve.ingress import ServeIngress, ingress_class
from chatstack.v1 import session_pb2, tokenizer_pb2


class FakeServeContext:
    """What Serve's gRPC context offers the ingress: metadata in, code and details out."""

    def __init__(self, metadata: list[tuple[str, str]]) -> None:
        self.metadata = metadata
        self.code: grpc.StatusCode | None = None
        self.details = ""

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return self.metadata

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details


class Servicer:
    """Records what the scope bound; fails as told."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error
        self.seen: dict[str, Any] = {}

    async def CountTokens(self, request: Any, context: Any) -> Any:
        self.seen = {"request_id": current_request_id(), "deadline": remaining_seconds()}
        if self.error is not None:
            raise self.error
        return tokenizer_pb2.CountTokensResponse(counts=[1])


def ingress(error: BaseException | None) -> tuple[Any, RpcMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    service = tokenizer_pb2.DESCRIPTOR.services_by_name["TokenizerService"]
    obj = ingress_class("Tok", service, ServeIngress)()
    obj.servicer, obj.rpc_metrics = Servicer(error), RpcMetrics(registry, "tokenizer")
    obj.default_deadline_seconds = 30.0
    return obj, obj.rpc_metrics, registry


def calls(registry: CollectorRegistry, code: str) -> float:
    value = registry.get_sample_value("chatstack_rpc_requests_total",
                                      {"service": "tokenizer", "method": "TokenizerService/CountTokens",
                                       "code": code})
    return value or 0.0


async def test_serve_calls_get_the_request_id_and_the_default_deadline() -> None:
    obj, _, registry = ingress(None)
    context = FakeServeContext([("x-request-id", "rid-1")])
    await obj.CountTokens(tokenizer_pb2.CountTokensRequest(texts=["a"]), context)
    assert obj.servicer.seen["request_id"] == "rid-1"
    assert 29 < obj.servicer.seen["deadline"] <= 30
    assert calls(registry, "OK") == 1


async def test_serve_maps_domain_errors_and_hides_unexpected_ones_behind_the_request_id() -> None:
    obj, _, registry = ingress(InvalidRequest("texts: empty"))
    context = FakeServeContext([])
    with pytest.raises(InvalidRequest):
        await obj.CountTokens(tokenizer_pb2.CountTokensRequest(), context)
    assert (context.code, context.details) == (grpc.StatusCode.INVALID_ARGUMENT, "texts: empty")

    obj, _, registry = ingress(KeyError("secret internals"))
    context = FakeServeContext([("x-request-id", "rid-2")])
    with pytest.raises(KeyError):
        await obj.CountTokens(tokenizer_pb2.CountTokensRequest(), context)
    assert context.code == grpc.StatusCode.INTERNAL
    assert context.details == "internal error (request id rid-2)"
    assert calls(registry, "INTERNAL") == 1


async def test_a_cancelled_serve_call_is_counted_cancelled_without_a_status_set() -> None:
    obj, _, registry = ingress(asyncio.CancelledError())
    context = FakeServeContext([])
    with pytest.raises(asyncio.CancelledError):
        await obj.CountTokens(tokenizer_pb2.CountTokensRequest(), context)
    assert context.code is None and calls(registry, "CANCELLED") == 1


def test_malformed_bytes_deserialize_to_a_marker_instead_of_raising() -> None:
    parse = guarded_deserializer(session_pb2.CreateSessionRequest.FromString)
    assert parse is not None
    good = session_pb2.CreateSessionRequest(session_id="abc").SerializeToString()
    assert parse(good).session_id == "abc"
    invalid_utf8 = b"\x0a\x02\xff\xfe"  # field 1 (session_id), 2 bytes that are not UTF-8
    assert isinstance(parse(invalid_utf8), MalformedRequest)
    assert isinstance(parse(good[:-1]), MalformedRequest)  # truncated
