"""Waiting on a condition with a deadline (never a fixed sleep) for async tests.

Sync tests use `chatstack.core.process.wait_until`, the same loop the fixtures use.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def await_until(predicate: Callable[[], bool | Awaitable[bool]], within: float, what: str,
                      interval: float = 0.02) -> float:
    """Poll `predicate` (sync or async) until true; returns the seconds it took.

    Raises AssertionError naming `what` after `within` seconds.
    """
    start = time.monotonic()
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return time.monotonic() - start
        if time.monotonic() - start > within:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(interval)
