"""Scoring single answers after they are stored (`single_answer_scoring = "async"`).

With one answer the reward does not choose anything, so the client need not wait for it: the
answer is stored and the final message sent at once, and the score is computed in the background
and merged into the stored turn's metadata (`reward_score`) by the session service's
AnnotateTurn, which does not change the session's version (the user's next message never
conflicts with it). A turn that is gone by then (undone, regenerated, its session deleted) is
simply not annotated. At most `max_pending_scores` scorings run at once: beyond that an answer
stays unscored and is counted, so a slow reward model cannot grow the gateway's memory. On
shutdown the pending scorings get a grace period, then are cancelled.
"""

from __future__ import annotations

import asyncio
import logging

from chatstack.core.background import BackgroundTasks
from chatstack.core.errors import NotFound
from chatstack.gateway.clients import Messages, RewardClient, SessionClient
from chatstack.gateway.metrics import GatewayMetrics
from chatstack.gateway.session_records import AnswerMeta

log = logging.getLogger(__name__)


class DeferredScorer:
    """Background reward scoring of stored answers (see module docstring)."""

    def __init__(self, reward: RewardClient, metrics: GatewayMetrics, limit: int,
                 timeout_seconds: float) -> None:
        self.reward = reward
        self.metrics = metrics
        self.tasks = BackgroundTasks(limit, timeout_seconds)

    def submit(self, sessions: SessionClient, session_id: str, turn_id: str,
               conversation: Messages, response: str) -> bool:
        """Score `response` and annotate its turn later; False if too many are pending."""
        if not self.tasks.start(self._score(sessions, session_id, turn_id, list(conversation), response)):
            self.metrics.deferred_scores.labels("dropped").inc()
            return False
        return True

    async def _score(self, sessions: SessionClient, session_id: str, turn_id: str,
                     conversation: Messages, response: str) -> None:
        try:
            score = await self.reward.score(conversation, response)
            await sessions.annotate(session_id, turn_id, AnswerMeta.reward(score))
            outcome = "scored"
        except NotFound:
            outcome = "gone"  # undone, regenerated or deleted before the score was ready
        except asyncio.CancelledError:
            self.metrics.deferred_scores.labels("cancelled").inc()
            raise
        except Exception as exc:
            log.warning("deferred scoring of turn %s failed: %s", turn_id, exc)
            outcome = "failed"
        self.metrics.deferred_scores.labels(outcome).inc()

    async def close(self, grace_seconds: float) -> None:
        """Let pending scorings finish within `grace_seconds`, then cancel the rest."""
        await self.tasks.close(grace_seconds)
