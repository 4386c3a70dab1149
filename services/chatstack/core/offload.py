"""CPU-heavy request work (tokenizing, template rendering, building large responses) off the
event loop, on a small bounded thread pool, so one large request cannot stall a service: its
health checks and small requests keep being answered meanwhile. HF `tokenizers` releases the GIL
while it encodes, so the loop thread really runs in parallel.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

# Work on inputs this small runs inline: a thread hop costs more than the work itself.
INLINE_CHARS = 16_384


class CpuOffload:
    """A bounded pool for CPU-heavy work; small work runs inline."""

    def __init__(self, workers: int = 2, inline_chars: int = INLINE_CHARS,
                 name: str = "chatstack-cpu") -> None:
        self.inline_chars = inline_chars
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)

    async def run(self, size: int, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)`, inline when `size` (characters or items of input) is small,
        else on the pool."""
        if size <= self.inline_chars:
            return fn(*args, **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        """Stop the pool (running work finishes)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def max_chars_per_token(vocabulary: Any) -> int:
    """The most input characters one token can stand for, from a tokenizer's vocabulary (token
    strings; byte-level and SentencePiece tokens spell at most one input character per
    character), at least 1. `len(text) / max_chars_per_token` is then a lower bound of the text's
    token count, known before tokenizing it."""
    return max([1, *(len(token) for token in vocabulary)])


def certainly_too_long(chars: int, max_tokens: int, chars_per_token: int) -> bool:
    """True when a text of `chars` characters must tokenize to more than `max_tokens` tokens
    (with a 2x margin for normalizers that drop characters)."""
    return chars > 2 * max_tokens * chars_per_token
