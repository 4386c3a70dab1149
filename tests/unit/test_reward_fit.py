"""The reward engine fitting a conversation to its window on the exact rendered length, with a
fake chat template (one token per word, plus one per message); no vLLM."""

from __future__ import annotations

from typing import Any

import pytest

from chatstack.core.errors import InvalidRequest
from chatstack.reward.config import RewardConfig
from chatstack.reward.engine import VllmRewardEngine
from chatstack.reward.metrics import RewardMetrics
from chatstack.reward.model import ScoreItem


class WordTemplate:
    """Renders each message as its words plus one marker token; counts its renderings."""

    def __init__(self) -> None:
        self.renders = 0

    def apply_chat_template(self, messages: list[dict[str, str]], **_: Any) -> list[int]:
        self.renders += 1
        return [7 for m in messages for _ in [*m["content"].split(), "<m>"]]


def engine(max_model_len: int) -> tuple[VllmRewardEngine, WordTemplate]:
    eng = VllmRewardEngine(RewardConfig(), RewardMetrics())
    template = WordTemplate()
    eng.tokenizer, eng.max_model_len, eng.chars_per_token = template, max_model_len, 8
    return eng, template


def conversation(*sizes: int, system: int = 0) -> tuple[tuple[str, str], ...]:
    head = (("system", " ".join(["s"] * system)),) if system else ()
    return head + tuple(("user" if i % 2 == 0 else "assistant", " ".join(["w"] * n)) for i, n in enumerate(sizes))


def test_a_conversation_that_fits_is_rendered_once() -> None:
    eng, template = engine(100)
    ids = eng.render(ScoreItem(conversation(10, 10, 10, system=5), "a b c"), "items[0].response", truncate=True)
    assert len(ids) == 6 + 33 + 4 and template.renders == 1


def test_truncation_drops_the_fewest_oldest_messages_and_keeps_the_system_prompt() -> None:
    eng, _ = engine(40)
    # system 6, messages 11 each, response 4: system + last two messages + response = 32 <= 40.
    item = ScoreItem(conversation(10, 10, 10, 10, 10, system=5), "a b c")
    ids = eng.render(item, "items[0].response", truncate=True)
    assert len(ids) == 6 + 22 + 4


def test_without_truncation_too_long_names_the_item() -> None:
    eng, _ = engine(40)
    with pytest.raises(InvalidRequest, match=r"candidates\[2\]: 54 tokens"):
        eng.render(ScoreItem(conversation(10, 10, 10, 10, system=5), "a b c"), "candidates[2]")


def test_a_response_longer_than_the_window_keeps_its_last_tokens() -> None:
    eng, _ = engine(20)
    ids = eng.render(ScoreItem(conversation(3, system=2), " ".join(["r"] * 30)), "x", truncate=True)
    assert len(ids) == 20
