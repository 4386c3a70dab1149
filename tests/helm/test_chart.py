"""The Helm chart charts/chatstack, rendered offline through helm-python-sdk (Helm's own Go code).

Every values file in deploy/helm renders under both runtimes, its core manifests validate against
the Kubernetes schemas, and its custom resources (Prometheus Operator, KEDA, Gateway API, KubeRay)
against their CRDs' schemas, offline (tests/helm/crds.py). The alerts pass promtool and fire on
synthetic series; the dashboard's and alerts' metric names are checked against the /metrics of real
running services (integration).
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import json
import os
import re
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import grpc
import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from chatstack.catalog import GATEWAY_HTTP_PORT
from chatstack.catalog import SERVICES as CATALOG
from chatstack.client import ChatClient
from chatstack.v1 import (
    common_pb2,
    generation_pb2,
    generation_pb2_grpc,
    session_pb2,
    session_pb2_grpc,
    tokenizer_pb2,
    tokenizer_pb2_grpc,
)
from tests.helm.crds import KUBE_VERSION, crd_errors
from tests.stack_fixtures import ALICE_KEY

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "chatstack"
VALUES_DIR = ROOT / "deploy" / "helm"
SERVE_CONFIG = ROOT / "deploy" / "ray" / "serve-config.yaml"
DOCKER_DIR = ROOT / "deploy" / "docker"
RELEASE, NAMESPACE = "chatstack", "chat"
VALUES_FILES = ("values-dev-cpu.yaml", "values-gpu.yaml", "values-ray.yaml")
RUNTIMES = ("kubernetes", "ray")
KUBERNETES_FILES = ("values-dev-cpu.yaml", "values-gpu.yaml")

# service -> (gRPC port, metrics port, the proto service its gRPC health reports): the service
# catalog, which the chart's default ports must match
SERVICES = {name: (info.port, info.metrics_port, info.proto_service) for name, info in CATALOG.items()}
CORE_KINDS = {"Deployment", "Service", "StatefulSet", "PodDisruptionBudget", "HorizontalPodAutoscaler",
              "Secret", "ConfigMap", "PersistentVolumeClaim", "ServiceAccount", "Ingress"}
CRD_API_VERSIONS = {
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "PodMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
    "RayService": "ray.io/v1",
    "ScaledObject": "keda.sh/v1alpha1",
    "GRPCRoute": "gateway.networking.k8s.io/v1",
    "HTTPRoute": "gateway.networking.k8s.io/v1",
}
BACKENDS = ("tokenizer", "generation", "reward", "session")  # what the gateway calls
KEDA = {"keda": {"enabled": True, "prometheus": {"serverAddress": "http://prometheus.monitoring.svc:9090"}}}
GRPC_ROUTE = {"gateway": {"grpcRoute": {"enabled": True, "hostnames": ["chat.example.com"],
                                        "parentRefs": [{"name": "public", "namespace": "gateway-system"}]}}}
INGRESS = {"gateway": {"ingress": {"enabled": True, "className": "nginx", "host": "chat.example.com",
                                   "tls": {"secretName": "chat-tls"}}}}
# The OpenAI-compatible HTTP API's route and Ingress.
HTTP_ROUTE = {"gateway": {"httpRoute": {"enabled": True, "hostnames": ["chat.example.com"],
                                        "parentRefs": [{"name": "public", "namespace": "gateway-system",
                                                        "sectionName": "https"}]}}}
HTTP_INGRESS = {"gateway": {"ingress": {"className": "nginx", "host": "chat.example.com",
                                        "tls": {"secretName": "chat-tls"}, "http": {"enabled": True}}}}
PLAINTEXT_KEY = "cs-test-key-7f3a9c21d4e8b6a0"
METRIC_NAME = re.compile(r"chatstack_[a-z0-9_]+")

helm.disable_logging()


# -- rendering helpers --------------------------------------------------------------------
def merge(*layers: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge values layers like Helm's -f a -f b (maps merge, everything else is replaced)."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = value
    return out


def values(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((VALUES_DIR / name).read_text())
    return loaded


class Rendered:
    """The templates a release renders: raw text per template and the parsed manifests."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files
        self.notes = files.get("chatstack/templates/NOTES.txt", "")
        self.text = "\n".join(files.values())
        self.docs: list[dict[str, Any]] = [
            doc for path, text in sorted(files.items()) if not path.endswith("NOTES.txt")
            for doc in yaml.safe_load_all(text) if doc
        ]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name: str) -> dict[str, Any]:
        found = [d for d in self.all(kind) if d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
        return found[0]


@functools.cache
def chart() -> helm.Chart:
    return helm.Chart.load(CHART)


@functools.cache
def _render(values_json: str) -> Rendered:
    return Rendered(chart().render(json.loads(values_json), name=RELEASE, namespace=NAMESPACE))


def render(*layers: dict[str, Any]) -> Rendered:
    """Render the chart with the merged layers (cached: tests must not modify the result)."""
    return _render(json.dumps(merge(*layers), sort_keys=True))


def render_error(*layers: dict[str, Any]) -> str:
    """The message Helm fails with for these values."""
    with pytest.raises(helm.HelmError) as failure:
        chart().render(merge(*layers), name=RELEASE, namespace=NAMESPACE)
    return str(failure.value)


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    """name -> value (or the valueFrom mapping) of a container's env."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def component(name: str) -> str:
    return f"{RELEASE}-{name}"


# -- lint, render, validate ---------------------------------------------------------------
def test_deploy_helm_holds_exactly_the_three_environments() -> None:
    assert sorted(p.name for p in VALUES_DIR.glob("*.yaml")) == sorted(VALUES_FILES)


# Every way out of the cluster at once (gRPC and HTTP, route and Ingress); each values file is
# linted and rendered as it is and with these.
EXPOSED = merge(GRPC_ROUTE, HTTP_ROUTE, INGRESS, HTTP_INGRESS)
EXPOSURES = {"as-is": {}, "exposed": EXPOSED}


@pytest.mark.parametrize("exposure", EXPOSURES)
@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_lint_passes_without_warnings(values_file: str, runtime: str, exposure: str) -> None:
    report = helm.lint(CHART, merge(values(values_file), {"runtime": runtime}, EXPOSURES[exposure]), strict=True,
                       namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert (report["errors"], problems) == ([], [])


def check_crd_shape(doc: dict[str, Any]) -> None:
    """What each custom resource must say for this chart beyond its schema (crds.py checks that)."""
    kind, spec = doc["kind"], doc["spec"]
    assert doc["apiVersion"] == CRD_API_VERSIONS[kind]
    if kind == "ServiceMonitor":
        assert spec["selector"]["matchLabels"] and spec["namespaceSelector"]["matchNames"] == [NAMESPACE]
        assert all(e["port"] and e["path"] == "/metrics" for e in spec["endpoints"])
    elif kind == "PodMonitor":
        assert spec["selector"]["matchLabels"] and spec["podMetricsEndpoints"][0]["port"] == "metrics"
    elif kind == "PrometheusRule":
        rules = [r for g in spec["groups"] for r in g["rules"]]
        assert rules and all(r["alert"] and r["expr"] and r["labels"]["severity"] for r in rules)
    elif kind == "ScaledObject":
        assert spec["scaleTargetRef"]["name"] and spec["triggers"][0]["type"] == "prometheus"
        assert spec["minReplicaCount"] <= spec["maxReplicaCount"]
    elif kind == "RayService":
        assert isinstance(yaml.safe_load(spec["serveConfigV2"]), dict)
        cluster = spec["rayClusterConfig"]
        for group in cluster["workerGroupSpecs"]:
            assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    elif kind == "GRPCRoute":
        assert spec["parentRefs"] and spec["rules"][0]["backendRefs"] == [
            {"name": component("gateway"), "port": SERVICES["gateway"][0]}]
    elif kind == "HTTPRoute":
        assert spec["parentRefs"] and spec["rules"][0]["backendRefs"] == [
            {"name": component("gateway"), "port": GATEWAY_HTTP_PORT}]


@pytest.mark.parametrize("exposure", EXPOSURES)
@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_every_environment_renders_valid_manifests_under_both_runtimes(
        values_file: str, runtime: str, exposure: str) -> None:
    rendered = render(values(values_file), {"runtime": runtime}, EXPOSURES[exposure])
    kinds = {d["kind"] for d in rendered.docs}
    assert kinds <= CORE_KINDS | set(CRD_API_VERSIONS), f"unexpected kinds {kinds}"
    for doc in rendered.docs:
        assert doc["metadata"]["namespace"] == NAMESPACE
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
        if doc["kind"] in CORE_KINDS:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        else:
            check_crd_shape(doc)
    assert len(rendered.all("StatefulSet")) == 1, "Redis runs in both runtimes"
    if runtime == "kubernetes":
        assert {d["metadata"]["name"] for d in rendered.all("Deployment")} == {component(s) for s in SERVICES}
        assert rendered.all("RayService") == []
    else:
        assert rendered.all("Deployment") == [] and len(rendered.all("RayService")) == 1


def every_custom_resource() -> list[dict[str, Any]]:
    """The custom resources of every environment under both runtimes, plain and with every optional
    one switched on (each distinct resource once: one validator run checks them all)."""
    options = merge(EXPOSED, {"observability": {"serviceMonitor": {"enabled": True},
                                                "prometheusRule": {"enabled": True}}})
    scaled = merge(KEDA, {"autoscaling": {"llmSignals": {"enabled": False}}})
    found: dict[str, dict[str, Any]] = {}
    for values_file in VALUES_FILES:
        for runtime in RUNTIMES:
            for extra in ({}, options, scaled):
                for doc in render(values(values_file), {"runtime": runtime}, extra).docs:
                    if doc["kind"] not in CORE_KINDS:
                        found[json.dumps(doc, sort_keys=True)] = doc
    return list(found.values())


def test_every_custom_resource_the_chart_renders_matches_its_crd_schema() -> None:
    resources = every_custom_resource()
    assert {d["kind"] for d in resources} == set(CRD_API_VERSIONS), "a kind is never rendered, or unchecked"
    rejected = {f"{d['kind']} {d['metadata']['name']}": errors
                for d, errors in zip(resources, crd_errors(resources), strict=True) if errors}
    assert rejected == {}


def broken(kind: str, name: str, change: str, value: Any) -> dict[str, Any]:
    """A rendered `kind` with the field at path `change` ("spec.endpoints.0.honorLabel") set to value."""
    doc = copy.deepcopy(next(d for d in every_custom_resource()
                             if d["kind"] == kind and d["metadata"]["name"] == name))
    *parents, last = [int(k) if k.isdigit() else k for k in change.split(".")]
    target: Any = doc
    for key in parents:
        target = target[key]
    target[last] = value
    return doc


# case -> (kind, name, field path, wrong value, what the error names)
BROKEN_RESOURCES = {
    "ServiceMonitor with a misspelt field": (
        "ServiceMonitor", component("gateway"), "spec.endpoints.0.honorLabel", True, "'honorLabel'"),
    "ServiceMonitor with an interval of the wrong type": (
        "ServiceMonitor", component("gateway"), "spec.endpoints.0.interval", 15, "interval must be string"),
    "ServiceMonitor with an unknown scheme": (
        "ServiceMonitor", component("generation"), "spec.endpoints.0.scheme", "grpc", "scheme must be equal to one of"),
    "PrometheusRule with a numeric for": (
        "PrometheusRule", component("alerts"), "spec.groups.0.rules.0.for", 600, "for must be string"),
    "ScaledObject with a numeric trigger threshold": (
        "ScaledObject", component("generation"), "spec.triggers.0.metadata.threshold", 4, "threshold must be string"),
    "GRPCRoute with a named backend port": (
        "GRPCRoute", component("gateway"), "spec.rules.0.backendRefs.0.port", "grpc", "port must be integer"),
    "GRPCRoute with a misspelt field": (
        "GRPCRoute", component("gateway"), "spec.hostname", ["chat.example.com"], "'hostname'"),
    "HTTPRoute with a stream timeout that is no Gateway API duration": (
        "HTTPRoute", component("gateway"), "spec.rules.0.timeouts.request", "1 hour", "request must match pattern"),
    "HTTPRoute with a named backend port": (
        "HTTPRoute", component("gateway"), "spec.rules.0.backendRefs.0.port", "http", "port must be integer"),
    "HTTPRoute with a misspelt rule field": (
        "HTTPRoute", component("gateway"), "spec.rules.0.timeout", {"request": "1h"}, "'timeout'"),
    "RayService with a misspelt worker field": (
        "RayService", RELEASE, "spec.rayClusterConfig.workerGroupSpecs.0.maxReplica", 3, "'maxReplica' was unexpected"),
}


@functools.cache
def broken_resource_errors() -> dict[str, list[str]]:
    """The validator's verdict on every BROKEN_RESOURCES case, from one run."""
    docs = [broken(*case[:4]) for case in BROKEN_RESOURCES.values()]
    return dict(zip(BROKEN_RESOURCES, crd_errors(docs), strict=True))


@pytest.mark.parametrize("case", BROKEN_RESOURCES)
def test_a_custom_resource_with_a_wrong_field_is_rejected_naming_it(case: str) -> None:
    errors = broken_resource_errors()[case]
    assert errors and any(BROKEN_RESOURCES[case][4] in e for e in errors), errors


# -- the services' pods ---------------------------------------------------------------------
@pytest.mark.parametrize("values_file", KUBERNETES_FILES)
def test_probes_are_native_grpc_on_the_service_port_asking_its_proto_service(values_file: str) -> None:
    rendered = render(values(values_file))
    for name, (port, metrics_port, proto) in SERVICES.items():
        c = container(rendered.one("Deployment", component(name)))
        http = {"http": GATEWAY_HTTP_PORT} if name == "gateway" else {}  # the OpenAI API: no probe of its own
        assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"grpc": port, "metrics": metrics_port, **http}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["grpc"] == {"port": port, "service": proto}, f"{name} {probe}"
        env = env_of(c)
        prefix = f"CHATSTACK_{name.upper()}_"
        assert (env[prefix + "HOST"], env[prefix + "PORT"]) == ("0.0.0.0", str(port))
        assert (env[prefix + "METRICS_HOST"], env[prefix + "METRICS_PORT"]) == ("0.0.0.0", str(metrics_port))


@pytest.mark.parametrize("values_file", KUBERNETES_FILES)
def test_pods_get_their_drain_time_before_sigkill(values_file: str) -> None:
    merged = merge(chart().values, values(values_file))
    rendered = render(values(values_file))
    for name in SERVICES:
        svc = merged[name]
        deployment = rendered.one("Deployment", component(name))
        c = container(deployment)
        assert env_of(c)[f"CHATSTACK_{name.upper()}_GRACE_SECONDS"] == str(svc["graceSeconds"])
        assert c["lifecycle"]["preStop"]["sleep"]["seconds"] == svc["preStopSleepSeconds"]
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > svc["graceSeconds"] + svc["preStopSleepSeconds"]


def test_gpu_environment_requests_gpus_on_gpu_nodes_for_generation_and_reward() -> None:
    rendered = render(values("values-gpu.yaml"))
    for name in ("generation", "reward"):
        pod = rendered.one("Deployment", component(name))["spec"]["template"]["spec"]
        c = pod["containers"][0]
        assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
        shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
        assert shm["emptyDir"]["medium"] == "Memory"
        assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]
    for name in ("gateway", "tokenizer", "session"):
        c = container(rendered.one("Deployment", component(name)))
        assert "nvidia.com/gpu" not in json.dumps(c["resources"])


def test_cpu_environment_requests_no_gpu_anywhere() -> None:
    assert "nvidia.com/gpu" not in render(values("values-dev-cpu.yaml")).text


def test_ray_runtime_has_a_head_and_cpu_and_gpu_worker_groups() -> None:
    ray = render(values("values-ray.yaml")).one("RayService", RELEASE)["spec"]["rayClusterConfig"]
    groups = {g["groupName"]: g for g in ray["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    gpu_limits = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    cpu_limits = groups["cpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert gpu_limits["nvidia.com/gpu"] == 1 and "nvidia.com/gpu" not in cpu_limits
    assert ray["headGroupSpec"]["template"]["spec"]["containers"][0]["name"] == "ray-head"


def test_rayservice_serve_config_is_deploy_ray_serve_config() -> None:
    rayservice = render(values("values-ray.yaml")).one("RayService", RELEASE)
    assert yaml.safe_load(rayservice["spec"]["serveConfigV2"]) == yaml.safe_load(SERVE_CONFIG.read_text())


def test_ray_runtime_refuses_a_release_the_serve_config_cannot_reach() -> None:
    wrong_redis = render_error(values("values-ray.yaml"), {"fullnameOverride": "other"})
    assert "redis://chatstack-redis:6379/0" in wrong_redis and "fullnameOverride" in wrong_redis
    no_models = render_error(values("values-ray.yaml"), {"models": {"pvc": {"enabled": False}}})
    assert "/models/tiny/lm" in no_models and "models.pvc" in no_models


def test_config_values_become_the_services_env_vars() -> None:
    rendered = render(values("values-dev-cpu.yaml"), {"tokenizer": {"config": {"max_text_chars": 1000000}}})
    generation = env_of(container(rendered.one("Deployment", component("generation"))))
    assert generation["CHATSTACK_GENERATION_MAX_NUM_SEQS"] == "32"
    assert generation["CHATSTACK_GENERATION_DTYPE"] == "float32"
    assert generation["CHATSTACK_GENERATION_ENFORCE_EAGER"] == "true"
    tokenizer = env_of(container(rendered.one("Deployment", component("tokenizer"))))
    assert tokenizer["CHATSTACK_TOKENIZER_MAX_TEXT_CHARS"] == "1000000"  # not 1e+06
    gpu = env_of(container(render(values("values-gpu.yaml")).one("Deployment", component("generation"))))
    assert "CHATSTACK_GENERATION_CPU_KVCACHE_SPACE_GIB" not in gpu, "null drops a default"


def test_config_cannot_shadow_a_setting_the_chart_manages() -> None:
    assert "tokenizer.config.port: use <service>.port" in render_error(
        values("values-dev-cpu.yaml"), {"tokenizer": {"config": {"port": 1234}}})


# -- balancing: the gateway's calls over every backend pod, its clients' over every gateway pod --
def gateway_env(*layers: dict[str, Any]) -> dict[str, Any]:
    return env_of(container(render(*layers).one("Deployment", component("gateway"))))


@pytest.mark.parametrize("values_file", KUBERNETES_FILES)
def test_gateway_calls_each_backend_through_its_headless_service(values_file: str) -> None:
    rendered = render(values(values_file))
    env = env_of(container(rendered.one("Deployment", component("gateway"))))
    for backend in BACKENDS:
        port = SERVICES[backend][0]
        headless = f"{component(backend)}-headless"
        # dns:/// makes the gateway resolve every A record: one channel per ready pod.
        assert env[f"CHATSTACK_GATEWAY_{backend.upper()}_ADDRESS"] == \
            f"dns:///{headless}.{NAMESPACE}.svc.cluster.local:{port}"
        service = rendered.one("Service", headless)["spec"]
        assert service["clusterIP"] == "None" and service["publishNotReadyAddresses"] is False
        assert service["ports"] == [{"name": "grpc", "port": port, "targetPort": "grpc", "protocol": "TCP",
                                     "appProtocol": "kubernetes.io/h2c"}]
        pods = rendered.one("Deployment", component(backend))["spec"]["selector"]["matchLabels"]
        assert service["selector"] == pods
        # The ClusterIP Service stays, with the metrics port the ServiceMonitor scrapes.
        cluster_ip = rendered.one("Service", component(backend))["spec"]
        assert cluster_ip.get("clusterIP") != "None" and cluster_ip["selector"] == pods
        assert {p["name"] for p in cluster_ip["ports"]} == {"grpc", "metrics"}
    assert f"{component('gateway')}-headless" not in {s["metadata"]["name"] for s in rendered.all("Service")}


def test_backend_addresses_follow_the_cluster_domain_and_the_discovery_mode() -> None:
    env = gateway_env(values("values-dev-cpu.yaml"), {"clusterDomain": "corp.internal"})
    assert env["CHATSTACK_GATEWAY_GENERATION_ADDRESS"] == \
        f"dns:///{component('generation')}-headless.{NAMESPACE}.svc.corp.internal:50052"
    # Behind a mesh that balances per request: the ClusterIP Services, as host:port.
    mesh = gateway_env(values("values-dev-cpu.yaml"), {"gateway": {"balancing": {"discovery": "service"}}})
    for backend in BACKENDS:
        assert mesh[f"CHATSTACK_GATEWAY_{backend.upper()}_ADDRESS"] == f"{component(backend)}:{SERVICES[backend][0]}"


def test_routing_policies_load_factor_and_resolve_interval_reach_the_gateway() -> None:
    env = gateway_env(values("values-dev-cpu.yaml"))
    assert {b: env[f"CHATSTACK_GATEWAY_{b.upper()}_ROUTING"] for b in BACKENDS} == {
        "tokenizer": "round_robin", "generation": "session_affinity", "reward": "round_robin",
        "session": "round_robin"}
    assert (env["CHATSTACK_GATEWAY_AFFINITY_LOAD_FACTOR"], env["CHATSTACK_GATEWAY_RESOLVE_INTERVAL_SECONDS"]) == \
        ("0.25", "15")
    tuned = gateway_env(values("values-dev-cpu.yaml"), {"gateway": {"balancing": {
        "routing": {"tokenizer": "least_loaded"}, "affinityLoadFactor": 0.5, "resolveIntervalSeconds": 5}}})
    assert tuned["CHATSTACK_GATEWAY_TOKENIZER_ROUTING"] == "least_loaded"
    assert tuned["CHATSTACK_GATEWAY_GENERATION_ROUTING"] == "session_affinity", "maps merge: the rest stays"
    assert (tuned["CHATSTACK_GATEWAY_AFFINITY_LOAD_FACTOR"], tuned["CHATSTACK_GATEWAY_RESOLVE_INTERVAL_SECONDS"]) == \
        ("0.5", "5")
    no_reward = gateway_env(values("values-dev-cpu.yaml"), {"reward": {"enabled": False}})
    assert not {"CHATSTACK_GATEWAY_REWARD_ADDRESS", "CHATSTACK_GATEWAY_REWARD_ROUTING"} & set(no_reward)


def test_gpu_environment_keeps_sessions_on_their_generation_pod() -> None:
    env = gateway_env(values("values-gpu.yaml"))
    assert env["CHATSTACK_GATEWAY_GENERATION_ROUTING"] == "session_affinity"
    assert env["CHATSTACK_GATEWAY_GENERATION_ADDRESS"].startswith("dns:///")


@pytest.mark.parametrize("values_file", KUBERNETES_FILES)
def test_every_service_sends_goaway_after_its_max_connection_age(values_file: str) -> None:
    rendered = render(values(values_file), {"generation": {"maxConnectionAgeSeconds": 0}})
    for name in SERVICES:
        env = env_of(container(rendered.one("Deployment", component(name))))
        prefix = f"CHATSTACK_{name.upper()}_MAX_CONNECTION_AGE"
        age = "0" if name == "generation" else "300"  # 0: never
        assert (env[f"{prefix}_SECONDS"], env[f"{prefix}_GRACE_SECONDS"]) == (age, "120"), name


@pytest.mark.parametrize(("config", "value"), [
    ({"gateway": {"config": {"generation_routing": "round_robin"}}}, "gateway.balancing.routing"),
    ({"gateway": {"config": {"affinity_load_factor": 1}}}, "gateway.balancing.affinityLoadFactor"),
    ({"session": {"config": {"max_connection_age_seconds": 60}}}, "<service>.maxConnectionAgeSeconds"),
])
def test_balancing_settings_come_from_their_values_not_config(config: dict[str, Any], value: str) -> None:
    assert f"use {value}" in render_error(values("values-dev-cpu.yaml"), config)


def test_the_gateway_is_not_exposed_by_route_or_ingress_unless_asked() -> None:
    for values_file in VALUES_FILES:
        rendered = render(values(values_file))
        assert rendered.all("Ingress") == []
        assert (rendered.all("GRPCRoute") != []) == (values_file == "values-gpu.yaml")
        assert (rendered.all("HTTPRoute") != []) == (values_file == "values-gpu.yaml")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_grpc_route_sends_chat_service_calls_to_the_gateway_service(runtime: str) -> None:
    rendered = render(values("values-dev-cpu.yaml"), {"runtime": runtime}, GRPC_ROUTE)
    route = rendered.one("GRPCRoute", component("gateway"))
    assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "gateway-system"}]
    assert route["spec"]["hostnames"] == ["chat.example.com"]
    [rule] = route["spec"]["rules"]
    assert rule["matches"] == [{"method": {"type": "Exact", "service": SERVICES["gateway"][2]}}]
    service = rendered.one("Service", component("gateway"))
    grpc_port = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
    assert rule["backendRefs"] == [{"name": service["metadata"]["name"], "port": grpc_port["port"]}]
    assert grpc_port["appProtocol"] == "kubernetes.io/h2c", "the proxy must speak HTTP/2 to the pods"
    assert crd_errors([route]) == [[]]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_ingress_proxies_grpc_over_tls_to_the_gateway_service(runtime: str) -> None:
    rendered = render(values("values-dev-cpu.yaml"), {"runtime": runtime}, INGRESS)
    ingress = rendered.one("Ingress", component("gateway"))
    kubernetes_validate.validate(ingress, KUBE_VERSION, strict=True)
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"hosts": ["chat.example.com"], "secretName": "chat-tls"}]
    [rule] = spec["rules"]
    assert rule["host"] == "chat.example.com"
    # gRPC calls are POST /chatstack.v1.ChatService/<Method>.
    assert rule["http"]["paths"] == [{"path": "/chatstack.v1.ChatService", "pathType": "Prefix", "backend": {
        "service": {"name": component("gateway"), "port": {"name": "grpc"}}}}]
    assert "grpc" in {p["name"] for p in rendered.one("Service", component("gateway"))["spec"]["ports"]}


def test_route_and_ingress_need_their_parent_and_host() -> None:
    assert "gateway.grpcRoute.parentRefs: name the Gateway" in render_error(
        values("values-dev-cpu.yaml"), {"gateway": {"grpcRoute": {"enabled": True}}})
    assert "gateway.ingress.host is required" in render_error(
        values("values-dev-cpu.yaml"), {"gateway": {"ingress": {"enabled": True}}})
    assert "gateway.httpRoute.parentRefs: name the Gateway" in render_error(
        values("values-dev-cpu.yaml"), {"gateway": {"httpRoute": {"enabled": True}}})
    assert "gateway.ingress.host is required when gateway.ingress.http.enabled" in render_error(
        values("values-dev-cpu.yaml"), {"gateway": {"ingress": {"http": {"enabled": True}}}})


# -- the OpenAI-compatible HTTP API ---------------------------------------------------------
@pytest.mark.parametrize("values_file", KUBERNETES_FILES)
def test_gateway_serves_the_openai_api_on_its_http_port_and_service(values_file: str) -> None:
    rendered = render(values(values_file))
    c = container(rendered.one("Deployment", component("gateway")))
    assert {"name": "http", "containerPort": GATEWAY_HTTP_PORT, "protocol": "TCP"} in c["ports"]
    env = env_of(c)
    assert (env["CHATSTACK_GATEWAY_HTTP_ENABLED"], env["CHATSTACK_GATEWAY_HTTP_PORT"]) == ("true", str(GATEWAY_HTTP_PORT))
    # The probes stay on gRPC health: they cover the process, and work with the HTTP API off too.
    assert all("grpc" in c[probe] for probe in ("startupProbe", "readinessProbe", "livenessProbe"))
    service = rendered.one("Service", component("gateway"))["spec"]
    assert {"name": "http", "port": GATEWAY_HTTP_PORT, "targetPort": "http", "protocol": "TCP",
            "appProtocol": "http"} in service["ports"]
    # Only the gateway serves HTTP (its backends' Services keep grpc and metrics).
    for name in BACKENDS:
        assert "http" not in {p["name"] for p in rendered.one("Service", component(name))["spec"]["ports"]}
        assert not {k for k in env_of(container(rendered.one("Deployment", component(name)))) if "_HTTP_" in k}


def test_the_http_port_follows_gateway_http_port() -> None:
    rendered = render(values("values-dev-cpu.yaml"), {"gateway": {"httpPort": 9080}}, HTTP_ROUTE, HTTP_INGRESS)
    c = container(rendered.one("Deployment", component("gateway")))
    assert {p["name"]: p["containerPort"] for p in c["ports"]}["http"] == 9080
    assert env_of(c)["CHATSTACK_GATEWAY_HTTP_PORT"] == "9080"
    service_ports = {p["name"]: p["port"] for p in rendered.one("Service", component("gateway"))["spec"]["ports"]}
    assert service_ports["http"] == 9080
    assert rendered.one("HTTPRoute", component("gateway"))["spec"]["rules"][0]["backendRefs"][0]["port"] == 9080
    assert "port-forward svc/chatstack-gateway 9080" in rendered.notes and "localhost:9080/v1" in rendered.notes


def test_http_disabled_drops_the_port_and_says_so_to_the_gateway() -> None:
    rendered = render(values("values-dev-cpu.yaml"), {"gateway": {"http": {"enabled": False}}})
    c = container(rendered.one("Deployment", component("gateway")))
    assert "http" not in {p["name"] for p in c["ports"]}
    env = env_of(c)
    # Said explicitly: the gateway would serve the API by default.
    assert env["CHATSTACK_GATEWAY_HTTP_ENABLED"] == "false" and "CHATSTACK_GATEWAY_HTTP_PORT" not in env
    assert {p["name"] for p in rendered.one("Service", component("gateway"))["spec"]["ports"]} == {"grpc", "metrics"}
    assert all("grpc" in c[probe] for probe in ("startupProbe", "readinessProbe", "livenessProbe"))
    assert "switched off (gateway.http.enabled: false)" in rendered.notes and "OPENAI_BASE_URL" not in rendered.notes


@pytest.mark.parametrize("exposure", ["gateway.httpRoute", "gateway.ingress.http"])
def test_a_route_to_a_disabled_http_api_is_refused(exposure: str) -> None:
    layer = HTTP_ROUTE if exposure == "gateway.httpRoute" else HTTP_INGRESS
    message = render_error(values("values-dev-cpu.yaml"), layer, {"gateway": {"http": {"enabled": False}}})
    assert f"{exposure}.enabled needs gateway.http.enabled" in message


def test_http_route_sends_v1_to_the_gateway_services_http_port_with_a_long_timeout() -> None:
    rendered = render(values("values-dev-cpu.yaml"), HTTP_ROUTE)
    route = rendered.one("HTTPRoute", component("gateway"))
    assert route["spec"]["parentRefs"] == HTTP_ROUTE["gateway"]["httpRoute"]["parentRefs"]
    assert route["spec"]["hostnames"] == ["chat.example.com"]
    [rule] = route["spec"]["rules"]
    # /v1 only: /health stays inside the cluster.
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/v1"}}]
    service = rendered.one("Service", component("gateway"))
    http_port = next(p for p in service["spec"]["ports"] if p["name"] == "http")
    assert rule["backendRefs"] == [{"name": service["metadata"]["name"], "port": http_port["port"]}]
    # A stream (server-sent events) is one request for as long as it generates.
    assert rule["timeouts"] == {"request": "1h"}
    assert crd_errors([route]) == [[]]
    no_timeout = render(values("values-dev-cpu.yaml"), HTTP_ROUTE, {"gateway": {"httpRoute": {"requestTimeout": ""}}})
    assert "timeouts" not in no_timeout.one("HTTPRoute", component("gateway"))["spec"]["rules"][0]


def test_http_ingress_proxies_v1_unbuffered_to_the_gateway_services_http_port() -> None:
    rendered = render(values("values-dev-cpu.yaml"), HTTP_INGRESS)
    # A second Ingress: ingress-nginx takes the backend protocol per Ingress; the gRPC one stays off.
    assert [i["metadata"]["name"] for i in rendered.all("Ingress")] == [f"{component('gateway')}-http"]
    ingress = rendered.one("Ingress", f"{component('gateway')}-http")
    kubernetes_validate.validate(ingress, KUBE_VERSION, strict=True)
    assert ingress["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/backend-protocol": "HTTP",
        # Server-sent events reach the client as they come, and a long generation is not cut off.
        "nginx.ingress.kubernetes.io/proxy-buffering": "off",
        "nginx.ingress.kubernetes.io/proxy-read-timeout": "3600",
        "nginx.ingress.kubernetes.io/proxy-send-timeout": "3600",
    }
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"hosts": ["chat.example.com"], "secretName": "chat-tls"}]
    [rule] = spec["rules"]
    assert rule["host"] == "chat.example.com"
    assert rule["http"]["paths"] == [{"path": "/v1", "pathType": "Prefix", "backend": {
        "service": {"name": component("gateway"), "port": {"name": "http"}}}}]
    assert "http" in {p["name"] for p in rendered.one("Service", component("gateway"))["spec"]["ports"]}
    # Beside the gRPC Ingress, on the same host, each with its own annotations.
    both = render(values("values-dev-cpu.yaml"), INGRESS, HTTP_INGRESS)
    assert both.one("Ingress", component("gateway"))["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/backend-protocol": "GRPC"}
    assert len(both.all("Ingress")) == 2


def test_ray_runtime_serves_the_http_api_through_serves_http_proxy() -> None:
    rendered = render(values("values-gpu.yaml"), {"runtime": "ray"}, EXPOSED)
    ports = {p["name"]: p for p in rendered.one("Service", component("gateway"))["spec"]["ports"]}
    assert ports["grpc"]["targetPort"] == "serve-grpc"
    assert (ports["http"]["port"], ports["http"]["targetPort"]) == (GATEWAY_HTTP_PORT, "serve")
    cluster = rendered.one("RayService", RELEASE)["spec"]["rayClusterConfig"]
    [head] = cluster["headGroupSpec"]["template"]["spec"]["containers"]
    assert {"name": "serve", "containerPort": 8000, "protocol": "TCP"} in head["ports"]
    serve_config = yaml.safe_load(rendered.one("RayService", RELEASE)["spec"]["serveConfigV2"])
    assert serve_config["http_options"]["port"] == 8000
    assert {a["name"]: a["route_prefix"] for a in serve_config["applications"]}["gateway"] == "/"  # /v1
    assert [r["metadata"]["name"] for r in rendered.all("HTTPRoute")] == [component("gateway")]
    assert {i["metadata"]["name"] for i in rendered.all("Ingress")} == {
        component("gateway"), f"{component('gateway')}-http"}
    assert "OPENAI_BASE_URL" in rendered.notes and "Ray Serve's HTTP proxy" in rendered.notes
    off = render(values("values-ray.yaml"), {"gateway": {"http": {"enabled": False}}})
    assert [p["name"] for p in off.one("Service", component("gateway"))["spec"]["ports"]] == ["grpc"]
    assert "gateway.httpRoute.enabled needs gateway.http.enabled" in render_error(
        values("values-ray.yaml"), HTTP_ROUTE, {"gateway": {"http": {"enabled": False}}})


def test_http_api_settings_come_from_their_values_not_config() -> None:
    assert "gateway.config.http_port: use gateway.httpPort" in render_error(
        values("values-dev-cpu.yaml"), {"gateway": {"config": {"http_port": 9000}}})
    assert "gateway.config.http_enabled: use gateway.http.enabled" in render_error(
        values("values-dev-cpu.yaml"), {"gateway": {"config": {"http_enabled": False}}})


def test_notes_explain_per_connection_services_and_what_to_set() -> None:
    notes = render(values("values-dev-cpu.yaml")).notes
    assert "a Kubernetes Service balances per connection" in notes
    assert f"generation: dns:///{component('generation')}-headless.{NAMESPACE}.svc.cluster.local:50052" in notes
    assert "gateway.grpcRoute (Gateway API; set parentRefs) or gateway.ingress" in notes
    autoscaled = render(values("values-gpu.yaml")).notes
    assert "scaling generation out (HPA/KEDA)\nrelieves its queue at once" in autoscaled
    assert f"GRPCRoute {component('gateway')} attaches ChatService to Gateway gateway-system/public" in autoscaled
    assert "gateway.grpcRoute (Gateway API; set parentRefs)" not in autoscaled
    no_tls = render(values("values-dev-cpu.yaml"), merge(INGRESS, {"gateway": {"ingress": {"tls": {"secretName": ""}}}}))
    assert "WARNING: gateway.ingress.tls.secretName is empty" in no_tls.notes
    ray = render(values("values-ray.yaml")).notes
    assert "headless" not in ray, "Ray Serve's proxy balances the Ray runtime's calls itself"


def test_models_on_the_pvc_are_mounted_read_only_and_built_once_in_dev() -> None:
    rendered = render(values("values-dev-cpu.yaml"))
    assert rendered.one("PersistentVolumeClaim", component("models"))
    for name, path in (("generation", "tiny/lm"), ("reward", "tiny/reward"), ("tokenizer", "tiny/lm")):
        pod = rendered.one("Deployment", component(name))["spec"]["template"]["spec"]
        env = env_of(pod["containers"][0])
        assert env.get(f"CHATSTACK_{name.upper()}_MODEL", env.get("CHATSTACK_TOKENIZER_MODEL_DIR")) == f"/models/{path}"
        assert {"name": "models", "mountPath": "/models", "readOnly": True} in pod["containers"][0]["volumeMounts"]
        assert {"name": "models", "persistentVolumeClaim": {"claimName": component("models")}} in pod["volumes"]
        assert [i["name"] for i in pod["initContainers"]] == ["build-tiny-models"]


def test_hub_models_get_the_token_secret_and_the_tokenizer_files_fetched() -> None:
    rendered = render(values("values-gpu.yaml"))
    token = {"secretKeyRef": {"name": "hf-token", "key": "token"}}
    for name in ("generation", "reward"):
        pod = rendered.one("Deployment", component(name))["spec"]["template"]["spec"]
        env = env_of(pod["containers"][0])
        assert env[f"CHATSTACK_{name.upper()}_MODEL"] == values("values-gpu.yaml")[name]["model"]["hfId"]
        assert env["HF_TOKEN"] == token
        assert "models" not in {v["name"] for v in pod["volumes"]}
    tokenizer = rendered.one("Deployment", component("tokenizer"))["spec"]["template"]["spec"]
    fetch = tokenizer["initContainers"][0]
    assert fetch["name"] == "fetch-tokenizer" and env_of(fetch)["HF_TOKEN"] == token
    assert env_of(tokenizer["containers"][0])["CHATSTACK_TOKENIZER_MODEL_DIR"] == env_of(fetch)["TARGET"]


def test_pod_disruption_budgets_select_each_services_pods() -> None:
    rendered = render(values("values-gpu.yaml"))
    for name in SERVICES:
        pdb = rendered.one("PodDisruptionBudget", component(name))
        deployment = rendered.one("Deployment", component(name))
        assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
        assert pdb["spec"]["maxUnavailable"] == 1


# -- API keys -------------------------------------------------------------------------------
def test_api_keys_secret_holds_only_sha256_lines_and_the_gateway_mounts_it_by_name() -> None:
    hashed = hashlib.sha256(b"bobs-key-0123456789").hexdigest()
    rendered = render(values("values-dev-cpu.yaml"), {"gateway": {"apiKeys": {"keys": [
        {"owner": "alice", "key": PLAINTEXT_KEY}, {"owner": "bob", "sha256": hashed}]}}})
    for leaked in (PLAINTEXT_KEY, base64.b64encode(PLAINTEXT_KEY.encode()).decode()):
        assert leaked not in rendered.text
    secret = rendered.one("Secret", component("api-keys"))
    keys_file = base64.b64decode(secret["data"]["keys"]).decode()
    assert keys_file == f"alice:{hashlib.sha256(PLAINTEXT_KEY.encode()).hexdigest()}\nbob:{hashed}\n"

    pod = rendered.one("Deployment", component("gateway"))["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "api-keys")
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "api-keys")
    path = env_of(pod["containers"][0])["CHATSTACK_GATEWAY_API_KEYS_FILE"]
    assert path == f"{mount['mountPath']}/{volume['secret']['items'][0]['path']}" and mount["readOnly"]
    assert hashed not in json.dumps([c.get("env") for d in rendered.all("Deployment") for c in container_list(d)])


def container_list(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    spec = deployment["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def test_existing_api_keys_secret_is_mounted_and_none_is_created() -> None:
    rendered = render(values("values-gpu.yaml"))
    assert rendered.all("Secret") == []
    pod = rendered.one("Deployment", component("gateway"))["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "api-keys")
    assert volume["secret"]["secretName"] == "chatstack-api-keys"
    assert env_of(pod["containers"][0])["CHATSTACK_GATEWAY_API_KEYS_FILE"] == "/etc/chatstack/api-keys/keys"


def test_a_gateway_without_api_keys_is_refused() -> None:
    message = render_error(values("values-dev-cpu.yaml"), {"gateway": {"apiKeys": {"keys": []}}})
    assert "gateway.apiKeys: set existingSecret" in message


# -- Redis ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("values_file", "fsync"), [("values-dev-cpu.yaml", "everysec"),
                                                    ("values-gpu.yaml", "always")])
def test_redis_runs_with_appendonly_and_the_configured_fsync_on_a_volume(values_file: str, fsync: str) -> None:
    rendered = render(values(values_file))
    statefulset = rendered.one("StatefulSet", component("redis"))
    redis = statefulset["spec"]["template"]["spec"]["containers"][0]
    args = redis["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--appendfsync") + 1] == fsync
    assert args[args.index("--dir") + 1] == "/data"
    assert {"name": "data", "mountPath": "/data"} in redis["volumeMounts"]
    assert [t["metadata"]["name"] for t in statefulset["spec"]["volumeClaimTemplates"]] == ["data"]
    session = env_of(container(rendered.one("Deployment", component("session"))))
    assert session["CHATSTACK_SESSION_REDIS_URL"] == f"redis://{component('redis')}:6379/0"
    assert rendered.one("Service", component("redis"))["spec"]["ports"][0]["port"] == 6379


def test_redis_appendfsync_defaults_to_everysec() -> None:
    assert chart().values["redis"]["appendfsync"] == "everysec"


def test_external_redis_replaces_the_statefulset() -> None:
    url = "redis://redis.example.internal:6379/2"
    rendered = render(values("values-dev-cpu.yaml"), {"redis": {"external": {"url": url}}})
    assert rendered.all("StatefulSet") == [] and component("redis") not in {
        s["metadata"]["name"] for s in rendered.all("Service")}
    assert env_of(container(rendered.one("Deployment", component("session"))))["CHATSTACK_SESSION_REDIS_URL"] == url
    from_secret = render(values("values-dev-cpu.yaml"), {"redis": {"external": {"existingSecret": "redis-url"}}})
    env = env_of(container(from_secret.one("Deployment", component("session"))))
    assert env["CHATSTACK_SESSION_REDIS_URL"] == {"secretKeyRef": {"name": "redis-url", "key": "url"}}


# -- bad values -----------------------------------------------------------------------------
BAD_VALUES: dict[str, tuple[dict[str, Any], str]] = {
    "negative replicas": ({"tokenizer": {"replicas": -1}}, "at '/tokenizer/replicas': minimum: got -1, want 0"),
    "unknown runtime": ({"runtime": "nomad"}, "at '/runtime': value must be one of 'kubernetes', 'ray'"),
    "gpu without count": ({"generation": {"gpu": {"enabled": True}}}, "at '/generation/gpu': missing property 'count'"),
    "ray gpu group without count": ({"ray": {"gpuWorkers": {"gpu": {"count": None}}}},
                                    "at '/ray/gpuWorkers/gpu': missing property 'count'"),
    "misspelt key": ({"session": {"replica": 3}}, "additional properties 'replica' not allowed"),
    "unknown appendfsync": ({"redis": {"appendfsync": "sometimes"}}, "at '/redis/appendfsync': value must be one of"),
    "unknown routing policy": ({"gateway": {"balancing": {"routing": {"generation": "random"}}}},
                               "at '/gateway/balancing/routing/generation': value must be one of 'round_robin', "
                               "'least_loaded', 'session_affinity'"),
    "routing for a service the gateway does not call": ({"gateway": {"balancing": {"routing": {"redis": "round_robin"}}}},
                                                        "additional properties 'redis' not allowed"),
    "negative load factor": ({"gateway": {"balancing": {"affinityLoadFactor": -0.1}}},
                             "at '/gateway/balancing/affinityLoadFactor': minimum: got -0.1, want 0"),
    "zero resolve interval": ({"gateway": {"balancing": {"resolveIntervalSeconds": 0}}},
                              "at '/gateway/balancing/resolveIntervalSeconds': exclusiveMinimum"),
    "negative connection age": ({"session": {"maxConnectionAgeSeconds": -1}},
                                "at '/session/maxConnectionAgeSeconds': minimum: got -1, want 0"),
    "route parent without a name": ({"gateway": {"grpcRoute": {"parentRefs": [{"namespace": "gw"}]}}},
                                    "at '/gateway/grpcRoute/parentRefs/0': missing property 'name'"),
    "http route parent without a name": ({"gateway": {"httpRoute": {"parentRefs": [{"namespace": "gw"}]}}},
                                         "at '/gateway/httpRoute/parentRefs/0': missing property 'name'"),
    "http port out of range": ({"gateway": {"httpPort": 0}}, "at '/gateway/httpPort': minimum: got 0, want 1"),
    "http enabled as a string": ({"gateway": {"http": {"enabled": "yes"}}},
                                 "at '/gateway/http/enabled': got string, want boolean"),
    "stream timeout that is no duration": ({"gateway": {"httpRoute": {"requestTimeout": "1 hour"}}},
                                           "at '/gateway/httpRoute/requestTimeout': '1 hour' does not match pattern"),
    "misspelt http ingress key": ({"gateway": {"ingress": {"http": {"enable": True}}}},
                                  "additional properties 'enable' not allowed"),
}


@pytest.mark.parametrize("case", BAD_VALUES)
def test_bad_values_are_rejected_by_render_and_lint_with_the_offending_key(case: str) -> None:
    bad, message = BAD_VALUES[case]
    layers = (values("values-dev-cpu.yaml"), bad)
    with pytest.raises(helm.HelmValuesError, match=re.escape(message)):
        chart().render(merge(*layers), name=RELEASE, namespace=NAMESPACE)
    report = helm.lint(CHART, merge(*layers), namespace=NAMESPACE)
    assert any(message in error for error in report["errors"]), report["errors"]


def test_tensor_parallel_beyond_the_gpu_count_is_refused() -> None:
    message = render_error(values("values-gpu.yaml"), {"generation": {"config": {"tensor_parallel_size": 2}}})
    assert "generation.config.tensor_parallel_size (2) needs at least that many GPUs" in message


# -- schema ---------------------------------------------------------------------------------
def schema_properties(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every (path, schema) under a `properties` anywhere in the schema (definitions and items too)."""
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        for key, child in node.items():
            if key == "properties" and isinstance(child, dict):
                for name, prop in child.items():
                    found.append((f"{path}.{name}", prop))
                    found.extend(schema_properties(prop, f"{path}.{name}"))
            else:
                found.extend(schema_properties(child, f"{path}/{key}" if key != "properties" else path))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            found.extend(schema_properties(child, f"{path}[{i}]"))
    return found


def test_every_schema_property_has_a_description() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    properties = schema_properties(schema)
    assert len(properties) > 200
    missing = [path for path, prop in properties if not str(prop.get("description", "")).strip()]
    assert missing == []


def test_schema_types_replicas_runtime_and_gpu_count() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    props = schema["properties"]
    assert props["runtime"]["enum"] == ["kubernetes", "ray"]
    for name in SERVICES:
        assert props[name]["properties"]["replicas"] == {
            "description": props[name]["properties"]["replicas"]["description"], "type": "integer", "minimum": 0}
    gpu = schema["definitions"]["gpu"]
    assert gpu["then"] == {"required": ["count"]} and gpu["properties"]["count"]["minimum"] == 1


def test_chart_defaults_satisfy_the_schema() -> None:
    chart().validate_schema(chart().values)


# -- autoscaling ----------------------------------------------------------------------------
def test_llm_signals_scale_generation_on_waiting_requests_per_pod() -> None:
    rendered = render(values("values-gpu.yaml"))
    hpa = rendered.one("HorizontalPodAutoscaler", component("generation"))
    assert hpa["spec"]["metrics"] == [{"type": "Pods", "pods": {
        "metric": {"name": "chatstack_generation_engine_waiting_requests"},
        "target": {"type": "AverageValue", "averageValue": "4"}}}]
    assert "replicas" not in rendered.one("Deployment", component("generation"))["spec"]
    gateway = rendered.one("HorizontalPodAutoscaler", component("gateway"))
    assert gateway["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert "replicas" not in rendered.one("Deployment", component("gateway"))["spec"]
    assert rendered.one("Deployment", component("reward"))["spec"]["replicas"] == 1


def test_keda_replaces_the_generation_hpa_with_a_prometheus_scaled_object() -> None:
    rendered = render(values("values-dev-cpu.yaml"), {"keda": {
        "enabled": True, "prometheus": {"serverAddress": "http://prometheus.monitoring.svc:9090"}}})
    scaled = rendered.one("ScaledObject", component("generation"))
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["metadata"]["serverAddress"] == "http://prometheus.monitoring.svc:9090"
    assert "chatstack_generation_engine_waiting_requests" in trigger["metadata"]["query"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == component("generation")
    assert rendered.all("HorizontalPodAutoscaler") == []
    assert "replicas" not in rendered.one("Deployment", component("generation"))["spec"]


def test_keda_and_llm_signals_cannot_both_scale_generation() -> None:
    message = render_error(values("values-gpu.yaml"), {"keda": {
        "enabled": True, "prometheus": {"serverAddress": "http://prometheus:9090"}}})
    assert "enable one" in message


# -- observability --------------------------------------------------------------------------
def test_service_monitors_scrape_the_metrics_port_their_service_defines() -> None:
    rendered = render(values("values-gpu.yaml"))
    monitors = rendered.all("ServiceMonitor")
    assert {m["metadata"]["name"] for m in monitors} == {component(s) for s in [*SERVICES, "redis"]}
    for monitor in monitors:
        selector = monitor["spec"]["selector"]["matchLabels"]
        services = [s for s in rendered.all("Service")
                    if selector.items() <= s["metadata"]["labels"].items() and s["spec"].get("clusterIP") != "None"]
        assert len(services) == 1, monitor["metadata"]["name"]
        endpoint = monitor["spec"]["endpoints"][0]
        port = next(p for p in services[0]["spec"]["ports"] if p["name"] == endpoint["port"])
        pods = [w for w in rendered.docs if w["kind"] in ("Deployment", "StatefulSet")
                and w["spec"]["selector"]["matchLabels"].items() <= services[0]["spec"]["selector"].items()]
        container_ports = {p["name"]: p["containerPort"] for w in pods
                           for c in w["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
        name = monitor["metadata"]["name"].removeprefix(f"{RELEASE}-")
        if name in SERVICES:
            assert container_ports[port["targetPort"]] == SERVICES[name][1]
            # The metrics carry their own `service` label; honorLabels keeps it.
            assert endpoint["honorLabels"] is True
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def prometheus_rule(*layers: dict[str, Any]) -> dict[str, Any]:
    rules = render(*layers).all("PrometheusRule")
    assert len(rules) == 1
    return rules[0]


def test_prometheus_rules_pass_promtool(tmp_path: Path) -> None:
    for values_file in VALUES_FILES:
        rules = tmp_path / f"rules-{values_file}"
        rule = prometheus_rule(values(values_file), {"observability": {"prometheusRule": {"enabled": True}}})
        rules.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
        check = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "SUCCESS: 5 rules found" in check.stdout


def test_alerts_fire_on_trouble_and_stay_quiet_otherwise(tmp_path: Path) -> None:
    rule = prometheus_rule(values("values-dev-cpu.yaml"), {"observability": {"prometheusRule": {"enabled": True}}})
    groups = copy.deepcopy(rule["spec"]["groups"])
    for group in groups:  # promtool compares annotations too; these tests are about when alerts fire
        for r in group["rules"]:
            r.pop("annotations")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    rpc = 'chatstack_rpc_requests_total{namespace="chat", service="%s", method="M", code="%s"}'
    ttft = 'chatstack_generation_time_to_first_token_seconds_bucket{namespace="chat", le="%s"}'
    waiting = 'chatstack_generation_engine_waiting_requests{namespace="chat", pod="g-0"}'
    ns = {"namespace": "chat"}

    def case(series: dict[str, str], alert: str, fires: dict[str, str] | None) -> dict[str, Any]:
        return {"interval": "1m", "input_series": [{"series": s, "values": v} for s, v in series.items()],
                "alert_rule_test": [{"eval_time": "30m", "alertname": alert,
                                     "exp_alerts": [{"exp_labels": fires}] if fires else []}]}

    tests = [
        # 10% INTERNAL on the tokenizer fires; a third INVALID_ARGUMENT on the session (the callers'
        # fault) does not.
        case({rpc % ("tokenizer", "OK"): "0+90x40", rpc % ("tokenizer", "INTERNAL"): "0+10x40",
              rpc % ("session", "OK"): "0+100x40", rpc % ("session", "INVALID_ARGUMENT"): "0+50x40"},
             "ChatstackHighErrorRate", {**ns, "service": "tokenizer", "severity": "warning"}),
        case({rpc % ("tokenizer", "OK"): "0+99x40", rpc % ("tokenizer", "UNAVAILABLE"): "0+1x40"},
             "ChatstackHighErrorRate", None),
        # 90% of first tokens between 2.5 s and 5 s: p95 ~ 4.9 s > 2 s.
        case({ttft % "1": "0+1x40", ttft % "2.5": "0+1x40", ttft % "5": "0+10x40", ttft % "+Inf": "0+10x40"},
             "ChatstackTimeToFirstTokenHigh", {**ns, "severity": "warning"}),
        case({ttft % "1": "0+10x40", ttft % "2.5": "0+10x40", ttft % "5": "0+10x40", ttft % "+Inf": "0+10x40"},
             "ChatstackTimeToFirstTokenHigh", None),
        # One more waiting request every minute fires; a long but steady queue does not.
        case({waiting: "0+1x40"}, "ChatstackGenerationQueueGrowing", {**ns, "severity": "warning"}),
        case({waiting: "20x40"}, "ChatstackGenerationQueueGrowing", None),
        case({'up{namespace="chat", job="chatstack-redis"}': "1x5 0x35"},
             "ChatstackRedisDown", {**ns, "job": "chatstack-redis", "severity": "critical"}),
        case({'up{namespace="chat", job="chatstack-redis"}': "1x40",
              'redis_up{namespace="chat", job="chatstack-redis"}': "1x40"}, "ChatstackRedisDown", None),
        case({rpc % ("session", "OK"): "0+100x40", rpc % ("session", "UNAVAILABLE"): "0+5x40"},
             "ChatstackSessionRedisUnavailable", {**ns, "severity": "critical"}),
        case({rpc % ("session", "OK"): "0+100x40"}, "ChatstackSessionRedisUnavailable", None),
    ]
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(
        {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}))
    run = subprocess.run(["promtool", "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def dashboard() -> dict[str, Any]:
    configmap = render(values("values-gpu.yaml")).one("ConfigMap", component("dashboards"))
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    loaded: dict[str, Any] = json.loads(configmap["data"]["chatstack.json"])
    return loaded


def test_dashboard_has_latency_ttft_itl_tokens_and_error_panels() -> None:
    board = dashboard()
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    exprs = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in panels}
    assert "chatstack_rpc_duration_seconds_bucket" in exprs["Per-RPC latency p95"]
    assert "chatstack_generation_time_to_first_token_seconds_bucket" in exprs["Time to first token"]
    assert "chatstack_generation_inter_token_latency_seconds_bucket" in exprs["Inter-token latency"]
    assert "rate(chatstack_generation_generated_tokens_total" in exprs["Tokens per second"]
    assert 'code!="OK"' in exprs["Error ratio by service (non-OK / all)"]


def test_dashboard_shows_calls_per_backend_pod_and_the_prefix_cache_hit_rate() -> None:
    panels = {p["title"]: p for p in dashboard()["panels"]}
    assert panels["Balancing (gateway to backend pods)"]["type"] == "row"
    per_pod = panels["Gateway calls per backend pod"]["targets"][0]
    assert per_pod["expr"].startswith("sum by (service, replica) (rate(chatstack_gateway_backend_requests_total{")
    assert per_pod["legendFormat"] == "{{service}} {{replica}}"
    assert 'outcome="error"' in panels["Failed gateway calls per backend pod"]["targets"][0]["expr"]
    hit_rate = panels["Generation prefix-cache hit rate"]
    assert hit_rate["fieldConfig"]["defaults"]["unit"] == "percentunit"
    by_pod, overall = (t["expr"] for t in hit_rate["targets"])
    assert by_pod == ("sum by (pod) (rate(chatstack_generation_prefix_cache_hits_total{namespace=~\"$namespace\"}"
                      "[$__rate_interval])) / sum by (pod) (rate(chatstack_generation_prefix_cache_queries_total"
                      "{namespace=~\"$namespace\"}[$__rate_interval]))")
    assert overall.startswith("sum(rate(chatstack_generation_prefix_cache_hits_total")


def referenced_metric_names() -> dict[str, set[str]]:
    """Metric names in every query the chart renders: dashboard, alerts, HPA and KEDA."""
    board = dashboard()
    queries = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    queries += [v["query"]["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    rules = [r["expr"] for g in prometheus_rule(values("values-gpu.yaml"))["spec"]["groups"] for r in g["rules"]]
    hpa = render(values("values-gpu.yaml")).one("HorizontalPodAutoscaler", component("generation"))
    keda = render(values("values-dev-cpu.yaml"), {"keda": {"enabled": True, "prometheus": {
        "serverAddress": "http://p:9090"}}}).one("ScaledObject", component("generation"))
    autoscalers = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"]]
    autoscalers += [t["metadata"]["query"] for t in keda["spec"]["triggers"]]
    return {source: {n for q in texts for n in METRIC_NAME.findall(q)}
            for source, texts in (("dashboard", queries), ("alerts", rules), ("autoscalers", autoscalers))}


def base_name(sample: str) -> str:
    return re.sub(r"_(bucket|sum|count|created)$", "", sample)


def test_queries_reference_the_rpc_generation_and_session_metric_families() -> None:
    names = referenced_metric_names()
    assert {"chatstack_rpc_requests_total", "chatstack_rpc_duration_seconds_bucket",
            "chatstack_generation_time_to_first_token_seconds_bucket",
            "chatstack_generation_inter_token_latency_seconds_bucket",
            "chatstack_generation_e2e_request_latency_seconds_bucket",
            "chatstack_session_redis_duration_seconds_bucket", "chatstack_gateway_backend_requests_total",
            "chatstack_generation_prefix_cache_hits_total",
            "chatstack_generation_prefix_cache_queries_total"} <= names["dashboard"]
    assert {"chatstack_rpc_requests_total", "chatstack_generation_time_to_first_token_seconds_bucket",
            "chatstack_generation_engine_waiting_requests"} <= names["alerts"]
    assert names["autoscalers"] == {"chatstack_generation_engine_waiting_requests"}


def scrape(metrics_port: int) -> set[str]:
    """Sample names on a live /metrics endpoint."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    return {m.group(1) for m in re.finditer(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", body, re.M)}


@pytest.mark.integration
def test_dashboard_and_alerts_use_only_metric_names_the_services_export(
    helm_tokenizer_service: tuple[str, int], session_service: tuple[str, int],
    generation_service: tuple[str, int], gateway: tuple[str, int],
) -> None:
    # One call on each service, so the labelled series and the histograms' buckets exist.
    with grpc.insecure_channel(helm_tokenizer_service[0]) as channel:
        tokenizer_pb2_grpc.TokenizerServiceStub(channel).Encode(
            tokenizer_pb2.EncodeRequest(texts=["hello"]), timeout=30)
    with grpc.insecure_channel(session_service[0]) as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        md = (("x-chatstack-owner", f"helm-{uuid.uuid4().hex[:8]}"),)
        session = stub.CreateSession(session_pb2.CreateSessionRequest(), metadata=md, timeout=30).session
        stub.PushTurn(session_pb2.PushTurnRequest(session_id=session.session_id, role=common_pb2.ROLE_USER,
                                                  content="hi", token_count=1), metadata=md, timeout=30)
    with grpc.insecure_channel(generation_service[0]) as channel:
        generation_pb2_grpc.GenerationServiceStub(channel).Generate(generation_pb2.GenerateRequest(
            token_ids=common_pb2.TokenIds(ids=[1, 300, 301, 302]),
            sampling=generation_pb2.SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True)), timeout=120)
    # A chat, so the gateway's per-replica series (labelled by backend and replica) exist.
    with ChatClient(gateway[0], ALICE_KEY, timeout=120) as client:
        client.chat("hello", max_tokens=8)

    exported = set().union(*(scrape(port) for port in (
        helm_tokenizer_service[1], session_service[1], generation_service[1], gateway[1])))
    assert {"chatstack_rpc_requests_total", "chatstack_generation_inter_token_latency_seconds_bucket",
            "chatstack_session_redis_duration_seconds_bucket", "chatstack_gateway_backend_requests_total",
            "chatstack_generation_prefix_cache_queries_total"} <= exported
    for source, names in referenced_metric_names().items():
        assert names - exported == set(), f"{source} queries series no service exports"
    # Names in the dashboard's text (descriptions too) are metric families that exist.
    mentioned = {base_name(n) for n in METRIC_NAME.findall(json.dumps(dashboard()))}
    assert mentioned - {base_name(n) for n in exported} == set()


# -- NOTES and images -----------------------------------------------------------------------
@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_notes_explain_how_to_reach_the_gateway_and_chat(values_file: str) -> None:
    notes = render(values(values_file)).notes
    assert f"kubectl -n {NAMESPACE} port-forward svc/{component('gateway')} 50050" in notes
    assert "chatstack chat --target localhost:50050 --api-key <your-api-key>" in notes


@pytest.mark.parametrize("values_file", KUBERNETES_FILES)
def test_notes_give_the_openai_base_url(values_file: str) -> None:
    notes = render(values(values_file)).notes
    assert f"kubectl -n {NAMESPACE} port-forward svc/{component('gateway')} {GATEWAY_HTTP_PORT}" in notes
    assert f"export OPENAI_BASE_URL=http://localhost:{GATEWAY_HTTP_PORT}/v1" in notes
    assert "export OPENAI_API_KEY=<your-api-key>" in notes


def test_notes_give_the_route_and_ingress_urls_of_the_openai_api() -> None:
    routed = render(values("values-gpu.yaml")).notes
    assert f"HTTPRoute {component('gateway')} attaches /v1 to Gateway gateway-system/public (listener https)" in routed
    assert "export OPENAI_BASE_URL=https://chat.example.com/v1" in routed
    assert f"get httproute {component('gateway')}" in routed
    ingress = render(values("values-dev-cpu.yaml"), HTTP_INGRESS).notes
    assert f"Ingress {component('gateway')}-http serves /v1 on chat.example.com" in ingress
    assert "export OPENAI_BASE_URL=https://chat.example.com/v1" in ingress
    no_tls = render(values("values-dev-cpu.yaml"), merge(HTTP_INGRESS, {"gateway": {"ingress": {"tls": {"secretName": ""}}}}))
    assert "export OPENAI_BASE_URL=http://chat.example.com/v1" in no_tls.notes
    assert "API keys cross the network in clear" in no_tls.notes
    plain = render(values("values-dev-cpu.yaml")).notes
    assert "gateway.httpRoute (set parentRefs) or gateway.ingress.http (set host)" in plain


ENTRYPOINT = DOCKER_DIR / "chatstack-entrypoint.sh"


def test_images_run_non_root_with_pinned_torch_and_their_vllm_extra() -> None:
    for flavour in ("cpu", "gpu"):
        text = (DOCKER_DIR / f"Dockerfile.{flavour}").read_text()
        assert "ARG TORCH_VERSION=2.13.0" in text and '"torch==${TORCH_VERSION}"' in text
        assert f'".[{flavour}]"' in text
        assert "USER 10001:10001" in text
        assert '"/usr/local/bin/chatstack-entrypoint"]' in text
        # Common builders (buildah, Docker's classic builder) know neither heredocs nor COPY --chmod.
        assert "COPY deploy/docker/chatstack-entrypoint.sh /usr/local/bin/chatstack-entrypoint" in text
        assert "<<" not in text and "--chmod" not in text
    assert "pip uninstall -y torchvision torchaudio torchcodec" in (DOCKER_DIR / "Dockerfile.cpu").read_text()
    assert (DOCKER_DIR / "Dockerfile.cpu").read_text().startswith("# syntax=docker/dockerfile:1.7")


def test_image_entrypoint_runs_the_named_service_module() -> None:
    assert os.access(ENTRYPOINT, os.X_OK)  # the build context keeps the mode too
    bin_dir = str(Path(sys.executable).parent)
    run = subprocess.run(["sh", str(ENTRYPOINT), "tokenizer", "--help"], capture_output=True,
                         text=True, env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "--model-dir" in run.stdout
