"""The gateway's safety stage: the input check beside the engine's prefill, the output monitor of
a streaming answer, the check of whole candidates, and the fail modes, over the safety service.

- **Input**: the conversation the model is about to answer (its user and tool turns, so a
  role-play set up over several turns is read whole) is checked while the engine prefills; the
  answer stage releases no token before the verdict, and a flag aborts generation.
- **Output**: `chatstack.safety.stream_monitor.StreamMonitor` over the answer's deltas, with the
  safety service as its checker (a sliding context of the answer every few tokens).
- **Fail modes**: a check that cannot be made (the service down, late or refusing) refuses the
  call with UNAVAILABLE when the stage's mode is closed (nothing is stored: the call fails like
  any other), or passes unchecked when open; both are counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from chatstack.core.errors import BackendUnavailable, ChatstackError, InvalidRequest, NotFound
from chatstack.core.request_context import current_transport
from chatstack.gateway.clients import SafetyClient
from chatstack.gateway.config import GatewayConfig
from chatstack.gateway.metrics import GatewayMetrics
from chatstack.gateway.model import DeltaEvent, Moderation, ModerationStage
from chatstack.gateway.session_records import Message
from chatstack.safety.model import CheckItem, Judgement, Policy
from chatstack.safety.stream_monitor import MonitorPolicy, StreamMonitor, Verdict

log = logging.getLogger(__name__)


class SafetyStage:
    """Moderation for one gateway (see module docstring); `enabled` is False without a safety
    service, and every method then passes."""

    def __init__(self, client: SafetyClient | None, config: GatewayConfig, metrics: GatewayMetrics) -> None:
        self.client = client
        self.config = config
        self.metrics = metrics
        self.policy = Policy(frozenset(config.safety_categories), dict(config.safety_thresholds))
        self.monitor_policy: MonitorPolicy | None = None if config.safety_output == "off" else MonitorPolicy(
            mode=config.safety_output, bound=config.safety_bound_tokens, window=config.safety_window_tokens,
            interval=config.safety_interval_tokens, context=config.safety_context_tokens)

    @property
    def checks_input(self) -> bool:
        """Whether inputs are checked."""
        return self.client is not None and self.config.safety_input

    @property
    def checks_output(self) -> bool:
        """Whether answers are checked."""
        return self.client is not None and self.monitor_policy is not None

    def refusal(self, stage: ModerationStage, verdict: Judgement, at_token: int = 0,
                released: int = 0) -> Moderation:
        """The moderation record of a flag (counted by stage, category and door)."""
        self.metrics.moderated.labels(stage, verdict.category, current_transport()).inc()
        rule = verdict.rules[0].rule if verdict.rules else ""
        log.info("moderated %s: %s by %s", stage, verdict.category, verdict.flagged_by)
        return Moderation(stage, verdict.category, verdict.flagged_by, verdict.scores, rule, at_token,
                          released, self.config.safety_refusal)

    async def check(self, stage: ModerationStage, items: Sequence[CheckItem]) -> list[Judgement] | None:
        """The service's verdicts, or None when it could not judge and the stage fails open
        (closed: BackendUnavailable)."""
        assert self.client is not None
        mode = self.config.safety_fail_input if stage == "input" else self.config.safety_fail_output
        started = time.perf_counter()
        try:
            verdicts = await self.client.check(items, self.policy, self.config.safety_timeout_seconds)
        except ChatstackError as exc:
            self.metrics.guard_failures.labels(stage, "refused" if mode == "closed" else "passed").inc()
            log.warning("%s check failed (fail %s): %s", stage, mode, exc)
            if mode == "closed":
                raise BackendUnavailable(
                    f"safety service unavailable: the {stage} cannot be checked") from exc
            return None
        self.metrics.guard_latency.labels(stage).observe(time.perf_counter() - started)
        return verdicts

    async def check_input(self, messages: Sequence[Message]) -> Moderation | None:
        """The input's moderation when flagged, else None."""
        verdicts = await self.check("input", [CheckItem(conversation=tuple(messages))])
        if verdicts and verdicts[0].flagged:
            return self.refusal("input", verdicts[0])
        return None

    def start_input(self, messages: Sequence[Message]) -> asyncio.Task[Moderation | None] | None:
        """The input check, started now (beside prefill); None when inputs are not checked."""
        return asyncio.ensure_future(self.check_input(messages)) if self.checks_input else None

    async def check_texts(self, texts: Sequence[str]) -> list[Judgement | None]:
        """Verdicts on whole answers (one call for all; None each when unchecked, failing open)."""
        if not self.checks_output or not texts:
            return [None] * len(texts)
        verdicts = await self.check("output", [CheckItem(text=t) for t in texts])
        return list(verdicts) if verdicts is not None else [None] * len(texts)

    async def moderate(self, texts: Sequence[str], field: str = "input") -> list[Judgement]:
        """Verdicts on standalone texts (`POST /v1/moderations`), under the deployment's policy; a
        refusal names the caller's `field`. Without a safety service: NotFound."""
        if self.client is None:
            raise NotFound("moderations: this gateway has no safety stage (safety_address is not set)")
        for i, text in enumerate(texts):
            if len(text) > self.config.max_message_chars:
                raise InvalidRequest(f"{field}[{i}]: {len(text)} characters exceed the limit of "
                                     f"{self.config.max_message_chars}")
        try:
            return await self.client.check([CheckItem(text=t) for t in texts], self.policy,
                                           self.config.safety_timeout_seconds)
        except InvalidRequest as exc:  # the service names its own field: items
            raise InvalidRequest(str(exc).replace("items", field, 1)) from exc

    def monitor(self) -> StreamMonitor[DeltaEvent] | None:
        """A monitor for one streaming answer (None when answers are not checked)."""
        if not self.checks_output:
            return None
        assert self.monitor_policy is not None
        return StreamMonitor(GuardChecker(self), self.monitor_policy)


class GuardChecker:
    """The safety service as the monitor's checker: a window of the answer as a text item; the
    flagged text starts at the first rule match (unknown when the model flagged it). `last` is
    the verdict of the last flag."""

    def __init__(self, stage: SafetyStage) -> None:
        self.stage = stage
        self.last: Judgement | None = None

    async def check(self, text: str) -> Verdict:
        verdicts = await self.stage.check("output", [CheckItem(text=text)])
        if not verdicts or not verdicts[0].flagged:
            return Verdict(False)
        self.last = verdict = verdicts[0]
        start = verdict.rules[0].start if verdict.rules else None
        return Verdict(True, verdict.category, verdict.scores.get(verdict.category, 1.0), start)

