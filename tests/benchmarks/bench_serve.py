"""Ray Serve vs the standalone runtime: the Chat path under the same load, and autoscaling reaction.

1. The whole stack standalone (`chatstack.local_stack` processes), then the whole stack on a local
   Ray Serve (one replica per service), each driven by the same closed loop: C concurrent clients,
   each chatting (new session, max_tokens T) for S seconds. Prints Chat throughput and p50/p99
   latency of both and the ratios.
2. A load step on an autoscaled tokenizer deployment (min 1, max 3 replicas): the time from the
   step to a second replica RUNNING, i.e. taking requests (Serve routes only to RUNNING replicas).

Run: `python -m tests.benchmarks.bench_serve --models-dir .models/tiny`.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from chatstack.catalog import TINY_ENGINE_FLAGS
from chatstack.client import ChatClient
from chatstack.core.process import ManagedProcess, free_port, start_grpc_service, wait_until
from chatstack.core.redis_process import RedisProcess
from chatstack.gateway.auth import hash_key
from chatstack.local_stack import engine_placement_flags
from chatstack.serve.local import local_app_args
from chatstack.v1 import tokenizer_pb2, tokenizer_pb2_grpc
from tests.benchmarks.measure import machine_cpu, report_cpu

KEY = "bench-serve-key"


def closed_loop(make_client: Callable[[], ChatClient], clients: int, seconds: float,
                max_tokens: int) -> list[float]:
    """Latencies of Chat calls made by `clients` threads for `seconds`."""
    latencies: list[float] = []
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def worker() -> None:
        with make_client() as client:
            while time.monotonic() < end:
                t = time.perf_counter()
                client.chat("ka to ri sa mo", max_tokens=max_tokens, temperature=1.0)
                with lock:
                    latencies.append(time.perf_counter() - t)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def standalone(models: Path, tmp: Path, clients: int, seconds: float, max_tokens: int) -> list[float]:
    redis = RedisProcess(free_port(), tmp / "redis").start()
    procs: list[ManagedProcess] = []
    try:
        ports = {name: free_port() for name in ("tokenizer", "session", "generation", "reward", "gateway")}
        flags = {
            "tokenizer": ("--model-dir", str(models / "lm")),
            "session": ("--redis-url", redis.url),
            "generation": ("--model", str(models / "lm"), *TINY_ENGINE_FLAGS,
                           *engine_placement_flags(0)),
            "reward": ("--model", str(models / "reward"), *TINY_ENGINE_FLAGS,
                       *engine_placement_flags(1)),
            "gateway": ("--api-keys", f"bench:{hash_key(KEY)}",
                        *[arg for s in ("tokenizer", "session", "generation", "reward")
                          for arg in (f"--{s}-address", f"127.0.0.1:{ports[s]}")]),
        }
        for name in ("tokenizer", "session", "generation", "reward", "gateway"):
            procs.append(start_grpc_service(f"{name}-bench", name, ports[name], free_port(), tmp,
                                            (*flags[name], "--log-level", "WARNING"), timeout=300))
        target = f"127.0.0.1:{ports['gateway']}"
        closed_loop(lambda: ChatClient(target, KEY), 1, 3, max_tokens)  # warm-up
        before = machine_cpu()
        latencies = closed_loop(lambda: ChatClient(target, KEY), clients, seconds, max_tokens)
        report_cpu(before, machine_cpu(), len(latencies), "standalone")
        return latencies
    finally:
        for p in reversed(procs):
            p.stop()
        redis.stop()


def on_serve(models: Path, tmp: Path, clients: int, seconds: float,
             max_tokens: int) -> tuple[list[float], dict[str, float]]:
    import ray
    from ray import serve

    from chatstack.serve import apps
    from chatstack.serve.ray_head import RayHead

    redis = RedisProcess(free_port(), tmp / "redis-serve").start()
    head = RayHead(tmp / "ray", num_cpus=8, log_path=tmp / "ray-head.log").start()
    port = free_port()
    try:
        head.connect("chatstack-bench")
        serve.start(http_options={"host": "127.0.0.1", "port": free_port()},
                    grpc_options={"port": port, "grpc_servicer_functions": apps.GRPC_SERVICER_FUNCTIONS})
        one = {"min_replicas": 1, "max_replicas": 1}
        small = {"num_cpus": 0.1}
        args = local_app_args(models, redis.url, {"api_keys": f"bench:{hash_key(KEY)}"})
        serve.run_many([serve.RunTarget(apps.DEPLOYMENTS[n].options(autoscaling_config=one, ray_actor_options=small)
                                        .bind(a), name=n, route_prefix=f"/{n}") for n, a in args.items()])
        target = f"127.0.0.1:{port}"

        def client() -> ChatClient:
            return ChatClient(target, KEY, application="gateway")

        closed_loop(client, 1, 3, max_tokens)  # warm-up
        before = machine_cpu()
        latencies = closed_loop(client, clients, seconds, max_tokens)
        report_cpu(before, machine_cpu(), len(latencies), "Ray Serve")
        for name in args:
            serve.delete(name)
        scaling = autoscale_step(models, port)
        return latencies, scaling
    finally:
        serve.shutdown()
        ray.shutdown()
        head.stop()
        redis.stop()


def autoscale_step(models: Path, port: int) -> dict[str, float]:
    """Seconds from a load step to a 2nd replica RUNNING (Serve routes to RUNNING replicas only)."""
    from ray import serve

    from chatstack.serve import apps

    cfg = {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 1, "upscale_delay_s": 0.5,
           "downscale_delay_s": 30, "metrics_interval_s": 0.5, "look_back_period_s": 2}
    serve.run(apps.TokenizerDeployment.options(autoscaling_config=cfg, ray_actor_options={"num_cpus": 0.1})
              .bind({"model_dir": str(models / "lm")}), name="step", route_prefix="/step")
    texts = ["ka to ri sa mo lu pe di " * 400] * 32
    stop = threading.Event()

    def hammer() -> None:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = tokenizer_pb2_grpc.TokenizerServiceStub(channel)
            while not stop.is_set():
                stub.Encode(tokenizer_pb2.EncodeRequest(texts=texts), metadata=(("application", "step"),),
                            timeout=30)

    def running() -> int:
        return int(serve.status().applications["step"].deployments["TokenizerDeployment"]
                   .replica_states.get("RUNNING", 0))

    step = time.monotonic()
    workers = [threading.Thread(target=hammer) for _ in range(12)]
    for w in workers:
        w.start()
    result = {"to_running": float("nan")}
    try:
        with contextlib.suppress(TimeoutError):  # never scaled up: reported as nan
            wait_until(lambda: running() >= 2, 120, "a second running replica", interval=0.2)
            result["to_running"] = time.monotonic() - step
    finally:
        stop.set()
        for w in workers:
            w.join(60)
        serve.delete("step")
    return result


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models-dir", default=".models/tiny")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    models, tmp = Path(args.models_dir).resolve(), Path(tempfile.mkdtemp())
    base = standalone(models, tmp, args.clients, args.seconds, args.max_tokens)
    ray_lat, scaling = on_serve(models, tmp, args.clients, args.seconds, args.max_tokens)
    print(f"Chat closed loop: {args.clients} clients x {args.seconds:.0f} s, max_tokens {args.max_tokens}")
    for name, lat in (("standalone", base), ("Ray Serve", ray_lat)):
        print(f"  {name:<11}: {len(lat) / args.seconds:6.2f} chats/s  p50 {statistics.median(lat) * 1e3:7.1f} ms"
              f"  p99 {pct(lat, 0.99):7.1f} ms")
    print(f"  ratio Ray Serve / standalone: throughput {len(ray_lat) / len(base):.2f}, "
          f"p50 {statistics.median(ray_lat) / statistics.median(base):.2f}, p99 {pct(ray_lat, .99) / pct(base, .99):.2f}")
    print(f"autoscaling: load step -> 2nd tokenizer replica RUNNING (serving) in {scaling['to_running']:.1f} s")


if __name__ == "__main__":
    main()
