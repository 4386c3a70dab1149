"""RedisSessionStore limits against the real redis-server (in-process store, no gRPC)."""

from __future__ import annotations

import uuid

import pytest

from chatstack.core.errors import LimitExceeded
from chatstack.core.redis_process import RedisProcess
from chatstack.session.config import SessionConfig
from chatstack.session.metrics import SessionMetrics
from chatstack.session.model import NewSession, NewTurn
from chatstack.session.store import RedisSessionStore

pytestmark = pytest.mark.integration


def make_store(redis_server: RedisProcess, policy: str) -> RedisSessionStore:
    config = SessionConfig(redis_url=redis_server.url, max_turns=3, max_turns_policy=policy,  # type: ignore[arg-type]
                           key_prefix=f"limits-{uuid.uuid4().hex[:6]}:")
    return RedisSessionStore(config, SessionMetrics())


async def test_reject_policy_refuses_the_push_past_max_turns(redis_server: RedisProcess) -> None:
    store = make_store(redis_server, "reject")
    sid = (await store.create("o", NewSession())).session_id
    for i in range(3):
        await store.push("o", sid, NewTurn("user", f"m{i}", 1))
    with pytest.raises(LimitExceeded, match="3 turns"):
        await store.push("o", sid, NewTurn("user", "m3", 1))
    header = await store.get("o", sid)
    assert (header.turn_count, header.version) == (3, 4)
    await store.close()


async def test_evict_policy_drops_the_oldest_turn_and_keeps_the_system_prompt(
    redis_server: RedisProcess,
) -> None:
    store = make_store(redis_server, "evict_oldest")
    sid = (await store.create("o", NewSession(system_prompt="sys", system_prompt_tokens=2))).session_id
    for i in range(5):
        result = await store.push("o", sid, NewTurn("user", f"m{i}", 10 + i))
    assert result.evicted_turns == 1 and result.turn.position == 2
    window = await store.context("o", sid, 1000)
    assert [t.content for t in window.turns] == ["m2", "m3", "m4"]
    assert [t.position for t in window.turns] == [0, 1, 2]
    assert (window.system_prompt, window.total_tokens, window.truncated) == ("sys", 2 + 12 + 13 + 14, False)
    header = await store.get("o", sid)
    assert (header.turn_count, header.total_tokens) == (3, 39)
    popped = await store.pop("o", sid)
    assert popped.turn.content == "m4"
    await store.close()


async def test_a_retried_push_is_stored_once(redis_server: RedisProcess) -> None:
    """The Lua push is idempotent by turn id, so a client-library retry cannot duplicate."""
    store = make_store(redis_server, "reject")
    sid = (await store.create("o", NewSession())).session_id
    keys = store._keys(sid)
    args = ["o", "", 1, '"id":"fixed","r":"user","c":"x","t":1,"ts":1,"m":{}}', 1, "fixed", 0, "reject"]
    first = await store.scripts["push"](keys=keys, args=args)
    again = await store.scripts["push"](keys=keys, args=args)
    assert first == again and (await store.get("o", sid)).turn_count == 1
    await store.close()
