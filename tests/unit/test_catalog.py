"""The service catalog is what every default reads: configs, `make run`, the load test."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatstack.catalog import BACKENDS, SERVICES, ServiceInfo
from chatstack.core.config import ServerConfig
from chatstack.gateway.config import GatewayConfig
from chatstack.generation.config import GenerationConfig
from chatstack.local_stack import local_services
from chatstack.reward.config import RewardConfig
from chatstack.safety.config import SafetyConfig
from chatstack.session.config import SessionConfig
from chatstack.tokenizer.config import TokenizerConfig
from loadtest.settings import DEFAULT_TARGETS

CONFIGS: dict[str, type[ServerConfig]] = {
    "gateway": GatewayConfig, "tokenizer": TokenizerConfig, "generation": GenerationConfig,
    "reward": RewardConfig, "session": SessionConfig, "safety": SafetyConfig}


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_a_service_config_defaults_to_its_catalog_ports(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PORT", "METRICS_PORT"):
        monkeypatch.delenv(f"CHATSTACK_{name.upper()}_{var}", raising=False)
    config = CONFIGS[name]()
    assert config.service_name() == name
    assert (config.port, config.metrics_port) == (SERVICES[name].port, SERVICES[name].metrics_port)


def test_ports_are_distinct_and_the_gateway_and_tools_point_at_the_catalog() -> None:
    ports = [p for s in SERVICES.values() for p in (s.port, s.metrics_port)]
    assert len(set(ports)) == len(ports)
    gateway = GatewayConfig()
    assert {b.name: getattr(gateway, f"{b.name}_address") for b in BACKENDS} == {
        b.name: b.local_address for b in BACKENDS}
    assert DEFAULT_TARGETS == {name: s.local_address for name, s in SERVICES.items()}
    local = {s.name: s for s in local_services(Path("/m"), "redis://x", Path("/k"))}
    assert {name: (s.port, s.metrics_port) for name, s in local.items()} == {
        name: (s.port, s.metrics_port) for name, s in SERVICES.items()}
    assert all(isinstance(s, ServiceInfo) and s.proto_service.startswith("chatstack.v1.") for s in SERVICES.values())
