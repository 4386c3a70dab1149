"""Moderating an answer as it streams, with a bound on what can get out.

The monitor sits between the engine's stream and the client. It keeps the whole answer so far
and checks a sliding context of it (the last `context` tokens: text split across deltas is seen
whole) every `interval` tokens, one check at a time, beside the stream. A piece of the answer
goes out only when it ends within the *release limit*, counted from the text known clean:

- `margin`: the longest flagged span the guarantee covers, in characters (64: every rule's match
  in the labelled set is shorter). A check that came back clean on text ending at character c saw
  no complete harmful span, but one could have started after c - margin and be incomplete: the
  tokens before c - margin are known clean.
- *stream-first* (the default): limit = known clean + `bound` (32 tokens). Tokens go out at once
  while checks keep up; if they fall behind, the stream waits for them. When a check flags text
  starting at s, fewer than `bound` tokens past s have reached the client, whatever the checks'
  latency.
- *holdback*: limit = known clean, and at least `window` (W) tokens behind the last check: no
  flagged token is ever delivered; the client sees the answer W tokens late.

When the stream ends, one last check sees the whole answer and releases the rest (or stops it).
A flag stops the watch: the monitor yields a `Stopped` naming the verdict and where the flagged
text starts, and takes nothing more from the stream (its caller aborts the generation).

Pieces are released whole: the monitor counts an engine delta's tokens but cannot cut its text
between them, so a delta longer than the allowance waits for the check that covers it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar

from chatstack.safety.rules import RuleSet

MonitorMode = Literal["stream_first", "holdback"]


@dataclass(frozen=True)
class Verdict:
    """A check's outcome: flagged or not, in which category, with what score, and where the
    flagged text starts in the checked text (a character offset, when the checker knows it)."""

    flagged: bool
    category: str = ""
    score: float = 0.0
    start: int | None = None


class Checker(Protocol):
    """Anything that judges a text (the rules, the guard model, both)."""

    async def check(self, text: str) -> Verdict:
        """The verdict on `text`."""
        ...


class RuleChecker:
    """The rules layer as a checker: flagged at the first hit."""

    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules

    async def check(self, text: str) -> Verdict:
        """The first hit's category and start (score 1), or clean."""
        hits = self.rules.scan(text)
        return Verdict(True, hits[0].category, 1.0, hits[0].start) if hits else Verdict(False)


@dataclass(frozen=True)
class MonitorPolicy:
    """How an answer is watched (see module docstring)."""

    mode: MonitorMode = "stream_first"
    bound: int = 32  # stream-first: tokens past the flagged text's start that may reach the client
    window: int = 32  # holdback: tokens held until checked
    interval: int = 8  # tokens between checks
    margin: int = 64  # the longest flagged span, in characters, the guarantee covers
    context: int = 256  # tokens of the answer each check sees

    def limit(self, clean: int, checked: int) -> int:
        """How far the answer may be released when `clean` tokens are known clean and the last
        clean check saw `checked` tokens."""
        if self.mode == "holdback":
            return min(clean, checked - self.window)
        return clean + self.bound


@dataclass(frozen=True)
class Piece:
    """Part of the answer: its text and how many tokens it is."""

    text: str
    tokens: int


@dataclass(frozen=True)
class Stopped:
    """The answer was flagged: the verdict, the token where the flagged text starts (the start of
    the delta holding it, or the first token the last clean check had not seen), and how many
    tokens had been released."""

    verdict: Verdict
    at_token: int
    released: int


class PieceLike(Protocol):
    """What the monitor reads of a delta: its text and how many tokens it is."""

    @property
    def text(self) -> str: ...
    @property
    def tokens(self) -> int: ...


P = TypeVar("P", bound=PieceLike)


@dataclass
class _Held(Generic[P]):
    piece: P
    start_token: int
    start_char: int


class StreamMonitor(Generic[P]):
    """Watches one answer (see module docstring); pieces go out as they came in."""

    def __init__(self, checker: Checker, policy: MonitorPolicy | None = None) -> None:
        self.checker = checker
        self.policy = policy or MonitorPolicy()
        self._pieces: list[_Held[P]] = []  # every piece so far, for positions
        self._text = ""
        self._tokens = 0
        self._released = 0  # tokens
        self._next = 0  # index in _pieces of the first piece not released
        self._checked = 0  # tokens the last clean check saw
        self._clean = 0  # tokens known clean (see `margin`)
        self._check: asyncio.Task[Verdict] | None = None
        self._check_seen = 0  # tokens the running check sees
        self._check_offset = 0  # where its text starts in the answer (characters)
        self.stopped: Stopped | None = None
        self.held = asyncio.Event()  # set while the stream waits for a check (checks fell behind)
        self.waits = 0  # how many times it did

    @property
    def text(self) -> str:
        """The answer so far (released or held)."""
        return self._text

    @property
    def tokens(self) -> int:
        """Tokens of the answer seen so far (released or held)."""
        return self._tokens

    async def watch(self, deltas: AsyncIterator[P]) -> AsyncGenerator[P | Stopped]:
        """The answer's pieces as they may go out, then a `Stopped` if it was flagged. The
        stream is read on while a check runs (a piece beyond the limit waits, the reading does
        not), so each check covers everything read by the time it starts."""
        it = aiter(deltas)
        reading: asyncio.Future[P | None] | None = asyncio.ensure_future(anext(it, None))
        try:
            while True:
                ended = reading is None
                if self._check is None and self._due(ended):
                    self._start_check()
                async for item in self._release(ended):
                    yield item
                if self.stopped:
                    return
                if ended and self._next == len(self._pieces) and self._check is None:
                    return
                if not await self._wait(reading, ended):
                    continue  # a check came back
                assert reading is not None
                piece = reading.result()
                if piece is None:
                    reading = None
                    continue
                self._pieces.append(_Held(piece, self._tokens, len(self._text)))
                self._text += piece.text
                self._tokens += piece.tokens
                reading = asyncio.ensure_future(anext(it, None))
        finally:
            for task in (reading, self._check):
                if task is not None and not task.done():
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)  # the stream is then free

    def _due(self, ended: bool) -> bool:
        """Whether a check should start now (none is running): `interval` tokens unchecked, or
        the end reached with any."""
        unchecked = self._tokens - self._checked
        return unchecked >= self.policy.interval or (ended and unchecked > 0)

    async def _release(self, ended: bool) -> AsyncGenerator[P | Stopped]:
        """Apply a check that came back (a flag stops the watch), then release what the limit
        allows: everything once the end was checked whole."""
        if self._check is not None and self._check.done():
            verdict, seen_tokens = self._check.result(), self._check_seen
            self._check = None
            if verdict.flagged:
                self.stopped = Stopped(verdict, self._flagged_at(verdict), self._released)
                yield self.stopped
                return
            self._checked, self._clean = seen_tokens, self._known_clean(seen_tokens)
            if self._due(ended):
                self._start_check()
        everything = ended and self._checked == self._tokens
        limit = self._tokens if everything else self.policy.limit(self._clean, self._checked)
        while self._next < len(self._pieces):
            held = self._pieces[self._next]
            if held.start_token + held.piece.tokens > limit:
                break
            self._next += 1
            self._released += held.piece.tokens
            yield held.piece

    async def _wait(self, reading: asyncio.Future[P | None] | None, ended: bool) -> bool:
        """Wait for the next piece or the running check; True when a piece came. While pieces
        wait for the check (or the end waits for its verdict) the monitor is `held`."""
        waiting: set[asyncio.Future[Any]] = {t for t in (reading, self._check) if t is not None}
        stalled = self._check is not None and (ended or self._next < len(self._pieces))
        if stalled and not self.held.is_set():
            self.waits += 1
            self.held.set()
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.held.clear()
        return reading is not None and reading.done()

    def _start_check(self) -> None:
        context_start = max(0, self._tokens - self.policy.context)
        first = next(i for i, held in enumerate(self._pieces)
                     if held.start_token + held.piece.tokens > context_start)
        self._check_seen, self._check_offset = self._tokens, self._pieces[first].start_char
        self._check = asyncio.ensure_future(self.checker.check(self._text[self._check_offset:]))

    def _known_clean(self, checked: int) -> int:
        """Tokens known clean when a check of the first `checked` tokens came back clean: those
        of whole pieces ending at least `margin` characters before the text it saw ends."""
        end = next((h.start_char + len(h.piece.text) for h in self._pieces
                    if h.start_token + h.piece.tokens == checked), len(self._text))
        clean = 0
        for held in self._pieces:
            if held.start_char + len(held.piece.text) > end - self.policy.margin:
                break
            clean = held.start_token + held.piece.tokens
        return clean

    def _flagged_at(self, verdict: Verdict) -> int:
        if verdict.start is None:
            return self._clean  # the text not known clean
        char = self._check_offset + verdict.start
        held = next((h for h in reversed(self._pieces) if h.start_char <= char), self._pieces[0])
        return held.start_token
