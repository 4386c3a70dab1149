"""The streaming output monitor's bound, by replay: each unsafe answer of the labelled set (after a
safe lead, so the harm starts mid-stream) is cut at every token boundary and into deltas of 1-256
tokens of the tiny tokenizer, with checks that lag behind the stream; at the client, every replay
is stopped (0 bypasses), fewer than `bound` flagged tokens get out in stream-first mode and none in
holdback mode; a safe answer always goes out whole, in order."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from chatstack.safety.examples import SAFE, UNSAFE_OUTPUTS
from chatstack.safety.rules import RuleSet
from chatstack.safety.stream_monitor import MonitorPolicy, Piece, RuleChecker, Stopped, StreamMonitor, Verdict

LEAD = ("Here is what I found after reading about it for a while, written out in full so that you can "
        "follow every part of the explanation without missing any of the details that matter. ")
POLICIES = {"stream_first": MonitorPolicy(), "holdback": MonitorPolicy(mode="holdback")}


class LaggingChecker:
    """The rules, answering only once the stream has moved `lag` pieces past the check's start,
    or once the stream waits for it (the monitor's `held`): checks that fall behind, by a
    condition, not by time."""

    def __init__(self, lag: int) -> None:
        self.inner = RuleChecker(RuleSet())
        self.lag = lag
        self.pulled = 0
        self.moved = asyncio.Condition()
        self.monitor: StreamMonitor | None = None

    async def pull(self) -> None:
        """The stream produced one more piece."""
        async with self.moved:
            self.pulled += 1
            self.moved.notify_all()

    async def check(self, text: str) -> Verdict:
        assert self.monitor is not None
        until = self.pulled + self.lag
        async with self.moved:
            stream_moved = asyncio.ensure_future(self.moved.wait_for(lambda: self.pulled >= until))
        held = asyncio.ensure_future(self.monitor.held.wait())
        await asyncio.wait({stream_moved, held}, return_when=asyncio.FIRST_COMPLETED)
        for waiter in (stream_moved, held):
            waiter.cancel()
        return await self.inner.check(text)


@pytest.fixture(scope="module")
def tokenizer(lm_dir: Path) -> Tokenizer:
    return Tokenizer.from_file(str(lm_dir / "tokenizer.json"))


def token_starts(tokenizer: Tokenizer, text: str) -> list[int]:
    starts = [start for start, _ in tokenizer.encode(text, add_special_tokens=False).offsets]
    return sorted(set(starts))


def cut(text: str, starts: list[int], bounds: list[int]) -> list[Piece]:
    """`text` as pieces between the token indices in `bounds`."""
    edges = [*starts, len(text)]
    return [Piece(text[edges[a]:edges[b]], b - a) for a, b in itertools.pairwise(bounds) if b > a]


def cuts(n: int) -> list[list[int]]:
    at_every_boundary = [[0, k, n] for k in range(1, n)]
    by_size = [[*range(0, n, size), n] for size in range(1, min(n, 256) + 1)]
    return at_every_boundary + by_size


async def replay(pieces: list[Piece], policy: MonitorPolicy, lag: int) -> tuple[int, str, Stopped | None, int]:
    checker = LaggingChecker(lag)
    monitor = checker.monitor = StreamMonitor(checker, policy)

    async def source() -> AsyncIterator[Piece]:
        for piece in pieces:
            await checker.pull()
            yield piece

    released, text, stopped = 0, "", None
    async for item in monitor.watch(source()):
        if isinstance(item, Stopped):
            stopped = item
        else:
            released, text = released + item.tokens, text + item.text
    return released, text, stopped, monitor.waits


@pytest.mark.parametrize("mode", POLICIES)
def test_no_flagged_answer_gets_past_the_bound_however_it_is_cut(tokenizer: Tokenizer, mode: str) -> None:
    policy = POLICIES[mode]

    async def run() -> int:
        worst = waited = 0
        for example in UNSAFE_OUTPUTS:
            text = LEAD + example.texts[0]
            starts = token_starts(tokenizer, text)
            hit = RuleSet().scan(text)[0]
            assert hit.end - hit.start <= policy.margin, "the guarantee covers spans up to the margin"
            harm_token = max(i for i, s in enumerate(starts) if s <= hit.start)
            for i, bounds in enumerate(cuts(len(starts))):
                released, _, stopped, waits = await replay(cut(text, starts, bounds), policy, lag=i % 6)
                waited += waits > 0
                assert stopped is not None, f"bypass: {example.texts[0][:30]!r} cut {bounds[:4]}"
                assert stopped.verdict.category == example.category and stopped.released == released
                worst = max(worst, released - harm_token)
                if mode == "holdback":
                    assert released <= harm_token, (bounds[:4], released, harm_token)
                else:
                    assert released - harm_token < policy.bound, (bounds[:4], released, harm_token)
        assert waited, "some replays must have waited for a check that fell behind"
        return worst

    print(f"{mode}: at most {max(0, asyncio.run(run()))} flagged tokens reached the client")


@pytest.mark.parametrize("mode", POLICIES)
def test_a_safe_answer_goes_out_whole_and_in_order(tokenizer: Tokenizer, mode: str) -> None:
    text = LEAD + " ".join(e.texts[0] for e in SAFE)
    starts = token_starts(tokenizer, text)

    async def run() -> None:
        for i, bounds in enumerate(cuts(len(starts))[::7]):
            released, out, stopped, _ = await replay(cut(text, starts, bounds), POLICIES[mode], lag=i % 4)
            assert stopped is None and out == text and released == len(starts)

    asyncio.run(run())


def test_a_verdict_without_a_position_stops_where_the_last_clean_check_ended() -> None:
    class FlagsLongAnswers:
        async def check(self, text: str) -> Verdict:
            return Verdict(len(text) > 40, "violence", 0.9)

    async def run() -> list[Piece | Stopped]:
        async def source() -> AsyncIterator[Piece]:
            for _ in range(20):
                yield Piece("word ", 1)

        policy = MonitorPolicy(interval=4, margin=0, bound=4)
        return [item async for item in StreamMonitor(FlagsLongAnswers(), policy).watch(source())]

    items = asyncio.run(run())
    stopped = items[-1]
    assert isinstance(stopped, Stopped) and 4 <= stopped.at_token <= 8  # the last clean check saw <= 40 chars
    assert stopped.released <= stopped.at_token + 4 and stopped.released == len(items) - 1
