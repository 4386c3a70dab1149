"""The role vocabulary, once: who says a message of a chat, and which roles a stored turn can have."""

from __future__ import annotations

SYSTEM, USER, ASSISTANT, TOOL = "system", "user", "assistant", "tool"
#: A chat message's roles (what a chat template renders, what the reward model scores).
CHAT_ROLES = frozenset({SYSTEM, USER, ASSISTANT, TOOL})
#: A stored turn's roles: a session keeps its system prompt in its header, not on the stack.
TURN_ROLES = frozenset({USER, ASSISTANT, TOOL})
