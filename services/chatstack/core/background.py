"""BackgroundTasks: work a call leaves behind after it answered (a deferred reward score, a
preference event), bounded and closed with the service."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import Any

from chatstack.core.request_context import set_deadline


class BackgroundTasks:
    """At most `limit` tasks at once, each run in a copy of the caller's context (its request id,
    for logs) with a deadline of its own (not the finished call's); `close` gives the pending ones
    a grace period, then cancels them."""

    def __init__(self, limit: int, deadline_seconds: float) -> None:
        self.limit = limit
        self.deadline_seconds = deadline_seconds
        self._pending: set[asyncio.Task[None]] = set()

    def start(self, work: Coroutine[Any, Any, None]) -> bool:
        """Run `work` in the background; False (and `work` discarded) if `limit` are pending."""
        if len(self._pending) >= self.limit:
            work.close()
            return False
        context = contextvars.copy_context()
        context.run(set_deadline, self.deadline_seconds)
        task = asyncio.get_running_loop().create_task(work, context=context)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return True

    async def close(self, grace_seconds: float) -> None:
        """Let pending tasks finish within `grace_seconds`, then cancel the rest."""
        if not self._pending:
            return
        _, late = await asyncio.wait(set(self._pending), timeout=grace_seconds)
        for task in late:
            task.cancel()
        if late:
            await asyncio.gather(*late, return_exceptions=True)
