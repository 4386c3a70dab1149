"""The tokenizer service as a real process over loopback gRPC."""

from __future__ import annotations

import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from chatstack.catalog import TOKENIZER
from chatstack.core.process import ManagedProcess, free_port, start_grpc_service, wait_until
from chatstack.v1 import common_pb2, tokenizer_pb2, tokenizer_pb2_grpc

pytestmark = pytest.mark.integration

SERVICE = TOKENIZER.proto_service
LIMIT_FLAGS = ("--max-batch-items", "64", "--max-text-chars", "4096", "--max-messages", "8")


@pytest.fixture(scope="module")
def tokenizer_server(lm_dir: Path, log_dir: Path) -> Iterator[tuple[str, int, ManagedProcess]]:
    port, metrics_port = free_port(), free_port()
    proc = start_grpc_service("tokenizer", "tokenizer", port, metrics_port, log_dir,
                              ("--model-dir", str(lm_dir), *LIMIT_FLAGS), health_service=SERVICE)
    yield f"127.0.0.1:{port}", metrics_port, proc
    assert proc.stop() == 0, proc.tail()


@pytest.fixture(scope="module")
def channel(tokenizer_server: tuple[str, int, ManagedProcess]) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(tokenizer_server[0]) as ch:
        yield ch


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> tokenizer_pb2_grpc.TokenizerServiceStub:
    return tokenizer_pb2_grpc.TokenizerServiceStub(channel)


@pytest.fixture(scope="module")
def reference(lm_dir: Path) -> Tokenizer:
    return Tokenizer.from_file(str(lm_dir / "tokenizer.json"))


def test_reflection_lists_the_tokenizer_and_health_services(channel: grpc.Channel) -> None:
    services = ProtoReflectionDescriptorDatabase(channel).get_services()
    assert SERVICE in services and "grpc.health.v1.Health" in services


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.text(max_size=200), min_size=1, max_size=8), special=st.booleans())
def test_results_equal_in_process_tokenizers_on_random_unicode(
    stub: tokenizer_pb2_grpc.TokenizerServiceStub, reference: Tokenizer,
    texts: list[str], special: bool,
) -> None:
    want = reference.encode_batch(texts, add_special_tokens=special)
    got = stub.Encode(tokenizer_pb2.EncodeRequest(
        texts=texts, add_special_tokens=special, return_offsets=True)).encodings
    assert [list(e.ids) for e in got] == [w.ids for w in want]
    assert [[(o.start, o.end) for o in e.offsets] for e in got] == [list(w.offsets) for w in want]
    counts = stub.CountTokens(tokenizer_pb2.CountTokensRequest(texts=texts, add_special_tokens=special))
    assert list(counts.counts) == [len(w.ids) for w in want]
    assert counts.total_tokens == sum(len(w.ids) for w in want)
    for skip in (True, False):
        decoded = stub.Decode(tokenizer_pb2.DecodeRequest(
            sequences=[common_pb2.TokenIds(ids=w.ids) for w in want], skip_special_tokens=skip))
        assert list(decoded.texts) == reference.decode_batch(
            [w.ids for w in want], skip_special_tokens=skip)


def test_chat_template_prompt_and_ids_agree(stub: tokenizer_pb2_grpc.TokenizerServiceStub,
                                            reference: Tokenizer) -> None:
    reply = stub.ApplyChatTemplate(tokenizer_pb2.ApplyChatTemplateRequest(
        messages=[common_pb2.ChatMessage(role=common_pb2.ROLE_SYSTEM, content="be brief"),
                  common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content="ka to")],
        add_generation_prompt=True, count_messages=[1, 0]))
    assert reply.prompt == "<s><|system|>\nbe brief<|end|>\n<|user|>\nka to<|end|>\n<|assistant|>\n"
    assert list(reply.token_ids) == reference.encode(reply.prompt, add_special_tokens=False).ids
    assert list(reply.message_token_counts) == [
        len(reference.encode(text, add_special_tokens=False).ids) for text in ("ka to", "be brief")]


def _msg(role: int, content: str = "x") -> common_pb2.ChatMessage:
    return common_pb2.ChatMessage(role=role, content=content)


@pytest.mark.parametrize(
    ("method", "request_", "needle"),
    [
        ("Encode", tokenizer_pb2.EncodeRequest(), "texts: empty batch"),
        ("Encode", tokenizer_pb2.EncodeRequest(texts=["a"] * 65), "65 items exceed the limit of 64"),
        ("Encode", tokenizer_pb2.EncodeRequest(texts=["ok", "y" * 4097]), "texts[1]: 4097 characters"),
        ("CountTokens", tokenizer_pb2.CountTokensRequest(), "texts: empty batch"),
        ("Decode", tokenizer_pb2.DecodeRequest(), "sequences: empty batch"),
        ("Decode", tokenizer_pb2.DecodeRequest(sequences=[common_pb2.TokenIds(ids=[1, 2]),
                                                          common_pb2.TokenIds(ids=[3, 70000])]),
         "sequences[1].ids[1]: id 70000 is outside the vocabulary [0, 2048)"),
        ("ApplyChatTemplate", tokenizer_pb2.ApplyChatTemplateRequest(
            messages=[_msg(common_pb2.ROLE_USER), _msg(common_pb2.ROLE_UNSPECIFIED)]),
         "messages[1].role: unspecified"),
        ("ApplyChatTemplate", tokenizer_pb2.ApplyChatTemplateRequest(
            messages=[_msg(common_pb2.ROLE_USER), _msg(42)]), "messages[1].role"),
        ("ApplyChatTemplate", tokenizer_pb2.ApplyChatTemplateRequest(), "messages: empty"),
        ("ApplyChatTemplate", tokenizer_pb2.ApplyChatTemplateRequest(
            messages=[_msg(common_pb2.ROLE_USER)] * 9), "messages: 9 exceed the limit of 8"),
    ],
)
def test_bad_input_is_invalid_argument_naming_the_item(
    stub: tokenizer_pb2_grpc.TokenizerServiceStub, method: str, request_: object, needle: str
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        getattr(stub, method)(request_, timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in err.value.details()


def test_metrics_have_the_per_rpc_histogram_and_promtool_is_clean(
    stub: tokenizer_pb2_grpc.TokenizerServiceStub, tokenizer_server: tuple[str, int, ManagedProcess]
) -> None:
    stub.GetInfo(tokenizer_pb2.GetInfoRequest())
    body = urllib.request.urlopen(f"http://127.0.0.1:{tokenizer_server[1]}/metrics").read()
    text = body.decode()
    assert 'chatstack_rpc_duration_seconds_bucket{le="0.001",method="TokenizerService/GetInfo"' in text
    assert 'chatstack_rpc_requests_total{code="OK",method="TokenizerService/GetInfo"' in text
    check = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
    assert check.returncode == 0 and check.stdout == b"" and check.stderr == b"", check


def test_request_id_from_metadata_reaches_the_logs(
    stub: tokenizer_pb2_grpc.TokenizerServiceStub, tokenizer_server: tuple[str, int, ManagedProcess]
) -> None:
    with pytest.raises(grpc.RpcError):
        stub.Encode(tokenizer_pb2.EncodeRequest(), metadata=(("x-request-id", "trace-me-123"),))
    # The service logs the call as it ends, so the line can land just after the client has its status.
    log = tokenizer_server[2].log_path
    wait_until(lambda: "[trace-me-123]" in log.read_text(), 10, "the request id in the service's log")


def test_sigterm_goes_not_serving_then_exits_zero(lm_dir: Path, log_dir: Path) -> None:
    port = free_port()
    proc = start_grpc_service("tokenizer-sigterm", "tokenizer", port, free_port(), log_dir,
                              ("--model-dir", str(lm_dir)), health_service=SERVICE)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        watch = health_pb2_grpc.HealthStub(ch).Watch(
            health_pb2.HealthCheckRequest(service=SERVICE), timeout=30)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        proc.signal(signal.SIGTERM)
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert proc.proc is not None and proc.proc.wait(30) == 0
