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
