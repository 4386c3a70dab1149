"""The tiny guard model's generated data: deterministic, every label present, and a held-out part
that shares no core and no template with the training part."""

from __future__ import annotations

from collections import Counter

from chatstack.safety.guard_data import LABELS, TEMPLATES, examples, held_subjects, split


def test_examples_are_deterministic_and_cover_every_label() -> None:
    assert examples() == examples()
    assert set(Counter(e.label for e in examples())) == set(range(len(LABELS)))


def test_the_held_out_part_shares_no_core_or_template_with_training() -> None:
    train, held = split()
    assert len(train) + len(held) == len(examples()) and held and train
    assert not any(core in e.text for e in train for core in held_subjects())
    assert not any(e.text.startswith(TEMPLATES[-1].split("{}")[0]) for e in train)
    assert {e.label for e in held} == set(range(len(LABELS)))
