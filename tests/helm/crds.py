"""Offline validation of the custom resources the chart renders against their CRDs' schemas.

- Prometheus Operator (ServiceMonitor, PodMonitor, PrometheusRule), KEDA (ScaledObject) and Gateway
  API (GRPCRoute, HTTPRoute): the schemas the kubernetes-models project generates from each operator's API
  types and publishes on npm, pinned in the Makefile (CRD_MODELS) and installed into .tools by
  `make tools`; validate_crs.mjs checks types, enums, patterns and ranges (ajv) and unknown fields
  (TypeScript's excess-property check against the same package's typings).
- KubeRay (RayService): no package registry ships its CRD schema, so rayservice.schema.json keeps
  the ray.io/v1 spec fields by hand (strict: unknown fields fail) and the pod templates inside are
  validated as Pods against Kubernetes' own schemas (kubernetes-validate).
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate

HERE = Path(__file__).resolve().parent
TOOLS = HERE.parents[1] / ".tools"
NODE_VALIDATOR = HERE / "validate_crs.mjs"
RAYSERVICE_SCHEMA = HERE / "rayservice.schema.json"
KUBE_VERSION = "1.37.0"  # the newest schemas kubernetes-validate ships

# What each custom resource is checked against (every kind the chart may render).
SCHEMA_SOURCES = {
    "ServiceMonitor": "npm", "PodMonitor": "npm", "PrometheusRule": "npm", "ScaledObject": "npm",
    "GRPCRoute": "npm", "HTTPRoute": "npm", "RayService": "rayservice.schema.json",
}


def crd_errors(resources: list[dict[str, Any]]) -> list[list[str]]:
    """Per resource, what its CRD's schema rejects (an empty list: valid)."""
    return [list(errors) for errors in _crd_errors(json.dumps(resources, sort_keys=True))]


@functools.cache
def _crd_errors(resources_json: str) -> tuple[tuple[str, ...], ...]:
    resources: list[dict[str, Any]] = json.loads(resources_json)
    unknown = {r["kind"] for r in resources} - set(SCHEMA_SOURCES)
    assert not unknown, f"no schema for {unknown}: add the kind to tests/helm/crds.py"
    npm = [r for r in resources if SCHEMA_SOURCES[r["kind"]] == "npm"]
    npm_errors = iter(_node_validate(npm) if npm else [])
    return tuple(tuple(next(npm_errors) if SCHEMA_SOURCES[r["kind"]] == "npm" else rayservice_errors(r))
                 for r in resources)


def _node_validate(resources: list[dict[str, Any]]) -> list[list[str]]:
    """One run of validate_crs.mjs over the resources (the node start and the type check dominate)."""
    node = shutil.which("node")
    if node is None or not (TOOLS / ".crd-models").exists():
        raise RuntimeError("the CRD schemas are not installed: run `make tools` (needs node and npm)")
    run = subprocess.run([node, str(NODE_VALIDATOR), str(TOOLS)], input=json.dumps(resources),
                         capture_output=True, text=True, timeout=120, check=False)
    if run.returncode != 0:
        raise RuntimeError(f"validate_crs.mjs failed: {run.stderr}")
    errors: list[list[str]] = json.loads(run.stdout)
    return errors


def rayservice_errors(resource: dict[str, Any]) -> list[str]:
    """What rayservice.schema.json rejects, then each Ray pod template as a Pod."""
    schema = json.loads(RAYSERVICE_SCHEMA.read_text())
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in jsonschema.Draft7Validator(schema).iter_errors(resource)]
    cluster = resource.get("spec", {}).get("rayClusterConfig", {})
    groups = [cluster.get("headGroupSpec", {}), *cluster.get("workerGroupSpecs", [])]
    for group in groups:
        template = group.get("template", {})
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "ray", **template.get("metadata", {})}, "spec": template.get("spec", {})}
        try:
            kubernetes_validate.validate(pod, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{group.get('groupName', 'head')} template: {error.message}")
    return errors
