"""The Ray Serve runtime on a local Ray instance: the same services, autoscaled, over Serve's
gRPC proxy — with real Redis and real vLLM engines on the tiny models."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import openai
import pytest

from chatstack.catalog import DEV_MODEL_NAME
from chatstack.client import ChatClient
from chatstack.core.process import free_port, wait_until
from chatstack.core.redis_process import RedisProcess
from chatstack.gateway.auth import hash_key
from chatstack.preferences.export import ExportSettings, read_events
from chatstack.serve.local import local_app_args
from chatstack.v1 import (
    generation_pb2,
    generation_pb2_grpc,
    preference_pb2,
    tokenizer_pb2,
    tokenizer_pb2_grpc,
)

pytestmark = pytest.mark.integration
KEY = "serve-test-key"


@dataclass(frozen=True)
class Proxies:
    """Ports of Serve's two proxies on loopback."""

    grpc: int
    http: int


@pytest.fixture(scope="module")
def serve_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxies]:
    """Ray (8 logical CPUs on this 2-core machine) with Serve's gRPC and HTTP proxies."""
    ray = pytest.importorskip("ray")
    from ray import serve

    from chatstack.serve.apps import GRPC_SERVICER_FUNCTIONS
    from chatstack.serve.ray_head import RayHead

    # The head runs in its own process: this (threaded) pytest process only connects (see ray_head).
    tmp = tmp_path_factory.mktemp("ray")
    head = RayHead(tmp / "ray", num_cpus=8, log_path=tmp / "ray-head.log").start()
    try:
        head.connect("chatstack-test")
        proxies = Proxies(grpc=free_port(), http=free_port())
        serve.start(http_options={"host": "127.0.0.1", "port": proxies.http},
                    grpc_options={"port": proxies.grpc, "grpc_servicer_functions": GRPC_SERVICER_FUNCTIONS})
        yield proxies
        serve.shutdown()
    finally:
        ray.shutdown()
        head.stop()


@pytest.fixture(scope="module")
def serve_stack(serve_instance: Proxies, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[Proxies]:
    """Every chatstack application deployed on Serve (apps deploy in parallel); the gateway at
    route prefix / (as in deploy/ray/serve-config.yaml), so its HTTP API is at /v1."""
    from ray import serve

    from chatstack.serve import apps

    redis = RedisProcess(free_port(), tmp_path_factory.mktemp("serve-redis")).start()
    small = {"num_cpus": 0.1, "num_gpus": 0}
    one = {"min_replicas": 1, "max_replicas": 1}
    args = local_app_args(models_dir, redis.url, {"api_keys": f"alice:{hash_key(KEY)}"})
    args["gateway"]["capture_preferences"] = True
    try:
        serve.run_many([  # deploy all five at once; the engines load in parallel
            serve.RunTarget(apps.DEPLOYMENTS[name].options(ray_actor_options=small, autoscaling_config=one)
                            .bind(app_args), name=name, route_prefix="/" if name == "gateway" else f"/{name}")
            for name, app_args in args.items()], wait_for_applications_running=False)
        def all_running() -> bool:
            apps_now = serve.status().applications
            statuses = {name: apps_now[name].status for name in args if name in apps_now}
            if any(s in ("DEPLOY_FAILED", "UNHEALTHY") for s in statuses.values()):
                raise RuntimeError(f"Serve applications failed: {serve.status()}")
            return len(statuses) == len(args) and all(s == "RUNNING" for s in statuses.values())

        wait_until(all_running, 270, "every Serve application RUNNING", interval=0.5)  # < pytest timeout
        yield serve_instance
        for name in args:
            serve.delete(name)
    finally:
        redis.stop()  # also when a deployment failed


def test_chat_end_to_end_through_serve(serve_stack: Proxies) -> None:
    with ChatClient(f"127.0.0.1:{serve_stack.grpc}", KEY, timeout=120, application="gateway") as client:
        first = client.chat("ka to ri", system_prompt="be terse", max_tokens=8, echo_prompt=True)
        assert first.created and first.text and first.reward_score != 0.0
        second = client.chat("sa mo", session_id=first.session_id, max_tokens=8, best_of=2, echo_prompt=True)
        assert f"<|assistant|>\n{first.text}<|end|>" in second.prompt
        assert len(second.candidates) == 2 and second.text in {c.text for c in second.candidates}
        _, turns = client.history(first.session_id)
        assert [t.content for t in turns] == ["ka to ri", first.text, "sa mo", second.text]
        with pytest.raises(grpc.RpcError) as err:
            client.chat("x", session_id="missing", max_tokens=4)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND  # status codes cross the proxy
    with ChatClient(f"127.0.0.1:{serve_stack.grpc}", "wrong", application="gateway") as intruder, \
            pytest.raises(grpc.RpcError) as err:
        intruder.chat("x", max_tokens=4)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_the_openai_api_through_serves_http_proxy(serve_stack: Proxies) -> None:
    """The gateway deployment is also Serve's HTTP ingress: the same OpenAI-compatible app as the
    standalone gateway, driven by the official SDK through Serve's HTTP proxy."""
    base_url = f"http://127.0.0.1:{serve_stack.http}/v1"
    with openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=120) as client:
        assert [m.id for m in client.models.list().data] == [DEV_MODEL_NAME]
        chunks = list(client.chat.completions.create(
            model=DEV_MODEL_NAME, messages=[{"role": "user", "content": "ka to ri"}], max_tokens=8, seed=3,
            stream=True, stream_options={"include_usage": True}))
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert streamed and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0

        first = client.responses.create(model=DEV_MODEL_NAME, input="ka to ri", max_output_tokens=8,
                                        instructions="be terse")
        assert first.conversation is not None and first.output_text
        second = client.responses.create(model=DEV_MODEL_NAME, input="sa mo", previous_response_id=first.id,
                                         max_output_tokens=8)
        conversation = first.conversation.id

        def texts() -> list[str]:
            items = client.conversations.items.list(conversation, order="asc", limit=100)
            return [item.content[0].text for item in items]  # type: ignore[union-attr]

        assert texts() == ["ka to ri", first.output_text, "sa mo", second.output_text]
        before = texts()
        # A client that goes away mid-stream: Serve cancels the replica's request, the gateway
        # aborts the generation and rolls the exchange back.
        stream = client.responses.create(model=DEV_MODEL_NAME, input="a long one", conversation=conversation,
                                         max_output_tokens=1000, temperature=1.0, stream=True)
        for _, event in zip(range(6), stream, strict=False):
            assert event.type != "error"
        stream.close()
        wait_until(lambda: texts() == before, 60, "the cancelled exchange rolled back", interval=0.2)

        with pytest.raises(openai.NotFoundError):
            client.conversations.retrieve("missing")
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model=DEV_MODEL_NAME, messages=[], max_tokens=4)
    with openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0) as intruder, \
            pytest.raises(openai.AuthenticationError):
        intruder.models.list()


def test_preferences_are_captured_and_exported_through_serve(serve_stack: Proxies) -> None:
    """Feedback and a best-of event written through the handles, read back by the export through
    Serve's gRPC proxy (`application: session`)."""
    with ChatClient(f"127.0.0.1:{serve_stack.grpc}", KEY, timeout=120, application="gateway") as client:
        answer = client.chat("ka to", max_tokens=8, best_of=2, temperature=1.0)
        client.feedback(answer.session_id, answer.assistant_turn_id, preference_pb2.RATING_UP, reason="ok")
    settings = ExportSettings(f"127.0.0.1:{serve_stack.grpc}", Path("-"), owner="alice", application="session")

    def kinds() -> set[int]:
        return {e.kind for e in read_events(settings) if e.session_id == answer.session_id}

    wait_until(lambda: kinds() == {preference_pb2.PREFERENCE_KIND_BEST_OF, preference_pb2.PREFERENCE_KIND_FEEDBACK},
               60, "the best-of and feedback events", interval=0.2)


def replicas(app: str, deployment: str) -> int:
    from ray import serve

    status = serve.status().applications[app].deployments[deployment]
    return int(status.replica_states.get("RUNNING", 0))


def test_a_burst_scales_the_deployment_up_and_it_returns_to_one(serve_instance: Proxies, models_dir: Path) -> None:
    from ray import serve

    from chatstack.serve import apps

    autoscaling = {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 1,
                   "upscale_delay_s": 0.5, "downscale_delay_s": 3, "metrics_interval_s": 0.5,
                   "look_back_period_s": 2}
    serve.run(apps.TokenizerDeployment.options(ray_actor_options={"num_cpus": 0.1}, autoscaling_config=autoscaling)
              .bind({"model_dir": str(models_dir / "lm")}), name="autoscale", route_prefix="/autoscale")
    assert replicas("autoscale", "TokenizerDeployment") == 1
    texts = ["ka to ri sa mo lu pe di " * 400] * 32  # ~100 ms per call: a standing queue
    stop = threading.Event()

    def hammer() -> None:
        with grpc.insecure_channel(f"127.0.0.1:{serve_instance.grpc}") as channel:
            stub = tokenizer_pb2_grpc.TokenizerServiceStub(channel)
            while not stop.is_set():
                stub.Encode(tokenizer_pb2.EncodeRequest(texts=texts), metadata=(("application", "autoscale"),),
                            timeout=30)

    workers = [threading.Thread(target=hammer) for _ in range(12)]
    for w in workers:
        w.start()
    try:
        wait_until(lambda: replicas("autoscale", "TokenizerDeployment") >= 2, 90,
                   "the burst to scale the deployment to 2+ replicas", interval=0.25)
    finally:
        stop.set()
        for w in workers:
            w.join(60)
    wait_until(lambda: replicas("autoscale", "TokenizerDeployment") == 1, 120,
               "the deployment to scale back to 1 replica", interval=0.5)
    serve.delete("autoscale")


def test_generation_calls_of_one_session_go_to_one_replica_from_the_proxy_and_from_a_replica(
        serve_instance: Proxies) -> None:
    """The generation deployment's router (chatstack.serve.session_router) on real Serve, with two
    stand-in replicas (no vLLM: GetModelInfo answers with the replica's id). A session's calls
    stay on one replica whether they come through the gRPC proxy (`session_id` metadata) or from
    another replica's handle (`options(session_id=...)`, what HandleDownstream does), and both
    callers' routers send a session to the same replica."""
    from ray import serve

    from chatstack.serve.apps import SESSION_AFFINITY_ROUTING

    @serve.deployment(num_replicas=2, ray_actor_options={"num_cpus": 0.1},
                      request_router_config=SESSION_AFFINITY_ROUTING)
    class WhichReplica:
        async def GetModelInfo(self, request: generation_pb2.GetModelInfoRequest, grpc_context: object = None
                               ) -> generation_pb2.GetModelInfoResponse:
            return generation_pb2.GetModelInfoResponse(model=serve.get_replica_context().replica_id.unique_id)

    @serve.deployment(ray_actor_options={"num_cpus": 0.1})
    class Caller:  # the gateway's situation: concurrent handle calls while serving one request
        async def fan_out(self, sessions: list[str]) -> list[str]:
            target = serve.get_app_handle("affinity")
            replies = await asyncio.gather(*(
                target.options(method_name="GetModelInfo", session_id=s).remote(generation_pb2.GetModelInfoRequest())
                for s in sessions))
            return [r.model for r in replies]

    serve.run(WhichReplica.bind(), name="affinity", route_prefix="/affinity")
    serve.run(Caller.bind(), name="affinity-caller", route_prefix="/affinity-caller")
    try:
        sessions = [f"session-{i}" for i in range(16)]
        with grpc.insecure_channel(f"127.0.0.1:{serve_instance.grpc}") as channel:
            stub = generation_pb2_grpc.GenerationServiceStub(channel)

            def replica_of(session: str) -> str:
                return str(stub.GetModelInfo(generation_pb2.GetModelInfoRequest(), timeout=30, metadata=(
                    ("application", "affinity"), ("session_id", session))).model)

            homes = {s: replica_of(s) for s in sessions}
            assert all(replica_of(s) == homes[s] for s in sessions for _ in range(2))
        assert len(set(homes.values())) == 2  # sessions spread over both replicas
        one = next(s for s in sessions if homes[s] != homes[sessions[0]])
        caller = serve.get_app_handle("affinity-caller")
        picked = caller.fan_out.remote([sessions[0], one, sessions[0]]).result(timeout_s=60)
        assert picked == [homes[sessions[0]], homes[one], homes[sessions[0]]]
    finally:
        serve.delete("affinity-caller")
        serve.delete("affinity")
