"""Taking back a failed call's session writes, so the session is exactly as it was before the call.

An exchange's new turns (a user's message, or tools' results) are pushed *pending* (see
PushTurnRequest.pending_ms and join_pending_turn_id): invisible to every read and committed only
together with the answer, in one script, or taken back as one. A new conversation's session (or
an edit's fork) is created pending too: unlisted, and gone when its lease ends unless an answer was
committed into it. So a call that fails leaves nothing anybody can see, even when the rollback
below cannot reach the session store either (Redis down): its pending turn is reaped by the
session's next change once the lease (the call's deadline plus the rollback time) is over, and a
pending session expires.

A call records what it wrote in a `Rollback` as it goes; on failure or cancellation
`roll_back` removes the pending turns (each push records the group's top as it lands) or deletes
the session it created, shielded so a second cancellation cannot cut it short.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from chatstack.core.errors import NotFound
from chatstack.core.request_context import remaining_seconds
from chatstack.gateway.clients import SessionClient
from chatstack.gateway.config import GatewayConfig
from chatstack.gateway.metrics import GatewayMetrics
from chatstack.session.model import PushResult

log = logging.getLogger(__name__)


def lease_ms(config: GatewayConfig) -> int:
    """How long a call's pending writes may stay pending: its deadline (or the default one) plus
    the time its rollback may take, at most `max_pending_seconds`."""
    left = remaining_seconds()
    seconds = (config.default_deadline_seconds if left is None else max(0.0, left)) \
        + config.rollback_timeout_seconds
    return max(1, int(min(seconds, config.max_pending_seconds) * 1000))


@dataclass
class Rollback:
    """The session writes of one call so far, to take back on failure."""

    session_id: str = ""
    created: bool = False  # the call created the session (pending until its answer is stored)
    pending_turn_id: str = ""  # the top of the call's pending turns, committed with the answer
    pending_push: asyncio.Future[tuple[str, PushResult]] | None = None  # pushes not yet awaited

    def done(self) -> None:
        """The call succeeded: nothing to take back any more."""
        self.created, self.pending_turn_id, self.pending_push = False, "", None

    def empty(self) -> bool:
        """Nothing was (or may have been) written."""
        return not self.created and not self.pending_turn_id and self.pending_push is None


async def roll_back(sessions: SessionClient, rollback: Rollback, within: float,
                    metrics: GatewayMetrics) -> None:
    """Take back the writes recorded in `rollback` (see module docstring), each call within
    `within` seconds; failures are logged and counted (what stays pending is reaped later)."""
    if rollback.empty():
        return

    async def run() -> None:
        if rollback.pending_push is not None:
            try:  # the pushes may have landed although this call failed or was cancelled
                await asyncio.wait_for(rollback.pending_push, within)
            except (Exception, asyncio.CancelledError):
                pass  # what did not land is never seen; what did is in pending_turn_id
        if rollback.created:
            await sessions.delete(rollback.session_id, within=within)
        elif rollback.pending_turn_id:
            try:
                await sessions.pop(rollback.session_id, None, within=within, pending=rollback.pending_turn_id)
            except NotFound:
                pass  # already gone (reaped)

    try:
        await asyncio.shield(run())
        metrics.rollbacks.labels("ok").inc()
    except BaseException as exc:
        metrics.rollbacks.labels("failed").inc()
        log.warning("could not take back the session writes of a failed call on %s (what is pending is "
                    "reaped when its lease ends): %s", rollback.session_id, exc)
