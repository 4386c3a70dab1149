"""HandleDownstream with a fake deployment handle: metadata, error mapping, deadlines, cancel.

tests/serve/test_serve_runtime.py runs the real thing: a gateway replica over Serve handles."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from chatstack.core import errors
from chatstack.core.request_context import OWNER_KEY, REQUEST_ID_KEY, set_request_id
from chatstack.gateway.config import GatewayConfig
from chatstack.serve.handle_downstream import HandleDownstream


class FakeResponse:
    """A DeploymentResponse: awaitable, cancellable."""

    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome
        self.cancelled = False

    def __await__(self) -> Any:
        return self._result().__await__()

    async def _result(self) -> Any:
        if self.outcome == "hang":
            await asyncio.Event().wait()
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome

    def cancel(self) -> None:
        self.cancelled = True


class FakeStream:
    """A DeploymentResponseGenerator."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.cancelled = False

    async def _gen(self) -> AsyncIterator[Any]:
        for item in self.items:
            if isinstance(item, BaseException):
                raise item
            yield item

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._gen()

    def cancel(self) -> None:
        self.cancelled = True


class FakeHandle:
    """Records every call (method, request, context, handle options); answers with `outcome`.
    Only `options` with DeploymentHandle's own option names, as HandleDownstream uses it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, Any, dict[str, Any]]] = []
        self.outcome: Any = "ok"
        self.responses: list[Any] = []

    def options(self, *, method_name: str = "__call__", stream: bool = False, session_id: str = "") -> Any:
        handle = self

        class Bound:
            def remote(self, request: Any, context: Any) -> Any:
                handle.calls.append((method_name, request, context, {"stream": stream, "session_id": session_id}))
                response = FakeStream(handle.outcome) if stream else FakeResponse(handle.outcome)
                handle.responses.append(response)
                return response
        return Bound()


def transport(**config: Any) -> tuple[HandleDownstream, dict[str, FakeHandle]]:
    handles = {name: FakeHandle() for name in ("tokenizer", "generation", "reward", "session")}
    return HandleDownstream(GatewayConfig(**config), get_handle=handles.__getitem__), handles


async def test_a_call_carries_the_request_id_and_owner_and_returns_the_reply() -> None:
    ds, handles = transport()
    set_request_id("req-1")
    assert await ds.call("session", "GetSession", "request", owner="alice") == "ok"
    method, request, context, options = handles["session"].calls[0]
    assert (method, request, options) == ("GetSession", "request", {"stream": False, "session_id": ""})
    assert dict(context.invocation_metadata()) == {REQUEST_ID_KEY: "req-1", OWNER_KEY: "alice"}


@pytest.mark.parametrize(("raised", "expected", "message"), [
    (errors.NotFound("session not found"), errors.NotFound, "session not found"),
    (errors.VersionConflict("at 3"), errors.VersionConflict, "session service: at 3"),
    (errors.BackendUnavailable("redis down"), errors.BackendUnavailable, "session service unavailable: redis down"),
    (KeyError("bug"), errors.BackendUnavailable, "session service unavailable: KeyError"),
])
async def test_a_backend_error_maps_like_its_grpc_status(raised: BaseException, expected: type, message: str) -> None:
    ds, handles = transport()

    class RayTaskError(Exception):  # Ray's wrapper keeps the replica's exception as `cause`
        def __init__(self, cause: BaseException) -> None:
            super().__init__(f"traceback ...\n{cause!r}")
            self.cause = cause

    for outcome in (raised, RayTaskError(raised)):
        handles["session"].outcome = outcome
        with pytest.raises(expected) as err:
            await ds.call("session", "PopTurn", "request")
        assert str(err.value) == message


async def test_a_call_past_its_deadline_is_deadline_exceeded_and_cancelled() -> None:
    ds, handles = transport()
    handles["reward"].outcome = "hang"
    with pytest.raises(errors.DeadlineExceeded, match="reward service"):
        await ds.call("reward", "Score", "request", timeout=0.05)
    assert handles["reward"].responses[0].cancelled


async def test_the_generation_stream_yields_maps_errors_and_is_cancelled_when_closed() -> None:
    ds, handles = transport()
    handles["generation"].outcome = ["a", "b"]
    assert [m async for m in ds.generate_stream("request")] == ["a", "b"]
    handles["generation"].outcome = ["a", errors.Overloaded("at its limit")]
    stream = ds.generate_stream("request")
    assert await anext(stream) == "a"
    with pytest.raises(errors.Overloaded, match="generation service: at its limit"):
        await anext(stream)
    handles["generation"].outcome = ["a", "b"]
    early = ds.generate_stream("request")
    assert await anext(early) == "a"
    await early.aclose()
    assert all(r.cancelled for r in handles["generation"].responses)


async def test_generation_calls_carry_the_route_key_as_serves_session_id() -> None:
    ds, handles = transport()
    assert await ds.call("generation", "Generate", "request", route_key="sess-1") == "ok"
    handles["generation"].outcome = ["a"]
    assert [m async for m in ds.generate_stream("request", route_key="sess-1")] == ["a"]
    assert [m async for m in ds.generate_stream("request")] == ["a"]
    assert [(method, options) for method, _, _, options in handles["generation"].calls] == [
        ("Generate", {"stream": False, "session_id": "sess-1"}),
        ("GenerateStream", {"stream": True, "session_id": "sess-1"}),
        ("GenerateStream", {"stream": True, "session_id": ""}),  # no key: Serve's default choice
    ]
