"""Pending turns and sessions, replace-on-push and multi-turn pops (push.lua, pop.lua) against the
real redis-server: how an exchange is written whole or not at all (issue 23)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest

from chatstack.core.chat_message import ToolCall
from chatstack.core.errors import FailedPrecondition, InvalidRequest, NotFound, VersionConflict
from chatstack.core.redis_process import RedisProcess
from chatstack.session.config import SessionConfig
from chatstack.session.metrics import SessionMetrics
from chatstack.session.model import NewSession, NewTurn
from chatstack.session.store import RedisSessionStore

pytestmark = pytest.mark.integration
LEASE_MS = 60_000


@pytest.fixture
async def store(redis_server: RedisProcess) -> AsyncIterator[RedisSessionStore]:
    s = RedisSessionStore(SessionConfig(redis_url=redis_server.url, max_turns=0,
                                        key_prefix=f"pending-{uuid.uuid4().hex[:6]}:"), SessionMetrics())
    yield s
    await s.close()


async def exchange(store: RedisSessionStore, sid: str, n: int) -> None:
    for i in range(n):
        await store.push("o", sid, NewTurn("user", f"q{i}", 2))
        await store.push("o", sid, NewTurn("assistant", f"a{i}", 3))


async def visible(store: RedisSessionStore, sid: str) -> list[str]:
    return [t.content for t in (await store.list_turns("o", sid, 0, 100)).turns]


async def test_a_pending_turn_is_invisible_to_every_read_and_holds_other_changes_off(
        store: RedisSessionStore) -> None:
    sid = (await store.create("o", NewSession())).session_id
    await exchange(store, sid, 1)
    pending = await store.push("o", sid, NewTurn("user", "q1", 5), expected_version=3, pending_ms=LEASE_MS)
    assert pending.version == 4
    assert await visible(store, sid) == ["q0", "a0"]
    window = await store.context("o", sid, 1000)
    assert [t.content for t in window.turns] == ["q0", "a0"] and window.total_tokens == 5
    assert [t.content for t in (await store.peek("o", sid, 5)).turns] == ["a0", "q0"]
    header = await store.get("o", sid)
    assert (header.turn_count, header.total_tokens, header.version) == (2, 5, 4)
    assert (await store.list_turns("o", sid, 2, 10)).turns == []
    with pytest.raises(VersionConflict, match="being answered"):
        await store.push("o", sid, NewTurn("user", "other", 1), expected_version=4)
    with pytest.raises(VersionConflict, match="being answered"):
        await store.pop("o", sid, 4)
    with pytest.raises(NotFound):
        await store.annotate("o", sid, pending.turn.turn_id, {"k": "v"})


async def test_a_commit_stores_the_pending_turn_and_the_answer_together(store: RedisSessionStore) -> None:
    sid = (await store.create("o", NewSession())).session_id
    pending = await store.push("o", sid, NewTurn("user", "q", 2), expected_version=1, pending_ms=LEASE_MS)
    assert await visible(store, sid) == [] and (await store.peek("o", sid, 3)).turns == []
    assert (await store.context("o", sid, 100)).turns == []
    answer = await store.push("o", sid, NewTurn("assistant", "a", 3), expected_version=pending.version,
                              commit=pending.turn.turn_id)
    assert answer.turn.position == 1 and await visible(store, sid) == ["q", "a"]
    assert (await store.get("o", sid)).total_tokens == 5
    with pytest.raises(VersionConflict, match="lease ran out"):  # committed once only
        await store.push("o", sid, NewTurn("assistant", "again", 1), commit=pending.turn.turn_id)


async def test_a_failed_exchange_takes_its_pending_turn_back_and_a_second_try_finds_it_gone(
        store: RedisSessionStore) -> None:
    sid = (await store.create("o", NewSession())).session_id
    await exchange(store, sid, 1)
    pending = await store.push("o", sid, NewTurn("user", "q1", 2), expected_version=3, pending_ms=LEASE_MS)
    popped = await store.pop("o", sid, pending=pending.turn.turn_id)
    assert popped.turn.content == "q1" and await visible(store, sid) == ["q0", "a0"]
    with pytest.raises(NotFound, match="pending turn"):
        await store.pop("o", sid, pending=pending.turn.turn_id)
    await store.push("o", sid, NewTurn("user", "next", 1), expected_version=popped.version)


async def test_pending_turns_that_join_a_group_become_visible_or_go_together(store: RedisSessionStore) -> None:
    sid = (await store.create("o", NewSession())).session_id
    await store.push("o", sid, NewTurn("user", "q", 2))
    call = ToolCall("c1", "f", "{}"), ToolCall("c2", "g", "{}")
    asked = await store.push("o", sid, NewTurn("assistant", "", 4, tool_calls=call))

    async def results(version: int) -> list[str]:
        first = await store.push("o", sid, NewTurn("tool", "r1", 3, tool_call_id="c1"), expected_version=version,
                                 pending_ms=LEASE_MS)
        second = await store.push("o", sid, NewTurn("tool", "r2", 5, tool_call_id="c2"),
                                  expected_version=first.version, pending_ms=LEASE_MS, join=first.turn.turn_id)
        assert second.turn.position == 3
        with pytest.raises(VersionConflict, match="lease ran out"):  # joins only the group's top
            await store.push("o", sid, NewTurn("tool", "r3", 1, tool_call_id="c3"), pending_ms=LEASE_MS,
                             join=first.turn.turn_id)
        return [first.turn.turn_id, second.turn.turn_id, str(second.version)]

    first, second, version = await results(asked.version)
    assert await visible(store, sid) == ["q", ""] and (await store.get("o", sid)).total_tokens == 6
    assert [t.content for t in (await store.context("o", sid, 100)).turns] == ["q", ""]
    for hidden in (first, second):
        with pytest.raises(NotFound):
            await store.get_turns("o", sid, hidden)
    popped = await store.pop("o", sid, pending=second)  # a failed exchange takes the group back
    assert [t.content for t in popped.turns] == ["r2", "r1"] and [t.position for t in popped.turns] == [3, 2]
    assert await visible(store, sid) == ["q", ""] and (await store.get("o", sid)).turn_count == 2
    first, second, version = await results(popped.version)
    answer = await store.push("o", sid, NewTurn("assistant", "done", 1), expected_version=int(version),
                              commit=second)
    assert answer.turn.position == 4 and await visible(store, sid) == ["q", "", "r1", "r2", "done"]
    turns = (await store.list_turns("o", sid, 0, 10)).turns
    assert [t.tool_call_id for t in turns] == ["", "", "c1", "c2", ""] and turns[1].tool_calls == call
    header = await store.get("o", sid)
    assert (header.turn_count, header.total_tokens) == (5, 15)
    with pytest.raises(InvalidRequest, match="join_pending_turn_id"):
        await store.push("o", sid, NewTurn("user", "x", 1), join=second)


async def test_a_lapsed_pending_turn_is_reaped_by_the_next_change_and_cannot_be_committed(
        store: RedisSessionStore) -> None:
    sid = (await store.create("o", NewSession())).session_id
    pending = await store.push("o", sid, NewTurn("user", "q", 2), expected_version=1, pending_ms=1)
    deadline = time.monotonic() + 5
    while True:  # the lease is 1 ms: the next millisecond it is over
        try:
            pushed = await store.push("o", sid, NewTurn("user", "fresh", 1), expected_version=pending.version)
            break
        except VersionConflict:
            assert time.monotonic() < deadline
    assert await visible(store, sid) == ["fresh"] and pushed.turn.position == 0
    with pytest.raises(VersionConflict, match="lease ran out"):
        await store.push("o", sid, NewTurn("assistant", "a", 1), commit=pending.turn.turn_id)


async def test_replace_swaps_the_top_turn_in_one_step(store: RedisSessionStore) -> None:
    sid = (await store.create("o", NewSession())).session_id
    await exchange(store, sid, 2)
    top = (await store.peek("o", sid, 1)).turns[0]
    result = await store.push("o", sid, NewTurn("assistant", "better", 7), expected_version=5, replace=top.turn_id)
    assert result.version == 6 and result.turn.position == 3
    assert await visible(store, sid) == ["q0", "a0", "q1", "better"]
    assert (await store.get("o", sid)).total_tokens == 2 + 3 + 2 + 7
    with pytest.raises(NotFound):
        await store.push("o", sid, NewTurn("assistant", "x", 1), replace=top.turn_id)


async def test_a_two_turn_pop_is_all_or_nothing(store: RedisSessionStore) -> None:
    sid = (await store.create("o", NewSession())).session_id
    await exchange(store, sid, 2)
    popped = await store.pop("o", sid, 5, count=2)
    assert [t.content for t in popped.turns] == ["a1", "q1"] and [t.position for t in popped.turns] == [3, 2]
    assert await visible(store, sid) == ["q0", "a0"]
    await store.pop("o", sid, popped.version)
    with pytest.raises(FailedPrecondition, match="only 1 turns"):
        await store.pop("o", sid, count=2)
    assert await visible(store, sid) == ["q0"]


async def test_a_pending_session_is_unlisted_until_its_first_commit_and_expires_without_one(
        store: RedisSessionStore) -> None:
    listed = await store.create("o", NewSession())
    kept = await store.create("o", NewSession(pending_ms=LEASE_MS))
    lost = await store.create("o", NewSession(pending_ms=LEASE_MS))
    assert [s.session_id for s in (await store.list_sessions("o", 0, 10)).sessions] == [listed.session_id]
    page = await store.list_sessions("o", 0, 1)
    assert [s.session_id for s in page.sessions] == [listed.session_id] and page.next_offset is None
    user = await store.push("o", kept.session_id, NewTurn("user", "q", 1), expected_version=1, pending_ms=LEASE_MS)
    await store.push("o", kept.session_id, NewTurn("assistant", "a", 1), expected_version=user.version,
                     commit=user.turn.turn_id)
    ids = [s.session_id for s in (await store.list_sessions("o", 0, 10)).sessions]
    assert ids == [kept.session_id, listed.session_id]
    assert 0 < await store.redis.pttl(store.header_key(lost.session_id)) <= LEASE_MS
    assert await store.redis.ttl(store.header_key(kept.session_id)) > LEASE_MS // 1000


async def test_a_session_filled_pending_is_listed_once_its_last_push_commits_it(store: RedisSessionStore) -> None:
    session = await store.create("o", NewSession(pending_ms=LEASE_MS))
    first = await store.push("o", session.session_id, NewTurn("user", "q", 1), expected_version=1)
    assert (await store.list_sessions("o", 0, 10)).sessions == []  # still pending: a half-made conversation
    await store.push("o", session.session_id, NewTurn("assistant", "a", 1), expected_version=first.version,
                     commit_session=True)
    assert [s.session_id for s in (await store.list_sessions("o", 0, 10)).sessions] == [session.session_id]
    assert await store.redis.ttl(store.header_key(session.session_id)) > LEASE_MS // 1000
