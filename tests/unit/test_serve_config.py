"""deploy/ray/serve-config.yaml is a valid Serve config whose apps and args match the code."""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "ray" / "serve-config.yaml"


def test_serve_config_parses_as_serve_deploy_schema() -> None:
    schema = pytest.importorskip("ray.serve.schema")
    parsed = schema.ServeDeploySchema.parse_obj(yaml.safe_load(CONFIG.read_text()))
    assert {app.name for app in parsed.applications} == {"tokenizer", "session", "generation", "reward", "gateway"}
    assert parsed.grpc_options.port == 9000
    assert all(app.route_prefix for app in parsed.applications)  # Serve's gRPC proxy needs one
    # The gateway is also the HTTP ingress: the OpenAI-compatible API at <proxy>/v1.
    assert {app.name: app.route_prefix for app in parsed.applications}["gateway"] == "/"


def test_every_import_path_builds_an_application_and_args_are_config_fields() -> None:
    pytest.importorskip("ray")
    import importlib

    from ray.serve import Application

    from chatstack.gateway.config import GatewayConfig
    from chatstack.generation.config import GenerationConfig
    from chatstack.reward.config import RewardConfig
    from chatstack.session.config import SessionConfig
    from chatstack.tokenizer.config import TokenizerConfig

    configs = {"tokenizer": TokenizerConfig, "session": SessionConfig, "generation": GenerationConfig,
               "reward": RewardConfig, "gateway": GatewayConfig}
    for app in yaml.safe_load(CONFIG.read_text())["applications"]:
        module, _, attr = app["import_path"].partition(":")
        built = getattr(importlib.import_module(module), attr)(app["args"])
        assert isinstance(built, Application)
        fields = set(configs[app["name"]].model_fields)
        assert set(app["args"]) <= fields, f"{app['name']}: unknown args {set(app['args']) - fields}"
        names = {d["name"] for d in app["deployments"]}
        assert names == {f"{app['name'].capitalize()}Deployment"}


def test_servicer_functions_cover_every_proto_service() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    from chatstack.serve.apps import GRPC_SERVICER_FUNCTIONS

    assert config["grpc_options"]["grpc_servicer_functions"] == GRPC_SERVICER_FUNCTIONS


def test_generation_routes_by_session_in_the_config_and_in_the_code_and_its_kwargs_are_accepted() -> None:
    pytest.importorskip("ray")
    from ray.serve._private.common import DeploymentHandleSource, DeploymentID
    from ray.serve.config import RequestRouterConfig

    from chatstack.serve.apps import SESSION_AFFINITY_ROUTING, GenerationDeployment
    from chatstack.serve.session_router import SessionAffinityRouter

    apps = {app["name"]: app for app in yaml.safe_load(CONFIG.read_text())["applications"]}
    (deployment,) = apps["generation"]["deployments"]
    configured = RequestRouterConfig(**deployment["request_router_config"])  # imports the class
    assert configured.get_request_router_class().__qualname__ == SessionAffinityRouter.__qualname__
    assert configured == RequestRouterConfig(**SESSION_AFFINITY_ROUTING)
    assert GenerationDeployment._deployment_config.request_router_config == configured
    router = SessionAffinityRouter(deployment_id=DeploymentID(name="GenerationDeployment", app_name="generation"),
                                   handle_source=DeploymentHandleSource.REPLICA)
    router.initialize_state(**configured.request_router_kwargs)  # as Serve does; a typo raises
    others = [d for name, app in apps.items() if name != "generation" for d in app["deployments"]]
    assert not any("request_router_config" in d for d in others)  # Serve's power of two choices
