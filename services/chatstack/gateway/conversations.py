"""The gateway's session operations that are not chat flows: create (counting the system
prompt), read, list, delete, history, and undo of the last exchange; transport-free like the
chat dataplane that holds them."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from chatstack.core.errors import FailedPrecondition
from chatstack.core.roles import ASSISTANT, TOOL, USER
from chatstack.gateway.clients import Backends
from chatstack.gateway.config import GatewayConfig
from chatstack.gateway.rollback import lease_ms
from chatstack.gateway.session_records import SessionsPage, TurnPush, TurnsPage
from chatstack.session.model import NewSession, SessionHeader, Turn


class Conversations:
    """Session operations as an owner, over the typed backend clients."""

    def __init__(self, backends: Backends, config: GatewayConfig) -> None:
        self.backends = backends
        self.config = config

    async def create_session(self, owner: str, system_prompt: str,
                             metadata: dict[str, str] | None = None) -> SessionHeader:
        """A new session, its system prompt counted."""
        counts = await self.backends.tokenizer.count([system_prompt]) if system_prompt else [0]
        new = NewSession("", system_prompt, counts[0], metadata or {})
        return await self.backends.sessions(owner).create(new)

    async def create_with_turns(self, owner: str, system_prompt: str, turns: Sequence[tuple[str, str]],
                                metadata: dict[str, str] | None = None) -> SessionHeader:
        """A new session holding `turns` (role, text) already, each counted, created whole or not
        at all: pending (unlisted, expiring with the call's deadline) until its last turn's push
        makes it a session like any other; deleted again if storing one fails (and if even that
        fails, it expires unseen)."""
        if not turns:
            return await self.create_session(owner, system_prompt, metadata)
        counts = await self.backends.tokenizer.count([system_prompt, *(text for _, text in turns)])
        sessions = self.backends.sessions(owner)
        session = await sessions.create(NewSession("", system_prompt, counts[0] if system_prompt else 0,
                                                   metadata or {}, pending_ms=lease_ms(self.config)))
        try:
            version = session.version
            for i, ((role, text), tokens) in enumerate(zip(turns, counts[1:], strict=True)):
                version = (await sessions.push(TurnPush(session.session_id, role, text, tokens, version,
                                                        commit_session=i == len(turns) - 1))).version
        except BaseException:
            await sessions.delete(session.session_id)
            raise
        return await sessions.get(session.session_id)

    async def turns_from(self, owner: str, session_id: str, turn_id: str,
                         count: int) -> list[Turn]:
        """The turn `turn_id` of the owner's session and up to `count` - 1 turns above it."""
        return await self.backends.sessions(owner).turns_from(session_id, turn_id, count)

    async def all_turns(self, owner: str, session_id: str) -> list[Turn]:
        """Every turn of a session, oldest first."""
        return await self.backends.sessions(owner).all_turns(session_id)

    async def get_session(self, owner: str, session_id: str) -> SessionHeader:
        """A session's header."""
        return await self.backends.sessions(owner).get(session_id)

    async def list_sessions(self, owner: str, page_size: int,
                            page_token: str) -> SessionsPage:
        """A page of the owner's sessions."""
        return await self.backends.sessions(owner).list(page_size, page_token)

    async def delete_session(self, owner: str, session_id: str) -> None:
        """Delete a session."""
        await self.backends.sessions(owner).delete(session_id)

    async def history(self, owner: str, session_id: str, page_size: int,
                      page_token: str) -> tuple[str, TurnsPage]:
        """The system prompt and a page of turns, oldest first."""
        sessions = self.backends.sessions(owner)
        session = await sessions.get(session_id)
        return session.system_prompt, await sessions.turns(session_id, page_size, page_token)

    async def undo_last(self, owner: str, session_id: str,
                        top_turn_id: str = "") -> tuple[list[Turn], int]:
        """Pop the last exchange (an answer and the user turn, or the tools' results, it answered;
        or a lone top turn) in one step, at the version read (a change in between is ABORTED,
        never a newer exchange removed); if `top_turn_id` is given, only while that turn is still
        the top (FAILED_PRECONDITION otherwise)."""
        sessions = self.backends.sessions(owner)
        top = await sessions.peek(session_id, self.config.max_tool_results + 1)
        turns = list(top.turns)
        if not turns:
            raise FailedPrecondition("nothing to undo: the session is empty")
        if top_turn_id and turns[0].turn_id != top_turn_id:
            raise FailedPrecondition("the exchange is no longer its conversation's latest; "
                                     "a conversation is a stack: delete from the top")
        count = 1
        if turns[0].role == ASSISTANT:
            results = list(itertools.takewhile(lambda t: t.role == TOOL, turns[1:]))
            count += len(results) or int(len(turns) > 1 and turns[1].role == USER)
        popped = await sessions.pop(session_id, top.version, count=count)
        return list(popped.turns), popped.version
