"""Generation converters and validation, without an engine."""

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
from chatstack.generation.validation import validate_length, validate_prompt, validate_sampling
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
    ],
)
def test_sampling_validation_names_the_field(options: SamplingOptions, field: str) -> None:
    with pytest.raises(InvalidRequest, match=field.replace(".", r"\.")):
        validate_sampling(options, max_n=8, max_logprobs=20)


def test_prompt_and_length_validation() -> None:
    validate_sampling(SamplingOptions(temperature=0, top_p=1.0), 8, 20)
    with pytest.raises(InvalidRequest, match=r"prompt\.token_ids\[2\]: id 10 is outside"):
        validate_prompt(PromptInput(token_ids=(1, 2, 10)), vocab_size=10)
    with pytest.raises(InvalidRequest, match="100 prompt tokens \\+ 30 max_tokens = 130 exceed max_model_len 128"):
        validate_length(100, 30, 128)
    validate_length(100, 28, 128)
