"""RedisSessionStore's owner index against the real redis-server: newest first, whatever the clock."""

from __future__ import annotations

import uuid

import pytest

from chatstack.core.redis_process import RedisProcess
from chatstack.session import store as store_module
from chatstack.session.config import SessionConfig
from chatstack.session.metrics import SessionMetrics
from chatstack.session.model import NewSession
from chatstack.session.store import RedisSessionStore

pytestmark = pytest.mark.integration


def fresh_store(redis_server: RedisProcess) -> RedisSessionStore:
    """A store with its own key prefix on the shared Redis."""
    return RedisSessionStore(SessionConfig(redis_url=redis_server.url, key_prefix=f"order-{uuid.uuid4().hex[:6]}:"),
                             SessionMetrics())


@pytest.mark.parametrize("clock", [[1000] * 5, [5000, 4000, 4000, 3000, 2000]],
                         ids=["same-millisecond", "clock-going-back"])
async def test_sessions_list_newest_first_when_creation_times_tie_or_go_back(
    redis_server: RedisProcess, monkeypatch: pytest.MonkeyPatch, clock: list[int]
) -> None:
    # The creation time comes from the service's clock: several can fall in one millisecond, and
    # another replica's clock can be behind. The list is still in creation order.
    ticks = iter(clock)
    monkeypatch.setattr(store_module, "_now_ms", lambda: next(ticks))
    store = fresh_store(redis_server)
    try:
        made = [(await store.create("o", NewSession())).session_id for _ in clock]
        listed = [s.session_id for s in (await store.list_sessions("o", 0, 10)).sessions]
        assert listed == list(reversed(made))
    finally:
        await store.close()


async def test_forks_list_newest_first_when_created_in_one_millisecond(
    redis_server: RedisProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "_now_ms", lambda: 1000)
    store = fresh_store(redis_server)
    try:
        source = (await store.create("o", NewSession())).session_id
        forks = [(await store.fork("o", source, keep_turns=0)).session_id for _ in range(5)]
        listed = [s.session_id for s in (await store.list_sessions("o", 0, 10)).sessions]
        assert listed == [*reversed(forks), source]
    finally:
        await store.close()
