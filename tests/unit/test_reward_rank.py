"""Best-of-n ordering without an engine."""

import itertools

from hypothesis import given
from hypothesis import strategies as st

from chatstack.reward.model import rank_order


def test_ties_keep_request_order() -> None:
    assert rank_order([1.0, 3.0, 3.0, -2.0, 1.0]) == [1, 2, 0, 4, 3]


@given(st.lists(st.sampled_from([-1.5, 0.0, 0.25, 2.0]), min_size=1, max_size=12))
def test_order_is_descending_and_stable(scores: list[float]) -> None:
    order = rank_order(scores)
    assert sorted(order) == list(range(len(scores)))
    for a, b in itertools.pairwise(order):
        assert scores[a] > scores[b] or (scores[a] == scores[b] and a < b)
