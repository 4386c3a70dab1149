"""The tiny guard model's generated data: deterministic, every label present."""

from __future__ import annotations

from collections import Counter

from chatstack.safety.guard_data import LABELS, examples


def test_examples_are_deterministic_and_cover_every_label() -> None:
    assert examples() == examples()
    assert set(Counter(e.label for e in examples())) == set(range(len(LABELS)))
