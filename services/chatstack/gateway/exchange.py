"""Exchange: one answer being made in a session, from its prompt to its stored turn."""

from __future__ import annotations

from dataclasses import dataclass

from chatstack.gateway.answering import InputVerdict
from chatstack.gateway.clients import SessionClient
from chatstack.gateway.plan import Plan
from chatstack.gateway.prompting import Prompt
from chatstack.gateway.rollback import Rollback
from chatstack.gateway.stage_clock import StageClock
from chatstack.session.model import Turn


@dataclass
class Exchange:
    """One answer being made: where it goes and what it answers. The user turn it answers is
    either stored already (`user_turn_id`, `version`) or being pushed pending
    (`rollback.pending_push`), then committed with the answer."""

    sessions: SessionClient
    rollback: Rollback
    prompt: Prompt
    plan: Plan
    clock: StageClock
    user_turn_id: str = ""
    version: int = 0  # the session's version the answer is stored at
    replaced: Turn | None = None  # the assistant turn a regenerate replaces
    input_check: InputVerdict = None  # the safety stage's input check, started before rendering

    @property
    def session_id(self) -> str:
        """The session the answer goes to."""
        return self.rollback.session_id
