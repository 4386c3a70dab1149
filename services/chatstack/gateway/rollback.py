"""Undoing a failed call's session writes, so the session is exactly as it was before the call.

A call records what it wrote in an `Undo` as it goes (the session it created, the version right
after its user-turn push, a push still in flight); on failure or cancellation `undo_writes` pops
that push or deletes that session, shielded so a second cancellation cannot cut it short.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from chatstack.gateway.clients import SessionClient
from chatstack.gateway.metrics import GatewayMetrics
from chatstack.v1 import session_pb2

log = logging.getLogger(__name__)


@dataclass
class Undo:
    """The session writes of one call so far, to undo on failure."""

    session_id: str = ""
    created: bool = False
    pushed_version: int | None = None  # version right after our user-turn push
    pending_push: asyncio.Future[session_pb2.PushTurnResponse] | None = None  # push not yet awaited

    def done(self) -> None:
        """The call succeeded: nothing to undo any more."""
        self.created, self.pushed_version, self.pending_push = False, None, None

    def empty(self) -> bool:
        """Nothing was (or may have been) written."""
        return not self.created and self.pushed_version is None and self.pending_push is None


async def undo_writes(sessions: SessionClient, undo: Undo, within: float, metrics: GatewayMetrics) -> None:
    """Undo the writes recorded in `undo` (see module docstring), each call within `within`
    seconds; failures are logged and counted."""
    if undo.empty():
        return

    async def run() -> None:
        if undo.pending_push is not None and undo.pushed_version is None:
            try:  # the push may have landed although this call failed or was cancelled
                undo.pushed_version = (await asyncio.wait_for(undo.pending_push, within)).version
            except (Exception, asyncio.CancelledError):
                pass  # it did not land: nothing to pop
        if undo.created:
            await sessions.delete(undo.session_id, within=within)
        elif undo.pushed_version is not None:
            await sessions.pop(undo.session_id, undo.pushed_version, within=within)

    try:
        await asyncio.shield(run())
        metrics.rollbacks.labels("ok").inc()
    except BaseException as exc:
        metrics.rollbacks.labels("failed").inc()
        log.warning("could not undo the session writes of a failed call on %s: %s", undo.session_id, exc)
