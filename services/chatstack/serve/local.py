"""`make run-ray`: the whole stack on a local Ray instance, from deploy/ray/serve-config.yaml.

The Serve config is the one clusters `serve deploy` (and the Helm chart's RayService carries);
for a laptop its args are localized (tiny models, a local Redis, the dev API key) and every
application is deployed with the config's deployment options (autoscaling, resources).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from chatstack.catalog import DEV_MODEL_NAME, DEV_RAY_REDIS_PORT, DEV_STACK_GROUP_NICE, TINY_ENGINE_SETTINGS
from chatstack.core.redis_process import RedisProcess
from chatstack.core.supervisor import Restarter, redis_child, wait_for_ports
from chatstack.local_stack import StopSignals, announced_group, dev_api_key, engine_placement, say


def load_serve_config(path: str | Path) -> dict[str, Any]:
    """The Serve config document."""
    return dict(yaml.safe_load(Path(path).read_text()))


def local_app_args(models: Path, redis_url: str, gateway_keys: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Each application's args on one machine: tiny models, a local Redis, small KV caches, the
    two engines on disjoint cores; `gateway_keys` is {"api_keys": ...} or {"api_keys_file": ...}."""
    return {
        "tokenizer": {"model_dir": str(models / "lm")},
        "session": {"redis_url": redis_url},
        "generation": {"model": str(models / "lm"), "served_model_name": DEV_MODEL_NAME,
                       **TINY_ENGINE_SETTINGS, **engine_placement(0)},
        "reward": {"model": str(models / "reward"), **TINY_ENGINE_SETTINGS, **engine_placement(1)},
        "gateway": dict(gateway_keys),
    }


def localize(config: dict[str, Any], models: Path, redis_url: str, keys_file: Path) -> dict[str, Any]:
    """Args for a laptop: tiny models, local Redis, local keys file, small KV caches."""
    local = local_app_args(models, redis_url, {"api_keys_file": str(keys_file)})
    for app in config["applications"]:
        app["args"] = {**app.get("args", {}), **local.get(app["name"], {})}
        for deployment in app.get("deployments", []):
            deployment.setdefault("ray_actor_options", {})["num_cpus"] = 0.1  # 2-core laptops
    return config


def run_ray_stack(config_path: str, models_dir: str, run_dir: str,
                  group_nice: int = DEV_STACK_GROUP_NICE) -> int:
    """Start Redis + Ray + Serve, deploy every application, wait for Ctrl-C (or SIGTERM, or the
    terminal hanging up), then stop Serve, Ray and Redis, whatever state stdout is in. Ray's
    processes, the replicas' engines among them, stay in this session: its scheduling group runs
    at `group_nice` meanwhile (`chatstack.core.sched_group`)."""
    with announced_group(group_nice):
        return _run_ray_stack(config_path, models_dir, run_dir)


def _run_ray_stack(config_path: str, models_dir: str, run_dir: str) -> int:
    import ray

    run, models = Path(run_dir).resolve(), Path(models_dir).resolve()
    stop = StopSignals()
    stop.install()
    redis = RedisProcess(DEV_RAY_REDIS_PORT, run / "redis-ray")
    try:
        key, keys_file = dev_api_key(run)
        config = localize(load_serve_config(config_path), models, redis.url, keys_file)
        wait_for_ports({DEV_RAY_REDIS_PORT: "redis", config["grpc_options"]["port"]: "Serve gRPC proxy",
                        config["http_options"]["port"]: "Serve HTTP proxy"}, 30.0, say)
        redis.start()
        ray.init(num_cpus=8, include_dashboard=False, namespace="chatstack")
        stop.install()  # ray.init made SIGTERM raise SystemExit anywhere, the cleanup included
        _deploy(config)
        stop.starting = False
        port, http_port = config["grpc_options"]["port"], config["http_options"]["port"]
        say(f"chatstack on Ray Serve: gRPC proxy 127.0.0.1:{port} (metadata application=<service>)\n"
            f"  chat: .venv/bin/chatstack chat --target 127.0.0.1:{port} --application gateway "
            f"--api-key $(cat {run / 'dev-api-key'})\n"
            f"  OpenAI-compatible API: http://127.0.0.1:{http_port}/v1 (model {DEV_MODEL_NAME!r})\n"
            f"  dev API key: {key}\nCtrl-C stops all")
        # Serve restarts its own replicas; Redis is this process's child, watched like make run's.
        restarter = Restarter([redis_child(redis)], lambda line: say(line, err=True))
        while not stop.requested:
            restarter.tick()
            time.sleep(0.5)
        return 0
    except KeyboardInterrupt:
        return 0
    except RuntimeError as exc:  # a port taken
        say(f"chatstack did not start: {exc}", err=True)
        return 1
    finally:
        stop.starting = False
        say("stopping ...")
        shut_down(redis)


def _deploy(config: dict[str, Any]) -> None:
    """Start Serve with the config's proxies and run every application in it."""
    from ray import serve

    from chatstack.serve import apps

    serve.start(http_options=config["http_options"] | {"host": "127.0.0.1"},
                grpc_options=config["grpc_options"])
    targets = []
    for app in config["applications"]:
        options = {k: v for d in app.get("deployments", []) for k, v in d.items() if k != "name"}
        targets.append(serve.RunTarget(apps.DEPLOYMENTS[app["name"]].options(**options).bind(app["args"]),
                                       name=app["name"], route_prefix=app["route_prefix"]))
    names = ", ".join(a["name"] for a in config["applications"])
    say(f"deploying {names} on Ray Serve ...")
    serve.run_many(targets)


def shut_down(redis: RedisProcess) -> None:
    """Shut Serve and Ray down (if Ray was started), then stop Redis; a step that fails does not
    skip the next. (Were this process killed outright instead, Ray's processes and Redis die with
    it: Ray's share its fate, Redis is a `ManagedProcess`.)"""
    import ray
    from ray import serve

    steps: list[tuple[str, Callable[[], object]]] = []
    if ray.is_initialized():  # serve.shutdown() would otherwise start a Ray cluster to look in
        steps += [("Ray Serve", serve.shutdown), ("Ray", ray.shutdown)]
    steps.append(("redis-server", redis.stop))
    for name, step in steps:
        try:
            step()
        except Exception as exc:
            say(f"could not stop {name}: {exc!r}", err=True)
