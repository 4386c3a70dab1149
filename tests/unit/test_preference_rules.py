"""The rules that turn preference events into training rows (chatstack.preferences.rules)."""

from __future__ import annotations

import pytest

from chatstack.preferences import rules
from chatstack.preferences.export import since_ms
from chatstack.v1 import common_pb2, preference_pb2

K = preference_pb2
PROMPT = [common_pb2.ChatMessage(role=common_pb2.ROLE_SYSTEM, content="be brief"),
          common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content="hi?")]


def cand(text: str, reward: float | None = None, kept: bool = False, turn_id: str = "") -> K.PreferenceCandidate:
    return K.PreferenceCandidate(text=text, reward=reward, kept=kept, turn_id=turn_id)


def event(kind: int, turn_id: str = "a1", user_turn_id: str = "u1", session_id: str = "s",
          **fields: object) -> K.PreferenceEvent:
    return K.PreferenceEvent(kind=kind, session_id=session_id, turn_id=turn_id,  # type: ignore[arg-type]
                             user_turn_id=user_turn_id, prompt=PROMPT, event_id=f"1-{turn_id}", **fields)


def best_of(*candidates: K.PreferenceCandidate) -> K.PreferenceEvent:
    return event(K.PREFERENCE_KIND_BEST_OF, candidates=list(candidates))


def feedback(turn_id: str, rating: int = 0, text: str = "x", **fields: object) -> K.PreferenceEvent:
    return event(K.PREFERENCE_KIND_FEEDBACK, turn_id=turn_id, rating=rating,
                 candidates=[cand(text, kept=True, turn_id=turn_id)], **fields)


def regenerate(old: str, new: str) -> K.PreferenceEvent:
    return event(K.PREFERENCE_KIND_REGENERATE, turn_id="a2",
                 candidates=[cand(old, turn_id="a1"), cand(new, kept=True, turn_id="a2")])


def summary(rows: list[dict]) -> list[tuple[str, str, str, float | None]]:
    return [(r["chosen"][0]["content"], r["rejected"][0]["content"], r["signal"], r["margin"]) for r in rows]


def test_best_of_pairs_the_kept_candidate_above_each_other_with_its_margin() -> None:
    e = best_of(cand("good", 0.9, kept=True, turn_id="a1"), cand("bad", 0.1), cand("meh", 0.7))
    rows = rules.pairs([e])
    assert summary(rows) == [("good", "bad", "best_of", pytest.approx(0.8)), ("good", "meh", "best_of", pytest.approx(0.2))]
    assert rows[0]["prompt"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi?"}]
    assert rows[0]["chosen"] == [{"role": "assistant", "content": "good"}]
    assert (rows[0]["session_id"], rows[0]["turn_id"], rows[0]["event_id"]) == ("s", "a1", "1-a1")
    assert summary(rules.pairs([e], min_margin=0.5)) == [("good", "bad", "best_of", pytest.approx(0.8))]


def test_a_preferred_candidate_overrides_the_reward_models_choice() -> None:
    e = best_of(cand("good", 0.9, kept=True), cand("bad", 0.1), cand("liked", 0.5))
    rows = rules.pairs([e, feedback("a1", preferred_candidate=2)])
    assert summary(rows) == [("liked", "good", "feedback", None), ("liked", "bad", "feedback", None)]


def test_a_regeneration_beats_what_it_replaced_unless_rated_down() -> None:
    assert summary(rules.pairs([regenerate("old", "new")])) == [("new", "old", "regenerate", None)]
    confirmed = rules.pairs([feedback("a1", K.RATING_DOWN, "old"), regenerate("old", "new")])
    assert summary(confirmed) == [("new", "old", "feedback", None)]
    assert rules.pairs([regenerate("old", "new"), feedback("a2", K.RATING_DOWN, "new")]) == []
    reversed_ = rules.pairs([feedback("a1", K.RATING_UP, "old"), regenerate("old", "new"),
                             feedback("a2", K.RATING_DOWN, "new")])
    assert summary(reversed_) == [("old", "new", "feedback", None)]


def test_ratings_of_answers_to_one_prompt_pair_up_over_down_once() -> None:
    rows = rules.pairs([feedback("a1", K.RATING_DOWN, "old"), regenerate("old", "new"),
                        feedback("a2", K.RATING_UP, "new")])
    assert summary(rows) == [("new", "old", "feedback", None)]  # found twice, written once
    other_prompt = feedback("a9", K.RATING_UP, "elsewhere", user_turn_id="u9")
    assert rules.pairs([feedback("a1", K.RATING_DOWN, "old"), other_prompt]) == []


def test_identical_texts_edits_and_undos_make_no_pairs() -> None:
    assert rules.pairs([best_of(cand("same", 0.9, kept=True), cand("same", 0.1))]) == []
    assert rules.pairs([event(K.PREFERENCE_KIND_EDIT, original_message="a", edited_message="b"),
                        event(K.PREFERENCE_KIND_UNDO, candidates=[cand("gone")])]) == []


def test_ranked_lists_candidates_best_first_and_unpaired_labels_ratings() -> None:
    e = best_of(cand("mid", 0.5), cand("top", 0.9, kept=True), cand("low", 0.1))
    [row] = rules.ranked([e, feedback("a1", preferred_candidate=2)])
    assert [(c["content"], c["kept"], c["preferred"]) for c in row["completions"]] == [
        ("top", True, False), ("mid", False, False), ("low", False, True)]
    rows = rules.unpaired([feedback("a1", K.RATING_UP, "yes"), feedback("a2", K.RATING_DOWN, "no"),
                           feedback("a3", text="unrated", preferred_candidate=0)])
    assert [(r["completion"][0]["content"], r["label"]) for r in rows] == [("yes", True), ("no", False)]
    with pytest.raises(ValueError, match="format"):
        list(rules.rows([], "dpo"))


def test_since_is_an_iso_time_or_a_duration_back() -> None:
    assert since_ms("2026-01-01T00:00:00+00:00") == 1767225600000
    assert since_ms("2h", now=10_000.0) == (10_000 - 7200) * 1000
    assert since_ms("") == 0
    with pytest.raises(ValueError, match="since"):
        since_ms("yesterday")


def test_tool_calls_and_results_are_exported_in_the_chat_format() -> None:
    call = common_pb2.ToolCall(id="c1", name="get_weather", arguments='{"city": "Oslo"}')
    prompt = [*PROMPT, common_pb2.ChatMessage(role=common_pb2.ROLE_ASSISTANT, tool_calls=[call]),
              common_pb2.ChatMessage(role=common_pb2.ROLE_TOOL, content="rain", tool_call_id="c1")]
    called = K.PreferenceCandidate(tool_calls=[call], kept=True, turn_id="a2")
    e = K.PreferenceEvent(kind=K.PREFERENCE_KIND_REGENERATE, session_id="s", turn_id="a2", user_turn_id="u1",
                          prompt=prompt, candidates=[cand("it rains", turn_id="a1"), called])
    (row,) = rules.pairs([e])
    tool_call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
    assert row["prompt"][2:] == [{"role": "assistant", "content": "", "tool_calls": [tool_call]},
                                 {"role": "tool", "content": "rain", "tool_call_id": "c1"}]
    assert row["chosen"] == [{"role": "assistant", "content": "", "tool_calls": [tool_call]}]
    assert row["rejected"] == [{"role": "assistant", "content": "it rains"}]
    same_text = K.PreferenceEvent(kind=K.PREFERENCE_KIND_REGENERATE, session_id="s", turn_id="a3",
                                  candidates=[K.PreferenceCandidate(turn_id="a1"), called])
    assert len(rules.pairs([same_text])) == 1, "an empty text with calls differs from an empty text"
