"""`make run-ray`: the whole stack on a local Ray instance, from deploy/ray/serve-config.yaml.

The Serve config is the one clusters `serve deploy` (and the Helm chart's RayService carries);
for a laptop its args are localized (tiny models, a local Redis, the dev API key) and every
application is deployed with the config's deployment options (autoscaling, resources).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import yaml

from chatstack.core.redis_process import RedisProcess
from chatstack.local_stack import engine_placement

REDIS_PORT = 6391


def load_serve_config(path: str | Path) -> dict[str, Any]:
    """The Serve config document."""
    return dict(yaml.safe_load(Path(path).read_text()))


def local_app_args(models: Path, redis_url: str, proxy_port: int,
                   gateway_keys: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Each application's args on one machine: tiny models, a local Redis, small KV caches, the
    two engines on disjoint cores; `gateway_keys` is {"api_keys": ...} or {"api_keys_file": ...}."""
    return {
        "tokenizer": {"model_dir": str(models / "lm")},
        "session": {"redis_url": redis_url},
        "generation": {"model": str(models / "lm"), "cpu_kvcache_space_gib": 1, **engine_placement(0)},
        "reward": {"model": str(models / "reward"), "dtype": "float32", "cpu_kvcache_space_gib": 1,
                   **engine_placement(1)},
        "gateway": {**gateway_keys, "serve_proxy_address": f"127.0.0.1:{proxy_port}"},
    }


def localize(config: dict[str, Any], models: Path, redis_url: str, keys_file: Path) -> dict[str, Any]:
    """Args for a laptop: tiny models, local Redis, local keys file, small KV caches."""
    local = local_app_args(models, redis_url, config["grpc_options"]["port"],
                           {"api_keys_file": str(keys_file)})
    for app in config["applications"]:
        app["args"] = {**app.get("args", {}), **local.get(app["name"], {})}
        for deployment in app.get("deployments", []):
            deployment.setdefault("ray_actor_options", {})["num_cpus"] = 0.1  # 2-core laptops
    return config


def run_ray_stack(config_path: str, models_dir: str, run_dir: str) -> int:
    """Start Ray + Serve + Redis, deploy every application, wait for Ctrl-C."""
    import ray
    from ray import serve

    from chatstack.local_stack import dev_api_key
    from chatstack.serve import apps

    run, models = Path(run_dir).resolve(), Path(models_dir).resolve()
    redis = RedisProcess(REDIS_PORT, run / "redis-ray").start()
    key, keys_file = dev_api_key(run)
    config = localize(load_serve_config(config_path), models, redis.url, keys_file)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    try:
        ray.init(num_cpus=8, include_dashboard=False, namespace="chatstack")
        serve.start(http_options=config["http_options"] | {"host": "127.0.0.1"},
                    grpc_options=config["grpc_options"])
        targets = []
        for app in config["applications"]:
            options = {k: v for d in app.get("deployments", []) for k, v in d.items() if k != "name"}
            targets.append(serve.RunTarget(apps.DEPLOYMENTS[app["name"]].options(**options).bind(app["args"]),
                                           name=app["name"], route_prefix=app["route_prefix"]))
        names = ", ".join(a["name"] for a in config["applications"])
        print(f"deploying {names} on Ray Serve ...", flush=True)
        serve.run_many(targets)
        port = config["grpc_options"]["port"]
        print(f"chatstack on Ray Serve: gRPC proxy 127.0.0.1:{port} (metadata application=<service>)\n"
              f"  chat: .venv/bin/chatstack chat --target 127.0.0.1:{port} --application gateway "
              f"--api-key $(cat {run / 'dev-api-key'})\n  dev API key: {key}\nCtrl-C stops all", flush=True)
        while not stop["now"]:
            time.sleep(0.5)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("stopping ...", flush=True)
        try:
            serve.shutdown()
            ray.shutdown()
        finally:
            redis.stop()
