"""The gateway's HTTP door fuzzed over real HTTP against the real stack (tests/fuzz/http_fuzz.py):
no response >= 500, every error in OpenAI's shape with a request id, streams ended by [DONE], no
request over its deadline, the gateway alive throughout."""

from __future__ import annotations

import random

import openai
import pytest

from tests.fuzz.http_fuzz import HTTP_BOOKS, HttpFuzzer
from tests.fuzz.profiles import PROFILE
from tests.stack_fixtures import ALICE_KEY, BOB_KEY, GatewayProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(PROFILE.test_timeout)]


def test_fuzzed_http_requests_break_no_oracle(gateway_process: GatewayProcess) -> None:
    base = f"http://127.0.0.1:{gateway_process.http_port}"
    with openai.OpenAI(base_url=f"{base}/v1", api_key=BOB_KEY, max_retries=0) as bob:
        model = bob.models.list().data[0].id
        conversation = bob.conversations.create()
        response = bob.responses.create(model=model, input="hi", max_output_tokens=2, conversation=conversation.id)
    seed = 23 if PROFILE.derandomize else random.randrange(2**32)
    fuzzer = HttpFuzzer(base, ALICE_KEY, model, seed, {"response": response.id, "conversation": conversation.id})
    try:
        fuzzer.run(PROFILE.http_requests)
    finally:
        fuzzer.close()
    assert not HTTP_BOOKS.violations, "\n".join(HTTP_BOOKS.violations[:20])
