"""VllmSafetyEngine: judges items with a guard model on vLLM's pooling runner and the rules.

The guard is a sequence classifier read as a Prompt-Guard-class model is: plain text in, one
probability per label out (vLLM's `classify` task, softmax on). Its labels are mapped to the
categories (or "safe") once, at start; a label that maps to neither stops the service there.
A text longer than the model's window is read in overlapping windows (each starting with the
model's BOS, as it was trained) and a category's score is its highest over the windows. Rules
come first: a rule of a judged category that matches flags the item whatever the model says.
Knows nothing of gRPC.
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
from chatstack.core.vllm_engine import VllmEngine
from chatstack.safety.config import SafetyConfig
from chatstack.safety.metrics import SafetyMetrics
from chatstack.safety.model import CheckItem, Judgement, Policy, SafetyModelInfo
from chatstack.safety.rules import CATEGORIES, RuleHit, RuleSet

log = logging.getLogger(__name__)

SAFE = "safe"


def label_categories(id2label: dict[int, str], label_map: dict[str, str]) -> list[str]:
    """The category (or "safe") of each of the model's labels, in label order. A label neither
    mapped nor named like a category is refused, naming it."""
    out = []
    for index in sorted(id2label):
        label = id2label[index]
        category = label_map.get(label, label)
        if category not in (SAFE, *CATEGORIES):
            raise ValueError(f"guard model label {label!r} is neither a category ({', '.join(CATEGORIES)}) "
                             f"nor 'safe'; map it with label_map")
        out.append(category)
    return out


def windows(ids: Sequence[int], size: int, overlap: int) -> list[list[int]]:
    """`ids` cut into windows of at most `size` tokens, consecutive ones sharing `overlap`
    (the last window ends at the last token); one window when it fits."""
    if len(ids) <= size:
        return [list(ids)]
    step = max(1, size - overlap)
    starts = [*range(0, len(ids) - size, step), len(ids) - size]
    return [list(ids[s:s + size]) for s in starts]


def judge(scores: dict[str, float], hits: list[RuleHit], policy: Policy,
          defaults: dict[str, float], input_tokens: int) -> Judgement:
    """The verdict under `policy`: a rule of a judged category first, else the judged category
    with the highest probability at or above its threshold."""
    judged = policy.categories or frozenset(CATEGORIES)
    hits = [h for h in hits if h.category in judged]
    scores = {c: s for c, s in scores.items() if c in judged}
    if hits:
        return Judgement(True, hits[0].category, "rules", scores, hits, input_tokens)
    over = [(s, c) for c, s in scores.items() if s >= policy.thresholds.get(c, defaults[c])]
    if over:
        return Judgement(True, max(over)[1], "model", scores, [], input_tokens)
    return Judgement(False, "", "", scores, [], input_tokens)


class VllmSafetyEngine(VllmEngine):
    """Guard model on vLLM's pooling runner plus the rules layer, with validation, admission and
    abort-on-cancel."""

    service = "safety"

    def __init__(self, config: SafetyConfig, metrics: SafetyMetrics) -> None:
        # One tokenizing worker: a HF fast tokenizer is not safe to use from two threads at once.
        super().__init__(config, metrics, offload_workers=1)
        self.config = config
        self.metrics = metrics
        self.rules = RuleSet.from_file(config.rules_file) if config.rules_file else RuleSet()
        self.labels: list[str] = []

    async def start(self) -> None:
        """Load the tokenizer, start the pooling engine, map the model's labels."""
        from transformers import AutoTokenizer

        self.tokenizer = await asyncio.to_thread(AutoTokenizer.from_pretrained, self.config.model)
        await self._start_llm(runner="pooling")
        id2label = {int(k): v for k, v in self.llm.model_config.hf_config.id2label.items()}
        self.labels = label_categories(id2label, self.config.label_map)
        self.chars_per_token = max_chars_per_token(self.tokenizer.get_vocab())
        self.bos = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
        await self.check([CheckItem(text="warm up")], Policy())  # pay lazy init now
        self._watch()

    def info(self) -> SafetyModelInfo:
        """Model, window, limits, categories and default thresholds."""
        return SafetyModelInfo(self.model_name, self.max_model_len, self.config.max_items, CATEGORIES,
                               dict(self.config.thresholds), self.model_version)

    # -- checks -------------------------------------------------------------------------------
    def check_request(self, items: Sequence[CheckItem], policy: Policy) -> None:
        """Items and policy within limits and known; messages name the field."""
        if not items:
            raise InvalidRequest("items: empty, give at least one")
        if len(items) > self.config.max_items:
            raise InvalidRequest(f"items: {len(items)} exceed the limit of {self.config.max_items}")
        for category in sorted(policy.categories):
            if category not in CATEGORIES:
                raise InvalidRequest(f"policy.categories: {category!r} is not one of {', '.join(CATEGORIES)}")
        for category, threshold in policy.thresholds.items():
            if category not in CATEGORIES:
                raise InvalidRequest(f"policy.thresholds: {category!r} is not one of {', '.join(CATEGORIES)}")
            if not 0 < threshold <= 1:
                raise InvalidRequest(f"policy.thresholds[{category}]: {threshold} is not in (0, 1]")
        for i, item in enumerate(items):
            if item.conversation is None and item.text is None:
                raise InvalidRequest(f"items[{i}]: set conversation or text")
            if item.conversation is not None and len(item.conversation) > self.config.max_messages:
                raise InvalidRequest(f"items[{i}].conversation.messages: {len(item.conversation)} exceed "
                                     f"the limit of {self.config.max_messages}")
            if item.text is not None and certainly_too_long(len(item.text), self.config.max_item_tokens,
                                                              self.chars_per_token):
                raise InvalidRequest(f"items[{i}].text: {len(item.text)} characters exceed the limit of "
                                     f"{self.config.max_item_tokens} tokens")

    def _read(self, items: Sequence[CheckItem]) -> list[tuple[list[list[int]], list[RuleHit], int]]:
        """Each item's guard windows, rule hits and token count (CPU work: runs off the loop
        when large)."""
        size, limit = self.max_model_len - len(self.bos), self.config.max_item_tokens
        out = []
        for i, item in enumerate(items):
            text = item.judged_text()
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(ids) > limit:
                if item.text is not None:
                    raise InvalidRequest(f"items[{i}].text: {len(ids)} tokens exceed the limit of {limit}")
                ids = ids[-limit:]  # a conversation is read from its newest turns
            cut = windows(ids, size, self.config.window_overlap)
            out.append(([self.bos + w for w in cut], self.rules.scan(text), sum(len(w) for w in cut)))
        return out

    async def check(self, items: Sequence[CheckItem], policy: Policy) -> list[Judgement]:
        """The verdict on each item, in order; every window of every item classified in one go."""
        self.check_request(items, policy)
        chars = sum(len(i.judged_text()) for i in items)
        read = await self.offload.run(chars, self._read, items)
        flat = [w for item_windows, _, _ in read for w in item_windows]
        with self.admitted(len(flat), "windows"):
            started = time.perf_counter()
            base = f"{current_request_id()}-{uuid.uuid4().hex[:8]}"
            probabilities = await asyncio.gather(*[self._classify(ids, f"{base}-{i}")
                                                   for i, ids in enumerate(flat)])
        self.metrics.check_duration.observe(time.perf_counter() - started)
        self.metrics.windows.observe(len(flat))
        out, next_window = [], 0
        for (item_windows, hits, tokens), item in zip(read, items, strict=True):
            scores = dict.fromkeys(CATEGORIES, 0.0)
            for probs in probabilities[next_window:next_window + len(item_windows)]:
                for label, p in zip(self.labels, probs, strict=True):
                    if label != SAFE:
                        scores[label] = max(scores[label], p)
            next_window += len(item_windows)
            verdict = judge(scores, hits, policy, self.config.thresholds, tokens)
            self.metrics.checked(item, verdict)
            out.append(verdict)
        return out

    async def _classify(self, ids: list[int], request_id: str) -> list[float]:
        from vllm import PoolingParams

        params = PoolingParams(task="classify")  # softmax over the labels
        probabilities = await self.pool(ids, params, request_id, self.metrics.aborted)
        return [float(p) for p in probabilities.reshape(-1)]
