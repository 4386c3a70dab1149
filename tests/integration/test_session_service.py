"""The session service over real gRPC with a real redis-server."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import grpc
import pytest
import redis

from chatstack.core.process import free_port
from chatstack.core.redis_process import RedisProcess
from chatstack.v1 import common_pb2, session_pb2, session_pb2_grpc
from tests.integration.conftest import start_session_service

pytestmark = pytest.mark.integration
USER, ASSISTANT = common_pb2.ROLE_USER, common_pb2.ROLE_ASSISTANT


def owner_md(owner: str | None = None) -> tuple[tuple[str, str], ...]:
    return (("x-chatstack-owner", owner or f"owner-{uuid.uuid4().hex[:8]}"),)


def new_session(stub: session_pb2_grpc.SessionServiceStub, md, **kw) -> session_pb2.Session:  # type: ignore[no-untyped-def]
    return stub.CreateSession(session_pb2.CreateSessionRequest(**kw), metadata=md).session


def push(stub, md, sid: str, content: str, tokens: int = 1, role: int = USER,  # type: ignore[no-untyped-def]
         timeout: float = 10.0):
    return stub.PushTurn(session_pb2.PushTurnRequest(
        session_id=sid, role=role, content=content, token_count=tokens), metadata=md, timeout=timeout)


def status_of(fn, *args, **kwargs) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    try:
        fn(*args, **kwargs)
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


# -- concurrency --------------------------------------------------------------------------
async def test_fifty_concurrent_pushes_all_land_exactly_once(session_service: tuple[str, int]) -> None:
    md = owner_md()
    async with grpc.aio.insecure_channel(session_service[0]) as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        sid = (await stub.CreateSession(session_pb2.CreateSessionRequest(), metadata=md)).session.session_id
        await asyncio.gather(*[
            stub.PushTurn(session_pb2.PushTurnRequest(session_id=sid, role=USER, content=f"c{i}",
                                                      token_count=1), metadata=md)
            for i in range(50)])
        turns = (await stub.ListTurns(session_pb2.ListTurnsRequest(session_id=sid, page_size=100),
                                      metadata=md)).turns
    assert sorted(t.content for t in turns) == sorted(f"c{i}" for i in range(50))
    assert [t.position for t in turns] == list(range(50))


async def test_racing_pushes_with_expected_version_exactly_one_wins(
    session_service: tuple[str, int]
) -> None:
    md = owner_md()
    async with grpc.aio.insecure_channel(session_service[0]) as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        session = (await stub.CreateSession(session_pb2.CreateSessionRequest(), metadata=md)).session

        async def attempt(i: int) -> grpc.StatusCode:
            try:
                await stub.PushTurn(session_pb2.PushTurnRequest(
                    session_id=session.session_id, role=USER, content=f"r{i}", token_count=1,
                    expected_version=session.version), metadata=md)
                return grpc.StatusCode.OK
            except grpc.aio.AioRpcError as err:
                return err.code()

        codes = await asyncio.gather(*[attempt(i) for i in range(20)])
        after = (await stub.GetSession(session_pb2.GetSessionRequest(
            session_id=session.session_id), metadata=md)).session
    assert codes.count(grpc.StatusCode.OK) == 1
    assert codes.count(grpc.StatusCode.ABORTED) == 19
    assert after.turn_count == 1 and after.version == session.version + 1


def test_version_conflict_changes_nothing(session_stub: session_pb2_grpc.SessionServiceStub) -> None:
    md = owner_md()
    s = new_session(session_stub, md)
    push(session_stub, md, s.session_id, "a")
    stale = s.version
    for call, req in [
        (session_stub.PushTurn, session_pb2.PushTurnRequest(
            session_id=s.session_id, role=USER, content="b", token_count=1, expected_version=stale)),
        (session_stub.PopTurn, session_pb2.PopTurnRequest(session_id=s.session_id, expected_version=stale)),
        (session_stub.ForkSession, session_pb2.ForkSessionRequest(
            session_id=s.session_id, keep_turns=1, expected_version=stale)),
        (session_stub.DeleteSession, session_pb2.DeleteSessionRequest(
            session_id=s.session_id, expected_version=stale)),
    ]:
        assert status_of(call, req, metadata=md) == grpc.StatusCode.ABORTED
    after = session_stub.GetSession(session_pb2.GetSessionRequest(session_id=s.session_id),
                                    metadata=md).session
    assert (after.turn_count, after.version) == (1, stale + 1)


# -- ownership ------------------------------------------------------------------------------
def test_another_owner_cannot_touch_a_session(session_stub: session_pb2_grpc.SessionServiceStub) -> None:
    alice, bob = owner_md("alice-iso"), owner_md("bob-iso")
    s = new_session(session_stub, alice, system_prompt="secret")
    push(session_stub, alice, s.session_id, "hello")
    sid = s.session_id
    not_found = grpc.StatusCode.NOT_FOUND
    assert status_of(session_stub.GetSession, session_pb2.GetSessionRequest(session_id=sid), metadata=bob) == not_found
    assert status_of(session_stub.PushTurn, session_pb2.PushTurnRequest(
        session_id=sid, role=USER, content="x", token_count=1), metadata=bob) == not_found
    assert status_of(session_stub.PopTurn, session_pb2.PopTurnRequest(session_id=sid), metadata=bob) == not_found
    assert status_of(session_stub.PeekTurns, session_pb2.PeekTurnsRequest(session_id=sid, n=1), metadata=bob) == not_found
    assert status_of(session_stub.GetContext, session_pb2.GetContextRequest(
        session_id=sid, token_budget=10), metadata=bob) == not_found
    assert status_of(session_stub.ForkSession, session_pb2.ForkSessionRequest(
        session_id=sid, keep_turns=1), metadata=bob) == not_found
    assert status_of(session_stub.DeleteSession, session_pb2.DeleteSessionRequest(session_id=sid), metadata=bob) == not_found
    listed = session_stub.ListSessions(session_pb2.ListSessionsRequest(), metadata=bob).sessions
    assert sid not in {x.session_id for x in listed}
    # Indistinguishable from a missing session: same code, same message.
    with pytest.raises(grpc.RpcError) as other:
        session_stub.GetSession(session_pb2.GetSessionRequest(session_id=sid), metadata=bob)
    with pytest.raises(grpc.RpcError) as missing:
        session_stub.GetSession(session_pb2.GetSessionRequest(session_id="nope"), metadata=bob)
    assert other.value.details() == missing.value.details()
    after = session_stub.GetSession(session_pb2.GetSessionRequest(session_id=sid), metadata=alice).session
    assert after.turn_count == 1 and after.version == 2


def test_missing_owner_is_unauthenticated(session_stub: session_pb2_grpc.SessionServiceStub) -> None:
    assert status_of(session_stub.CreateSession, session_pb2.CreateSessionRequest()) == \
        grpc.StatusCode.UNAUTHENTICATED


# -- errors -----------------------------------------------------------------------------------
def test_bad_requests_get_precise_codes(session_stub: session_pb2_grpc.SessionServiceStub) -> None:
    md = owner_md()
    sid = new_session(session_stub, md).session_id
    cases = [
        (session_stub.PopTurn, session_pb2.PopTurnRequest(session_id=sid),
         grpc.StatusCode.FAILED_PRECONDITION, "empty"),
        (session_stub.GetSession, session_pb2.GetSessionRequest(session_id="does-not-exist"),
         grpc.StatusCode.NOT_FOUND, "not found"),
        (session_stub.PushTurn, session_pb2.PushTurnRequest(session_id=sid, role=common_pb2.ROLE_UNSPECIFIED,
                                                            content="x"),
         grpc.StatusCode.INVALID_ARGUMENT, "role"),
        (session_stub.PushTurn, session_pb2.PushTurnRequest(session_id=sid, role=common_pb2.ROLE_SYSTEM,
                                                            content="x"),
         grpc.StatusCode.INVALID_ARGUMENT, "role"),
        (session_stub.PushTurn, session_pb2.PushTurnRequest(session_id=sid, role=USER, content=""),
         grpc.StatusCode.INVALID_ARGUMENT, "content: empty"),
        (session_stub.PushTurn, session_pb2.PushTurnRequest(session_id=sid, role=USER, content="x" * 1025),
         grpc.StatusCode.INVALID_ARGUMENT, "content: 1025 bytes exceed the limit of 1024"),
        (session_stub.GetContext, session_pb2.GetContextRequest(session_id=sid, token_budget=0),
         grpc.StatusCode.INVALID_ARGUMENT, "token_budget"),
        (session_stub.GetContext, session_pb2.GetContextRequest(session_id=sid, token_budget=-5),
         grpc.StatusCode.INVALID_ARGUMENT, "token_budget"),
        (session_stub.PeekTurns, session_pb2.PeekTurnsRequest(session_id=sid, n=0),
         grpc.StatusCode.INVALID_ARGUMENT, "n: must be"),
        (session_stub.ForkSession, session_pb2.ForkSessionRequest(session_id=sid, keep_turns=3),
         grpc.StatusCode.INVALID_ARGUMENT, "keep_turns"),
        (session_stub.ForkSession, session_pb2.ForkSessionRequest(session_id=sid, before_turn_id="zz"),
         grpc.StatusCode.NOT_FOUND, "turn not found"),
        (session_stub.CreateSession, session_pb2.CreateSessionRequest(session_id="bad id!"),
         grpc.StatusCode.INVALID_ARGUMENT, "session_id"),
        (session_stub.CreateSession, session_pb2.CreateSessionRequest(session_id=sid),
         grpc.StatusCode.ALREADY_EXISTS, "exists"),
        (session_stub.ListSessions, session_pb2.ListSessionsRequest(page_token="garbage"),
         grpc.StatusCode.INVALID_ARGUMENT, "page_token"),
    ]
    for call, req, code, needle in cases:
        with pytest.raises(grpc.RpcError) as err:
            call(req, metadata=md, timeout=5)
        assert (err.value.code(), needle in err.value.details()) == (code, True), (req, err.value)
    after = session_stub.GetSession(session_pb2.GetSessionRequest(session_id=sid), metadata=md).session
    assert after.version == 1 and after.turn_count == 0  # no bad request changed anything


# -- behaviour --------------------------------------------------------------------------------
def test_context_keeps_system_prompt_and_newest_whole_turns(
    session_stub: session_pb2_grpc.SessionServiceStub
) -> None:
    md = owner_md()
    sid = new_session(session_stub, md, system_prompt="be kind", system_prompt_tokens=5).session_id
    for i, tokens in enumerate([10, 20, 30, 40]):
        push(session_stub, md, sid, f"t{i}", tokens, role=USER if i % 2 == 0 else ASSISTANT)
    ctx = session_stub.GetContext(session_pb2.GetContextRequest(session_id=sid, token_budget=80),
                                  metadata=md)
    assert [t.content for t in ctx.turns] == ["t2", "t3"]  # 5 + 30 + 40 = 75; t1 would be 95
    assert (ctx.system_prompt, ctx.total_tokens, ctx.truncated, ctx.omitted_turns) == ("be kind", 75, True, 2)
    whole = session_stub.GetContext(session_pb2.GetContextRequest(session_id=sid, token_budget=105),
                                    metadata=md)
    assert [t.content for t in whole.turns] == ["t0", "t1", "t2", "t3"] and not whole.truncated
    tiny = session_stub.GetContext(session_pb2.GetContextRequest(session_id=sid, token_budget=3),
                                   metadata=md)
    assert (tiny.system_prompt, len(tiny.turns), tiny.omitted_turns) == ("be kind", 0, 4)


def test_a_budget_of_exactly_the_system_prompt_still_holds_turns_of_no_tokens(
    session_stub: session_pb2_grpc.SessionServiceStub
) -> None:
    # Found by the stateful model test: with no budget left after the system prompt, a turn counted
    # as 0 tokens fits (0 <= 0), as the reference says; the script used to return none.
    md = owner_md()
    sid = new_session(session_stub, md, system_prompt="sp", system_prompt_tokens=2).session_id
    push(session_stub, md, sid, "t0", 3)
    push(session_stub, md, sid, "x", 0, role=ASSISTANT)
    ctx = session_stub.GetContext(session_pb2.GetContextRequest(session_id=sid, token_budget=2), metadata=md)
    assert [(t.content, t.token_count) for t in ctx.turns] == [("x", 0)] and ctx.omitted_turns == 1


def test_fork_below_a_turn_keeps_the_turns_under_it(session_stub: session_pb2_grpc.SessionServiceStub) -> None:
    md = owner_md()
    sid = new_session(session_stub, md, system_prompt="sp").session_id
    ids = [push(session_stub, md, sid, f"m{i}", 2).turn.turn_id for i in range(4)]
    fork = session_stub.ForkSession(session_pb2.ForkSessionRequest(
        session_id=sid, before_turn_id=ids[2], metadata={"from": sid}), metadata=md).session
    turns = session_stub.ListTurns(session_pb2.ListTurnsRequest(session_id=fork.session_id),
                                   metadata=md).turns
    assert [t.content for t in turns] == ["m0", "m1"] and [t.turn_id for t in turns] == ids[:2]
    assert (fork.system_prompt, fork.turn_count, fork.total_tokens, fork.metadata["from"]) == ("sp", 2, 4, sid)
    source = session_stub.GetSession(session_pb2.GetSessionRequest(session_id=sid), metadata=md).session
    assert source.turn_count == 4  # the source is untouched


def test_list_sessions_pages_newest_first(session_stub: session_pb2_grpc.SessionServiceStub) -> None:
    md = owner_md()
    made = [new_session(session_stub, md).session_id for _ in range(5)]
    seen, token = [], ""
    while True:
        page = session_stub.ListSessions(session_pb2.ListSessionsRequest(page_size=2, page_token=token),
                                         metadata=md)
        seen += [s.session_id for s in page.sessions]
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(made))


def test_annotate_merges_metadata_without_a_new_version(session_stub: session_pb2_grpc.SessionServiceStub) -> None:
    md = owner_md()
    s = new_session(session_stub, md)
    pushed = session_stub.PushTurn(session_pb2.PushTurnRequest(
        session_id=s.session_id, role=ASSISTANT, content="answer ü", token_count=2,
        metadata={"finish_reason": "FINISH_REASON_STOP"}), metadata=md)
    push(session_stub, md, s.session_id, "next question")
    turn = session_stub.AnnotateTurn(session_pb2.AnnotateTurnRequest(
        session_id=s.session_id, turn_id=pushed.turn.turn_id, metadata={"reward_score": "1.25"}),
        metadata=md).turn
    assert dict(turn.metadata) == {"finish_reason": "FINISH_REASON_STOP", "reward_score": "1.25"}
    assert (turn.content, turn.token_count, turn.position) == ("answer ü", 2, 0)
    listed = session_stub.ListTurns(session_pb2.ListTurnsRequest(session_id=s.session_id), metadata=md)
    assert listed.version == 3  # create, two pushes: the annotation did not count
    assert listed.turns[0] == turn and listed.turns[1].content == "next question"
    # The merged labels stay within the limits; another owner and a missing turn are NOT_FOUND.
    too_big = {f"k{i}": "v" for i in range(64)}
    assert status_of(session_stub.AnnotateTurn, session_pb2.AnnotateTurnRequest(
        session_id=s.session_id, turn_id=turn.turn_id, metadata=too_big), metadata=md) == \
        grpc.StatusCode.INVALID_ARGUMENT
    for req, who in [(session_pb2.AnnotateTurnRequest(session_id=s.session_id, turn_id=turn.turn_id,
                                                       metadata={"a": "b"}), owner_md()),
                     (session_pb2.AnnotateTurnRequest(session_id=s.session_id, turn_id="f" * 16,
                                                       metadata={"a": "b"}), md)]:
        assert status_of(session_stub.AnnotateTurn, req, metadata=who) == grpc.StatusCode.NOT_FOUND
    assert status_of(session_stub.AnnotateTurn, session_pb2.AnnotateTurnRequest(
        session_id=s.session_id, turn_id=turn.turn_id), metadata=md) == grpc.StatusCode.INVALID_ARGUMENT
    again = session_stub.PeekTurns(session_pb2.PeekTurnsRequest(session_id=s.session_id, n=2), metadata=md)
    assert dict(again.turns[1].metadata) == dict(turn.metadata) and again.version == 3


def test_get_turns_reads_a_turn_by_id_and_the_ones_above_it(
        session_stub: session_pb2_grpc.SessionServiceStub) -> None:
    md = owner_md()
    sid = new_session(session_stub, md).session_id
    pushed = [push(session_stub, md, sid, f"t{i}", role=USER if i % 2 == 0 else ASSISTANT) for i in range(6)]
    ids = [p.turn.turn_id for p in pushed]
    got = session_stub.GetTurns(session_pb2.GetTurnsRequest(session_id=sid, turn_id=ids[2], count=3), metadata=md)
    assert [(t.turn_id, t.content, t.position) for t in got.turns] == [(ids[i], f"t{i}", i) for i in (2, 3, 4)]
    assert got.turn_count == 6 and got.version == pushed[-1].version
    top = session_stub.GetTurns(session_pb2.GetTurnsRequest(session_id=sid, turn_id=ids[5], count=16), metadata=md)
    assert [t.turn_id for t in top.turns] == [ids[5]]  # up to the top, no further
    one = session_stub.GetTurns(session_pb2.GetTurnsRequest(session_id=sid, turn_id=ids[0]), metadata=md)
    assert [t.turn_id for t in one.turns] == [ids[0]]  # count 0 = 1
    pending = session_stub.PushTurn(session_pb2.PushTurnRequest(session_id=sid, role=USER, content="p",
                                                                token_count=1, pending_ms=60_000), metadata=md)
    upto = session_stub.GetTurns(session_pb2.GetTurnsRequest(session_id=sid, turn_id=ids[4], count=16), metadata=md)
    assert [t.turn_id for t in upto.turns] == ids[4:] and upto.turn_count == 6  # a pending turn is not visible
    for request, code, words in (
            (session_pb2.GetTurnsRequest(session_id=sid, turn_id=pending.turn.turn_id), grpc.StatusCode.NOT_FOUND, "turn"),
            (session_pb2.GetTurnsRequest(session_id=sid, turn_id="nope"), grpc.StatusCode.NOT_FOUND, "turn"),
            (session_pb2.GetTurnsRequest(session_id=sid, turn_id=ids[0], count=17), grpc.StatusCode.INVALID_ARGUMENT,
             "count"),
            (session_pb2.GetTurnsRequest(session_id=sid, turn_id=""), grpc.StatusCode.INVALID_ARGUMENT, "turn_id")):
        with pytest.raises(grpc.RpcError) as err:
            session_stub.GetTurns(request, metadata=md)
        assert err.value.code() == code and words in err.value.details(), (request, err.value.details())
    assert status_of(session_stub.GetTurns, session_pb2.GetTurnsRequest(session_id=sid, turn_id=ids[0]),
                     metadata=owner_md()) == grpc.StatusCode.NOT_FOUND  # another owner's session


def test_ttl_is_refreshed_on_use(session_stub: session_pb2_grpc.SessionServiceStub,
                                 redis_server: RedisProcess) -> None:
    md = owner_md()
    sid = new_session(session_stub, md, ttl_seconds=100).session_id
    push(session_stub, md, sid, "x")
    client = redis.Redis(port=redis_server.port)
    client.pexpire(f"cs:{{{sid}}}:h", 5_000)
    session_stub.GetContext(session_pb2.GetContextRequest(session_id=sid, token_budget=10), metadata=md)
    assert 95_000 < client.pttl(f"cs:{{{sid}}}:h") <= 100_000
    assert 95_000 < client.pttl(f"cs:{{{sid}}}:turns") <= 100_000


def test_metrics_export_redis_latency_and_counters_promtool_clean(
    session_stub: session_pb2_grpc.SessionServiceStub, session_service: tuple[str, int]
) -> None:
    md = owner_md()
    push(session_stub, md, new_session(session_stub, md).session_id, "m")
    body = urllib.request.urlopen(f"http://127.0.0.1:{session_service[1]}/metrics").read()
    text = body.decode()
    assert 'chatstack_session_redis_duration_seconds_bucket{le="0.001",op="push"}' in text
    assert "chatstack_session_turns_pushed_total" in text
    assert 'chatstack_rpc_duration_seconds_count{method="SessionService/PushTurn",service="session"}' in text
    check = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
    assert (check.returncode, check.stdout, check.stderr) == (0, b"", b"")


# -- durability and outages (own redis + service each) ------------------------------------
def test_acknowledged_turns_survive_kill_9_with_aof(tmp_path: Path, log_dir: Path) -> None:
    server = RedisProcess(free_port(), tmp_path / "redis", appendfsync="always").start()
    proc, address, _ = start_session_service(server.url, log_dir, name="session-durable")
    md = owner_md()
    try:
        with grpc.insecure_channel(address) as channel:
            stub = session_pb2_grpc.SessionServiceStub(channel)
            sid = new_session(stub, md).session_id
            acked = [push(stub, md, sid, f"turn-{i}").turn.turn_id for i in range(200)]
            server.kill()  # SIGKILL right after the last acknowledgement
            server.start()  # same port, same dir: replays the AOF
            turns = stub.ListTurns(session_pb2.ListTurnsRequest(session_id=sid, page_size=1000),
                                   metadata=md, timeout=10).turns
        assert [t.turn_id for t in turns] == acked
    finally:
        proc.stop()
        server.stop()


def test_redis_outage_is_unavailable_within_deadline_and_service_recovers(
    tmp_path: Path, log_dir: Path
) -> None:
    server = RedisProcess(free_port(), tmp_path / "redis").start()
    proc, address, _ = start_session_service(server.url, log_dir, "--redis-timeout-seconds", "1.0",
                                             name="session-outage")
    md = owner_md()
    try:
        with grpc.insecure_channel(address) as channel:
            stub = session_pb2_grpc.SessionServiceStub(channel)
            sid = new_session(stub, md).session_id
            # 1. Redis hangs (SIGSTOP): the RPC answers UNAVAILABLE before its 3 s deadline.
            assert server.proc is not None
            server.proc.signal(signal.SIGSTOP)
            start = time.monotonic()
            code = status_of(stub.GetSession, session_pb2.GetSessionRequest(session_id=sid),
                             metadata=md, timeout=3.0)
            assert code == grpc.StatusCode.UNAVAILABLE and time.monotonic() - start < 3.0
            # A deadline shorter than the Redis timeout is honoured too.
            start = time.monotonic()
            code = status_of(stub.GetSession, session_pb2.GetSessionRequest(session_id=sid),
                             metadata=md, timeout=0.5)
            assert code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            assert time.monotonic() - start < 1.0
            server.proc.signal(signal.SIGCONT)
            # 2. Redis stopped: UNAVAILABLE at once.
            server.kill()
            start = time.monotonic()
            code = status_of(push, stub, md, sid, "lost", timeout=3.0)
            assert code == grpc.StatusCode.UNAVAILABLE and time.monotonic() - start < 3.0
            # 3. Redis back on the same port: the same service process succeeds again.
            server.start()
            assert push(stub, md, sid, "after", timeout=5.0).turn.content == "after"
    finally:
        proc.stop()
        server.stop()
