"""The Ray Serve runtime on a local Ray instance: the same services, autoscaled, over Serve's
gRPC proxy — with real Redis and real vLLM engines on the tiny models."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from chatstack.client import ChatClient
from chatstack.core.process import free_port, wait_until
from chatstack.core.redis_process import RedisProcess
from chatstack.gateway.auth import hash_key
from chatstack.serve.local import local_app_args
from chatstack.v1 import generation_pb2, generation_pb2_grpc, tokenizer_pb2, tokenizer_pb2_grpc

pytestmark = pytest.mark.integration
KEY = "serve-test-key"


@pytest.fixture(scope="module")
def serve_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """Ray (8 logical CPUs on this 2-core machine) with Serve's gRPC proxy; yields its port."""
    ray = pytest.importorskip("ray")
    from ray import serve

    from chatstack.serve.apps import GRPC_SERVICER_FUNCTIONS
    from chatstack.serve.ray_head import RayHead

    # The head runs in its own process: this (threaded) pytest process only connects (see ray_head).
    tmp = tmp_path_factory.mktemp("ray")
    head = RayHead(tmp / "ray", num_cpus=8, log_path=tmp / "ray-head.log").start()
    try:
        head.connect("chatstack-test")
        grpc_port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": free_port()},
                    grpc_options={"port": grpc_port, "grpc_servicer_functions": GRPC_SERVICER_FUNCTIONS})
        yield grpc_port
        serve.shutdown()
    finally:
        ray.shutdown()
        head.stop()


@pytest.fixture(scope="module")
def serve_stack(serve_instance: int, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[int]:
    """Every chatstack application deployed on Serve (apps deploy in parallel)."""
    from ray import serve

    from chatstack.serve import apps

    redis = RedisProcess(free_port(), tmp_path_factory.mktemp("serve-redis")).start()
    small = {"num_cpus": 0.1, "num_gpus": 0}
    one = {"min_replicas": 1, "max_replicas": 1}
    args = local_app_args(models_dir, redis.url, {"api_keys": f"alice:{hash_key(KEY)}"})
    try:
        serve.run_many([  # deploy all five at once; the engines load in parallel
            serve.RunTarget(apps.DEPLOYMENTS[name].options(ray_actor_options=small, autoscaling_config=one)
                            .bind(app_args), name=name, route_prefix=f"/{name}")
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


def test_chat_end_to_end_through_serve(serve_stack: int) -> None:
    with ChatClient(f"127.0.0.1:{serve_stack}", KEY, timeout=120, application="gateway") as client:
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
    with ChatClient(f"127.0.0.1:{serve_stack}", "wrong", application="gateway") as intruder, \
            pytest.raises(grpc.RpcError) as err:
        intruder.chat("x", max_tokens=4)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def replicas(app: str, deployment: str) -> int:
    from ray import serve

    status = serve.status().applications[app].deployments[deployment]
    return int(status.replica_states.get("RUNNING", 0))


def test_a_burst_scales_the_deployment_up_and_it_returns_to_one(serve_instance: int, models_dir: Path) -> None:
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
        with grpc.insecure_channel(f"127.0.0.1:{serve_instance}") as channel:
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
        serve_instance: int) -> None:
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
        with grpc.insecure_channel(f"127.0.0.1:{serve_instance}") as channel:
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
