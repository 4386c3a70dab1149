"""`POST /v1/moderations`: OpenAI's moderation endpoint, backed by the safety stage's guard
model and rules (the same verdicts the chat flows act on)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request

from chatstack.gateway.openai_api.door import HttpDoor
from chatstack.gateway.openai_api.schemas import ModerationRequest, check_supported
from chatstack.safety.model import Judgement

#: chatstack's categories by OpenAI's names (jailbreak has no OpenAI name: it keeps its own).
OPENAI_NAMES = {"violence": "violence", "self_harm": "self-harm", "sexual_minors": "sexual/minors",
                "hate": "hate", "illicit": "illicit", "jailbreak": "jailbreak"}
GUARD_NAME = "chatstack-guard"


def result_json(verdict: Judgement) -> dict[str, Any]:
    """One input's result: flagged, each category's flag and score (OpenAI's names), and which
    categories the rules matched (a chatstack extension)."""
    matched = {h.category for h in verdict.rules}
    return {
        "flagged": verdict.flagged,
        "categories": {OPENAI_NAMES[c]: c == verdict.category or c in matched for c in OPENAI_NAMES},
        "category_scores": {OPENAI_NAMES[c]: verdict.scores.get(c, 0.0) for c in OPENAI_NAMES},
        "category_applied_input_types": {OPENAI_NAMES[c]: ["text"] for c in OPENAI_NAMES},
        "flagged_by": verdict.flagged_by or None,
    }


def router(door: HttpDoor) -> APIRouter:
    """The moderations route."""
    routes = APIRouter()

    @routes.post("/v1/moderations")
    async def moderations(body: ModerationRequest, request: Request) -> dict[str, Any]:
        door.owner(request)
        check_supported(body)
        verdicts = await door.flows.safety.moderate(body.texts())
        return {"id": f"modr-{uuid.uuid4().hex}", "model": body.model or GUARD_NAME,
                "results": [result_json(v) for v in verdicts]}

    return routes
