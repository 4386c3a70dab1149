"""VllmRewardEngine: scores (conversation, response) items with a reward model in vLLM.

The conversation plus the response (as an assistant turn) is rendered with the reward model's own
chat template, as it was trained, and scored by vLLM's pooling runner (`classify` task) with the
activation OFF: a score is the model's raw logit, no sigmoid. Items of one call are submitted
together so the engine batches them. Knows nothing of gRPC.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence

from chatstack.core.errors import InvalidRequest
from chatstack.core.offload import certainly_too_long, max_chars_per_token
from chatstack.core.request_context import current_request_id
from chatstack.core.roles import CHAT_ROLES
from chatstack.core.vllm_engine import VllmEngine
from chatstack.reward.config import RewardConfig
from chatstack.reward.metrics import RewardMetrics
from chatstack.reward.model import Message, Ranked, RewardModelInfo, Score, ScoreItem, rank_order

log = logging.getLogger(__name__)


class VllmRewardEngine(VllmEngine):
    """Reward model on vLLM's pooling runner, with validation, admission and abort-on-cancel."""

    service = "reward"

    def __init__(self, config: RewardConfig, metrics: RewardMetrics) -> None:
        # One tokenizing worker: a HF fast tokenizer is not safe to use from two threads at once.
        super().__init__(config, metrics, offload_workers=1)
        self.config = config
        self.metrics = metrics

    async def start(self) -> None:
        """Load the tokenizer (for the chat template) and start the pooling engine."""
        from transformers import AutoTokenizer

        self.tokenizer = await asyncio.to_thread(AutoTokenizer.from_pretrained, self.config.model)
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(f"reward model {self.config.model} has no chat template")
        await self._start_llm(runner="pooling")
        self.chars_per_token = max_chars_per_token(self.tokenizer.get_vocab())
        await self.score([ScoreItem((("user", "warm up"),), "ok")])  # pay lazy init now
        self._watch()

    def info(self) -> RewardModelInfo:
        """Model name and limits."""
        return RewardModelInfo(self.model_name, self.max_model_len, self.config.max_batch_items,
                               self.config.max_candidates, self.model_version)

    # -- rendering ----------------------------------------------------------------------------
    def check_conversation(self, conversation: Sequence[tuple[str, str]], where: str) -> None:
        """Non-empty, within limits, every role known; messages name the offending item."""
        if not conversation:
            raise InvalidRequest(f"{where}: empty")
        if len(conversation) > self.config.max_messages:
            raise InvalidRequest(f"{where}: {len(conversation)} messages exceed the limit of "
                                 f"{self.config.max_messages}")
        for j, (role, _) in enumerate(conversation):
            if role not in CHAT_ROLES:
                raise InvalidRequest(f"{where}[{j}].role: {role or 'unspecified'} is not one of "
                                     f"{sorted(CHAT_ROLES)}")

    def _render(self, conversation: Sequence[Message], response: str) -> list[int]:
        from jinja2 import TemplateError

        messages = [{"role": r, "content": c} for r, c in conversation]
        messages.append({"role": "assistant", "content": response})
        try:
            return list(self.tokenizer.apply_chat_template(
                messages, tokenize=True, add_generation_prompt=False, return_dict=False))
        except TemplateError as exc:  # e.g. a template that insists on alternating roles
            raise InvalidRequest(f"conversation: the reward model's chat template refused it: {exc}") from exc

    def render(self, item: ScoreItem, where: str, truncate: bool = False) -> list[int]:
        """Token ids of the conversation plus the response, via the model's chat template, fitted
        to max_model_len on the exact rendered length. Too long is INVALID_ARGUMENT naming
        `where`, unless `truncate`: then the oldest messages go first (the system prompt last)
        and, if the response alone is too long, only its last max_model_len tokens are scored.
        Inputs that cannot fit by their size alone are refused (or dropped) before rendering.

        An empty response is scored like any other (the model said nothing)."""
        limit, per_token = self.max_model_len, self.chars_per_token
        conversation = list(item.conversation)
        if certainly_too_long(len(item.response), limit, per_token):
            raise InvalidRequest(f"{where}: {len(item.response)} characters cannot fit the reward "
                                 f"model's max_model_len {limit} tokens")
        chars = len(item.response) + sum(len(c) for _, c in conversation)
        ids = [] if certainly_too_long(chars, limit, per_token) else self._render(conversation, item.response)
        if ids and len(ids) <= limit:
            return ids  # the whole conversation fits: one rendering, the usual case
        if not truncate:
            shown = f"{len(ids)} tokens" if ids else f"{chars} characters"
            raise InvalidRequest(f"{where}: {shown} with the conversation exceed the reward "
                                 f"model's max_model_len {limit}; shorten the conversation")
        return self._fit_from_left(conversation, item.response)

    def _fit_from_left(self, conversation: list[Message], response: str) -> list[int]:
        """The longest suffix of the conversation (system prompt kept while possible) whose
        rendering with the response fits, the whole being known not to; found by binary search on
        the exact rendered length."""
        limit = self.max_model_len
        system = conversation[:1] if conversation and conversation[0][0] == "system" else []
        rest = conversation[len(system):]
        # Messages older than what the size bound allows cannot be part of any fitting window.
        budget, first = 2 * limit * self.chars_per_token - len(response), len(rest)
        while first > 0 and budget - len(rest[first - 1][1]) >= 0:
            first -= 1
            budget -= len(rest[first][1])
        lo, hi, best = max(first, 1), len(rest), None
        while lo <= hi:  # fewest dropped messages (smallest start) that fit
            mid = (lo + hi) // 2
            ids = self._render(system + rest[mid:], response)
            if len(ids) <= limit:
                best, hi = ids, mid - 1
            else:
                lo = mid + 1
        if best is not None:
            return best
        ids = self._render([], response)
        return ids if len(ids) <= limit else ids[-limit:]

    # -- scoring ------------------------------------------------------------------------------
    async def score(self, items: Sequence[ScoreItem], what: str = "items",
                    truncate: bool = False) -> list[Score]:
        """Raw scores of items, in order, batched through the engine in one go; rendering runs
        off the event loop when the input is large. `what` names the items in error messages
        ("items" or "candidates"); `truncate` fits long items from the left (see `render`)."""
        if not items:
            raise InvalidRequest(f"{what}: empty, give at least one")
        if what == "items":
            for i, item in enumerate(items):
                self.check_conversation(item.conversation, f"items[{i}].conversation")
        where = "items[{}].response" if what == "items" else "candidates[{}]"
        chars = sum(len(i.response) + sum(len(c) for _, c in i.conversation) for i in items)
        rendered = await self.offload.run(chars, lambda: [
            self.render(item, where.format(i), truncate) for i, item in enumerate(items)])
        with self.admitted(len(items), "items"):
            started = time.perf_counter()
            base = f"{current_request_id()}-{uuid.uuid4().hex[:8]}"
            scores = await asyncio.gather(*[self._score_one(ids, f"{base}-{i}")
                                            for i, ids in enumerate(rendered)])
        self.metrics.scoring_duration.observe(time.perf_counter() - started)
        self.metrics.batch_items.observe(len(items))
        self.metrics.items.inc(len(items))
        return [Score(s, len(ids)) for s, ids in zip(scores, rendered, strict=True)]

    async def _score_one(self, ids: list[int], request_id: str) -> float:
        from vllm import PoolingParams

        params = PoolingParams(task="classify", use_activation=False)  # raw logit
        return float((await self.pool(ids, params, request_id, self.metrics.aborted)).reshape(-1)[0])

    async def rank(self, conversation: tuple[tuple[str, str], ...],
                   candidates: Sequence[str], truncate: bool = False) -> list[Ranked]:
        """Candidates best first (ties: lower request index first)."""
        if not candidates:
            raise InvalidRequest("candidates: empty, give at least one")
        if len(candidates) > self.config.max_candidates:
            raise InvalidRequest(f"candidates: {len(candidates)} exceed the limit of "
                                 f"{self.config.max_candidates}")
        self.check_conversation(conversation, "conversation")
        scores = await self.score([ScoreItem(conversation, c) for c in candidates], "candidates",
                                  truncate)
        values = [s.score for s in scores]
        return [Ranked(i, values[i], candidates[i]) for i in rank_order(values)]

    def check_batch(self, n: int) -> None:
        """ScoreBatch's item-count limit."""
        if n > self.config.max_batch_items:
            raise InvalidRequest(f"items: {n} exceed the limit of {self.config.max_batch_items}")
