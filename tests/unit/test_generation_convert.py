"""Generation converters and validation, without an engine."""

import math

import pytest

from chatstack.core.errors import InvalidRequest
from chatstack.generation.model import (
    ChoiceResult,
    Delta,
    GenerationResult,
    PromptInput,
    SamplingOptions,
    Timings,
)
from chatstack.generation.servicer import (
    delta_to_proto,
    prompt_from_proto,
    result_to_proto,
    sampling_options_from_proto,
)
from chatstack.generation.validation import (
    engine_seed,
    validate_length,
    validate_prompt,
    validate_sampling,
)
from chatstack.v1 import common_pb2, generation_pb2


def test_unset_optional_sampling_fields_stay_unset() -> None:
    options = sampling_options_from_proto(generation_pb2.SamplingParams(max_tokens=5))
    assert options == SamplingOptions(n=1, max_tokens=5)
    explicit = sampling_options_from_proto(generation_pb2.SamplingParams(temperature=0.0, top_k=0, seed=0))
    assert (explicit.temperature, explicit.top_k, explicit.seed) == (0.0, 0, 0)


def test_prompt_oneof_maps_to_text_or_ids() -> None:
    assert prompt_from_proto(generation_pb2.GenerateRequest(text="hi")) == PromptInput(text="hi")
    ids = generation_pb2.GenerateRequest(token_ids=common_pb2.TokenIds(ids=[1, 2]))
    assert prompt_from_proto(ids) == PromptInput(token_ids=(1, 2))
    assert prompt_from_proto(generation_pb2.GenerateRequest()) == PromptInput()


def test_result_and_delta_convert() -> None:
    result = GenerationResult([ChoiceResult(0, "ab", [5, 6], "length")], 3, 2,
                              Timings(0.0, 0.1, 0.01, 0.2), "tiny")
    msg = result_to_proto(result)
    assert msg.choices[0].finish_reason == common_pb2.FINISH_REASON_LENGTH
    assert (msg.usage.total_tokens, msg.timings.ttft_seconds, msg.model) == (5, 0.1, "tiny")
    delta = delta_to_proto(Delta(1, "x", [9])).delta
    assert (delta.index, delta.text, list(delta.token_ids)) == (1, "x", [9])


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (SamplingOptions(n=0), "sampling.n"),
        (SamplingOptions(n=9), "sampling.n"),
        (SamplingOptions(temperature=-1), "sampling.temperature"),
        (SamplingOptions(top_p=0), "sampling.top_p"),
        (SamplingOptions(top_k=-2), "sampling.top_k"),
        (SamplingOptions(min_p=1.5), "sampling.min_p"),
        (SamplingOptions(frequency_penalty=-3), "sampling.frequency_penalty"),
        (SamplingOptions(repetition_penalty=0), "sampling.repetition_penalty"),
        (SamplingOptions(stop=("",)), "sampling.stop"),
        # vLLM's own rules, checked before the engine sees them (each was INTERNAL once)
        (SamplingOptions(temperature=2.5), "sampling.temperature"),
        (SamplingOptions(temperature=math.nan), "sampling.temperature"),
        (SamplingOptions(temperature=math.inf), "sampling.temperature"),
        (SamplingOptions(repetition_penalty=math.nan), "sampling.repetition_penalty"),
        (SamplingOptions(repetition_penalty=math.inf), "sampling.repetition_penalty"),
        (SamplingOptions(top_p=math.nan), "sampling.top_p"),
        (SamplingOptions(presence_penalty=math.nan), "sampling.presence_penalty"),
        (SamplingOptions(stop_token_ids=(5, 10)), r"sampling.stop_token_ids\[1\]"),
        (SamplingOptions(min_tokens=17), "sampling.min_tokens"),
        (SamplingOptions(n=2, temperature=0), "sampling.n: greedy"),
        (SamplingOptions(stop=("x" * 300,)), r"sampling.stop\[0\]"),
    ],
)
def test_sampling_validation_names_the_field(options: SamplingOptions, field: str) -> None:
    with pytest.raises(InvalidRequest, match=field.replace(".", r"\.")):
        validate_sampling(options, max_n=8, max_logprobs=20, vocab_size=10, max_tokens=16)


def test_every_uint64_seed_gives_vllm_seeds_that_fit_for_every_choice() -> None:
    assert engine_seed(None, 4) is None and engine_seed(7, 4) == 7
    top = 2**64 - 1
    assert engine_seed(top, 1) == top
    folded = engine_seed(top, 2)
    assert folded is not None and folded + 1 < 2**64 and folded == engine_seed(top, 2)


def test_prompt_and_length_validation() -> None:
    validate_sampling(SamplingOptions(temperature=0, top_p=1.0), 8, 20, 10, 16)
    with pytest.raises(InvalidRequest, match=r"prompt\.token_ids\[2\]: id 10 is outside"):
        validate_prompt(PromptInput(token_ids=(1, 2, 10)), vocab_size=10, max_model_len=128,
                        chars_per_token=4)
    with pytest.raises(InvalidRequest, match=r"prompt\.text: 1025 characters cannot fit"):
        validate_prompt(PromptInput(text="x" * 1025), vocab_size=10, max_model_len=128, chars_per_token=4)
    validate_prompt(PromptInput(text="x" * 1024), vocab_size=10, max_model_len=128, chars_per_token=4)
    with pytest.raises(InvalidRequest, match="100 prompt tokens \\+ 30 max_tokens = 130 exceed max_model_len 128"):
        validate_length(100, 30, 128)
    validate_length(100, 28, 128)
