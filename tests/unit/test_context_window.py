"""The gateway's local cut of a context window, against brute force over every suffix."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chatstack.gateway.context_window import newest_that_fit, turns_to_drop

counts = st.lists(st.integers(min_value=0, max_value=50), max_size=12)


@given(counts, st.integers(min_value=-5, max_value=300))
def test_newest_that_fit_is_the_longest_suffix_within_budget(tokens: list[int], budget: int) -> None:
    kept = newest_that_fit(tokens, budget)
    fitting = [k for k in range(len(tokens) + 1) if sum(tokens[len(tokens) - k:]) <= budget]
    # The longest contiguous run of newest turns: stop at the first turn that does not fit.
    expected = 0
    while expected < len(tokens) and expected + 1 in fitting:
        expected += 1
    assert kept == expected


def test_a_turn_that_does_not_fit_stops_the_window_even_if_older_ones_would() -> None:
    assert newest_that_fit([1, 1, 100, 5], budget=10) == 1  # never skips over the 100-token turn
    assert newest_that_fit([5], budget=4) == 0


@given(counts, st.integers(min_value=0, max_value=400), st.integers(min_value=0, max_value=8))
def test_turns_to_drop_is_the_fewest_oldest_turns_that_free_the_excess(
        tokens: list[int], excess: int, per_message: int) -> None:
    drop = turns_to_drop(tokens, excess, per_message)
    freed = [sum(t + per_message for t in tokens[:k]) for k in range(len(tokens) + 1)]
    enough = [k for k, f in enumerate(freed) if f >= excess]
    assert drop == (enough[0] if enough else None)
