"""The safety service's records <-> its protobuf messages, both ways: the servicer and the
gateway's client share them, so the two ends cannot drift."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from chatstack.core.proto_convert import chat_messages_from_proto, chat_messages_to_proto
from chatstack.safety.model import CheckItem, FlaggedBy, Judgement, Policy
from chatstack.safety.rules import RuleHit
from chatstack.v1 import safety_pb2

_FLAGGED_BY: dict[FlaggedBy, int] = {
    "": safety_pb2.FLAGGED_BY_UNSPECIFIED, "rules": safety_pb2.FLAGGED_BY_RULES,
    "model": safety_pb2.FLAGGED_BY_MODEL}
_FLAGGED_BY_NAME = {v: k for k, v in _FLAGGED_BY.items()}


def item_from_proto(item: safety_pb2.CheckItem) -> CheckItem:
    """CheckItem message -> CheckItem (neither subject set: both None)."""
    subject = item.WhichOneof("subject")
    if subject == "conversation":
        return CheckItem(conversation=tuple(chat_messages_from_proto(item.conversation.messages)))
    return CheckItem(text=item.text) if subject == "text" else CheckItem()


def item_to_proto(item: CheckItem) -> safety_pb2.CheckItem:
    """CheckItem -> CheckItem message."""
    if item.conversation is not None:
        return safety_pb2.CheckItem(conversation=safety_pb2.CheckConversation(
            messages=chat_messages_to_proto(item.conversation)))
    return safety_pb2.CheckItem(text=item.text or "")


def policy_from_proto(policy: safety_pb2.CheckPolicy) -> Policy:
    """CheckPolicy message -> Policy."""
    return Policy(frozenset(policy.categories), dict(policy.thresholds))


def policy_to_proto(policy: Policy) -> safety_pb2.CheckPolicy:
    """Policy -> CheckPolicy message."""
    return safety_pb2.CheckPolicy(categories=sorted(policy.categories), thresholds=policy.thresholds)


def judgement_to_proto(j: Judgement) -> safety_pb2.Verdict:
    """Judgement -> Verdict message."""
    return safety_pb2.Verdict(
        flagged=j.flagged, category=j.category, flagged_by=_FLAGGED_BY[j.flagged_by],  # type: ignore[arg-type]
        scores=[safety_pb2.CategoryScore(category=c, score=s) for c, s in j.scores.items()],
        rules=[safety_pb2.RuleMatch(category=h.category, rule=h.rule, start=h.start, end=h.end)
               for h in j.rules],
        input_tokens=j.input_tokens)


def judgement_from_proto(v: safety_pb2.Verdict) -> Judgement:
    """Verdict message -> Judgement."""
    return Judgement(v.flagged, v.category, _FLAGGED_BY_NAME.get(v.flagged_by, ""),
                     {s.category: s.score for s in v.scores},
                     [RuleHit(r.category, r.rule, r.start, r.end) for r in v.rules], v.input_tokens)


def check_request(items: Sequence[CheckItem], policy: Policy) -> safety_pb2.CheckRequest:
    """The Check request of `items` under `policy`."""
    return safety_pb2.CheckRequest(items=[item_to_proto(i) for i in items], policy=policy_to_proto(policy))


def judgements(response: safety_pb2.CheckResponse) -> list[Judgement]:
    """A Check response's judgements, in item order."""
    return [judgement_from_proto(v) for v in response.verdicts]


def verdicts(items: Iterable[Judgement]) -> safety_pb2.CheckResponse:
    """The Check response of judgements."""
    return safety_pb2.CheckResponse(verdicts=[judgement_to_proto(j) for j in items])
