"""From preference events to training rows: the rules that turn signals into pairs.

Formats (one JSON object per line, as the training libraries read them):
- `pairs`: TRL's preference format with explicit prompt, conversational: `prompt` (chat
  messages), `chosen` and `rejected` (one assistant message each), for DPO and reward-model
  training; plus `margin` (reward difference, when the reward model chose), `signal`, `event_id`,
  `session_id`, `turn_id`, which the trainers ignore.
- `ranked`: every best-of-n event's candidates best first with their rewards (`completions`),
  `preferred` when a user named one.
- `unpaired`: TRL's unpaired preference format (`prompt`, `completion`, `label`: KTO): every
  rated answer, up = true.

Pair rules (the README states them too):
1. best-of-n: the kept candidate (the reward model's best) beats each other candidate
   (`signal: best_of`, `margin` = reward difference; `min_margin` drops closer pairs); when the
   user named a preferred candidate (feedback), that one beats each other instead
   (`signal: feedback`, no margin: a person chose).
2. regenerate: the new answer, kept, beats the answer it replaced (`signal: regenerate`), or
   `signal: feedback` when the replaced answer was rated down. If the new answer was rated down,
   no pair (and if the replaced one was rated up, it beats the new one).
3. ratings: within one prompt (session and user turn), every answer rated up beats every answer
   rated down (`signal: feedback`).
4. moderated: the refusal the safety stage showed beats the answer it stopped
   (`signal: moderated`): the model learns to refuse what it was stopped for.
5. edits and undos are recorded but make no pairs: an edit changes the question, not the answer,
   and an undo may withdraw the question.
Identical texts never make a pair, and a pair is written once whichever rules find it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from chatstack.core.chat_message import ChatMessage
from chatstack.core.proto_convert import chat_messages_from_proto, tool_calls_from_proto
from chatstack.core.roles import ASSISTANT
from chatstack.v1 import preference_pb2

Row = dict[str, Any]
Message = dict[str, Any]
FORMATS = ("pairs", "ranked", "unpaired")
Event = preference_pb2.PreferenceEvent
Candidate = preference_pb2.PreferenceCandidate


def prompt_of(event: Event) -> list[Message]:
    """The event's prompt as chat messages (HF's shape: tool calls and results included)."""
    return [{**m.as_template(), "role": m.role or "user"} for m in chat_messages_from_proto(event.prompt)]


def _reward(c: Candidate) -> float | None:
    return c.reward if c.HasField("reward") else None


def _assistant(c: Candidate) -> list[Message]:
    """A candidate as the assistant message it was (its tool calls included)."""
    return [ChatMessage(ASSISTANT, c.text, tool_calls_from_proto(c.tool_calls)).as_template()]


def _key(c: Candidate) -> tuple[str, tuple[tuple[str, str], ...]]:
    return c.text, tuple((t.name, t.arguments) for t in c.tool_calls)


class _Pairs:
    """Collects pairs once each (rule 1-3 may find the same one)."""

    def __init__(self, min_margin: float) -> None:
        self.min_margin = min_margin
        self.rows: list[Row] = []
        self._seen: set[tuple[Any, ...]] = set()

    def add(self, event: Event, chosen: Candidate, rejected: Candidate, signal: str,
            margin: float | None = None, turn_id: str = "") -> None:
        if _key(chosen) == _key(rejected) or (margin is not None and margin < self.min_margin):
            return
        key = (f"{event.session_id}/{event.user_turn_id}", _key(chosen), _key(rejected))
        if key in self._seen:
            return
        self._seen.add(key)
        self.rows.append({"prompt": prompt_of(event), "chosen": _assistant(chosen),
                          "rejected": _assistant(rejected), "margin": margin, "signal": signal,
                          "event_id": event.event_id, "session_id": event.session_id,
                          "turn_id": turn_id or event.turn_id})


def _latest_feedback(events: list[Event]) -> dict[tuple[str, str], Event]:
    """Feedback by (session, assistant turn); the store keeps one per turn, the last one wins."""
    return {(e.session_id, e.turn_id): e for e in events if e.kind == preference_pb2.PREFERENCE_KIND_FEEDBACK}


def pairs(events: Iterable[Event], min_margin: float = 0.0) -> list[Row]:
    """Chosen/rejected pairs by the rules in the module docstring, in event order."""
    events = list(events)
    feedback = _latest_feedback(events)
    out = _Pairs(min_margin)
    for e in events:
        if e.kind == preference_pb2.PREFERENCE_KIND_BEST_OF:
            _best_of_pairs(e, feedback.get((e.session_id, e.turn_id)), out)
        elif e.kind == preference_pb2.PREFERENCE_KIND_REGENERATE and len(e.candidates) == 2:
            _regenerate_pair(e, feedback, out)
        elif e.kind == preference_pb2.PREFERENCE_KIND_MODERATED and len(e.candidates) == 2:
            out.add(e, e.candidates[0], e.candidates[1], "moderated", turn_id=e.turn_id)
    _rating_pairs(feedback.values(), out)
    return out.rows


def _best_of_pairs(e: Event, fb: Event | None, out: _Pairs) -> None:
    candidates = list(e.candidates)
    if not candidates:
        return
    if fb is not None and fb.HasField("preferred_candidate") and fb.preferred_candidate < len(candidates):
        chosen = candidates[fb.preferred_candidate]
        for other in candidates:
            if other is not chosen:
                out.add(e, chosen, other, "feedback")
        return
    chosen = next((c for c in candidates if c.kept), max(candidates, key=lambda c: _reward(c) or 0.0))
    for other in candidates:
        if other is chosen:
            continue
        r_chosen, r_other = _reward(chosen), _reward(other)
        margin = r_chosen - r_other if r_chosen is not None and r_other is not None else None
        out.add(e, chosen, other, "best_of", margin)


def _regenerate_pair(e: Event, feedback: dict[tuple[str, str], Event], out: _Pairs) -> None:
    replaced, new = e.candidates[0], e.candidates[1]
    old_fb = feedback.get((e.session_id, replaced.turn_id))
    new_fb = feedback.get((e.session_id, new.turn_id))
    if new_fb is not None and new_fb.rating == preference_pb2.RATING_DOWN:
        if old_fb is not None and old_fb.rating == preference_pb2.RATING_UP:
            out.add(e, replaced, new, "feedback", turn_id=replaced.turn_id)
        return
    confirmed = old_fb is not None and old_fb.rating == preference_pb2.RATING_DOWN
    out.add(e, new, replaced, "feedback" if confirmed else "regenerate", turn_id=new.turn_id)


def _rating_pairs(feedback: Iterable[Event], out: _Pairs) -> None:
    by_prompt: dict[tuple[str, str], list[Event]] = {}
    for fb in feedback:
        if fb.rating != preference_pb2.RATING_UNSPECIFIED and fb.candidates and fb.user_turn_id:
            by_prompt.setdefault((fb.session_id, fb.user_turn_id), []).append(fb)
    for rated in by_prompt.values():
        ups = [f for f in rated if f.rating == preference_pb2.RATING_UP]
        downs = [f for f in rated if f.rating == preference_pb2.RATING_DOWN]
        for up in ups:
            for down in downs:
                out.add(up, up.candidates[0], down.candidates[0], "feedback")


def ranked(events: Iterable[Event]) -> list[Row]:
    """Each best-of-n event's candidates, best first (see module docstring)."""
    events = list(events)
    feedback = _latest_feedback(events)
    rows = []
    for e in events:
        if e.kind != preference_pb2.PREFERENCE_KIND_BEST_OF or not e.candidates:
            continue
        order = sorted(range(len(e.candidates)), key=lambda i: -(_reward(e.candidates[i]) or 0.0))
        fb = feedback.get((e.session_id, e.turn_id))
        preferred = fb.preferred_candidate if fb is not None and fb.HasField("preferred_candidate") else None
        completions = [{"content": e.candidates[i].text, "reward": _reward(e.candidates[i]),
                        "kept": e.candidates[i].kept, "preferred": i == preferred} for i in order]
        rows.append({"prompt": prompt_of(e), "completions": completions, "signal": "best_of",
                     "event_id": e.event_id, "session_id": e.session_id, "turn_id": e.turn_id,
                     "sampling": dict(e.sampling), "generator_model": e.generator_model,
                     "reward_model": e.reward_model})
    return rows


def unpaired(events: Iterable[Event]) -> list[Row]:
    """Every rated answer with its label (TRL's unpaired preference format)."""
    return [{"prompt": prompt_of(e), "completion": _assistant(e.candidates[0]),
             "label": e.rating == preference_pb2.RATING_UP, "signal": "feedback", "event_id": e.event_id,
             "session_id": e.session_id, "turn_id": e.turn_id}
            for e in _latest_feedback(list(events)).values()
            if e.rating != preference_pb2.RATING_UNSPECIFIED and e.candidates]


def rows(events: Iterable[Event], fmt: str, min_margin: float = 0.0) -> Iterator[Row]:
    """The rows of format `fmt` (one of FORMATS)."""
    if fmt == "pairs":
        yield from pairs(events, min_margin)
    elif fmt == "ranked":
        yield from ranked(events)
    elif fmt == "unpaired":
        yield from unpaired(events)
    else:
        raise ValueError(f"format: {fmt!r} is not one of {', '.join(FORMATS)}")
