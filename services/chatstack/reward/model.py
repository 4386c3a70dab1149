"""Domain objects of the reward service."""

from __future__ import annotations

from dataclasses import dataclass

Message = tuple[str, str]  # (role, content)


@dataclass(frozen=True)
class ScoreItem:
    """A conversation and a candidate assistant response to it."""

    conversation: tuple[Message, ...]
    response: str


@dataclass(frozen=True)
class Score:
    """A raw reward (logit, no sigmoid) and the number of tokens scored."""

    score: float
    input_tokens: int


@dataclass(frozen=True)
class Ranked:
    """A candidate with its request index and score."""

    index: int
    score: float
    text: str


def rank_order(scores: list[float]) -> list[int]:
    """Indices best first; equal scores keep request order (lower index first)."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


@dataclass(frozen=True)
class RewardModelInfo:
    """What GetModelInfo reports."""

    model: str
    max_model_len: int
    max_batch_items: int
    max_candidates: int
    version: str = ""  # chatstack.core.model_version
