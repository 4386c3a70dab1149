"""Choosing the turns the model sees: pure functions over token counts, no I/O.

The session service answers GetContext with the newest whole turns that fit a budget. The
gateway reads that window *before* it pushes the user's new message (the push then runs beside
generation) and cuts it locally: the newest turns that fit together with the new message.
Because the service already returned the newest turns that fit the larger budget, the turns that
fit the smaller one are a suffix of them, so no second read is needed.
"""

from __future__ import annotations

from collections.abc import Sequence


def newest_that_fit(turn_tokens: Sequence[int], budget: int) -> int:
    """How many of the newest turns (counts oldest first) fit `budget` together; never splits a turn."""
    kept, used = 0, 0
    for tokens in reversed(turn_tokens):
        if used + tokens > budget:
            break
        used += tokens
        kept += 1
    return kept


def turns_to_drop(older_turn_tokens: Sequence[int], excess: int, per_message: int) -> int | None:
    """How many of the oldest turns to drop so the rendered prompt shrinks by at least `excess`
    tokens (each dropped turn frees its tokens plus the template's per-message overhead), or
    None if dropping all of them is not enough."""
    if excess <= 0:
        return 0
    freed = 0
    for dropped, tokens in enumerate(older_turn_tokens, start=1):
        freed += tokens + per_message
        if freed >= excess:
            return dropped
    return None
