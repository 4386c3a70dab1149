"""The retry policy of read-only calls (chatstack.core.retry_policy), on a real gRPC channel: a
read-only call that fails UNAVAILABLE once is retried; a mutation is not."""

from __future__ import annotations

import json

import grpc
import pytest

from chatstack.core.retry_policy import RETRYABLE, retry_channel_options, retry_service_config, retryable
from chatstack.v1 import (
    session_pb2,
    session_pb2_grpc,
    tokenizer_pb2,
    tokenizer_pb2_grpc,
)


class FlakyTokenizer(tokenizer_pb2_grpc.TokenizerServiceServicer):
    def __init__(self) -> None:
        self.calls = 0

    async def CountTokens(self, request: tokenizer_pb2.CountTokensRequest,
                          context: grpc.aio.ServicerContext) -> tokenizer_pb2.CountTokensResponse:
        self.calls += 1
        if self.calls == 1:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "GOAWAY received")
        return tokenizer_pb2.CountTokensResponse(counts=[3])


class FlakySession(session_pb2_grpc.SessionServiceServicer):
    def __init__(self) -> None:
        self.calls = 0

    async def PushTurn(self, request: session_pb2.PushTurnRequest,
                       context: grpc.aio.ServicerContext) -> session_pb2.PushTurnResponse:
        self.calls += 1
        await context.abort(grpc.StatusCode.UNAVAILABLE, "GOAWAY received")


async def test_a_read_only_call_is_retried_once_and_a_mutation_is_not() -> None:
    server = grpc.aio.server()
    tokenizer, session = FlakyTokenizer(), FlakySession()
    tokenizer_pb2_grpc.add_TokenizerServiceServicer_to_server(tokenizer, server)
    session_pb2_grpc.add_SessionServiceServicer_to_server(session, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=retry_channel_options()) as channel:
            counted = await tokenizer_pb2_grpc.TokenizerServiceStub(channel).CountTokens(
                tokenizer_pb2.CountTokensRequest(texts=["a"]), timeout=5)
            assert list(counted.counts) == [3] and tokenizer.calls == 2
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await session_pb2_grpc.SessionServiceStub(channel).PushTurn(
                    session_pb2.PushTurnRequest(session_id="s"), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE and session.calls == 1
    finally:
        await server.stop(None)


def test_the_config_names_only_methods_safe_to_send_twice() -> None:
    [method_config] = json.loads(retry_service_config())["methodConfig"]
    names = {(n["service"], n.get("method")) for n in method_config["name"]}
    assert ("chatstack.v1.SessionService", "PushTurn") not in names
    assert ("chatstack.v1.SessionService", "GetContext") in names
    assert ("chatstack.v1.TokenizerService", None) in names
    assert ("chatstack.v1.ChatService", "GetHistory") in names and ("chatstack.v1.ChatService", "Chat") not in names
    assert retryable("chatstack.v1.ChatService", "SubmitFeedback") and not retryable("chatstack.v1.ChatService", "Undo")
    assert set(RETRYABLE) == {s for s, _ in names}
    assert method_config["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
