"""The service catalog: each chatstack service's name, proto service and default ports, and the
settings of the local development stack, written once.

Config defaults, `make run` (`local_stack`), the Ray runtime, the test fixtures, the load test and
the benchmarks read them from here; the Helm chart's values are checked against it in its tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatstack.v1 import chat_pb2, generation_pb2, reward_pb2, safety_pb2, session_pb2, tokenizer_pb2


@dataclass(frozen=True)
class ServiceInfo:
    """One service: `python -m chatstack.<name>`, the proto service its gRPC health reports, and
    its default gRPC and metrics ports."""

    name: str
    proto_service: str
    port: int
    metrics_port: int

    @property
    def local_address(self) -> str:
        """Where the service listens by default (and under `make run`)."""
        return f"127.0.0.1:{self.port}"


def _proto(module: object, service: str) -> str:
    return str(module.DESCRIPTOR.services_by_name[service].full_name)  # type: ignore[attr-defined]


GATEWAY = ServiceInfo("gateway", _proto(chat_pb2, "ChatService"), 50050, 9100)
TOKENIZER = ServiceInfo("tokenizer", _proto(tokenizer_pb2, "TokenizerService"), 50051, 9101)
GENERATION = ServiceInfo("generation", _proto(generation_pb2, "GenerationService"), 50052, 9102)
REWARD = ServiceInfo("reward", _proto(reward_pb2, "RewardService"), 50053, 9103)
SESSION = ServiceInfo("session", _proto(session_pb2, "SessionService"), 50054, 9104)
SAFETY = ServiceInfo("safety", _proto(safety_pb2, "SafetyService"), 50055, 9105)

#: The gateway's OpenAI-compatible HTTP API (`http://127.0.0.1:8080/v1` under `make run`).
GATEWAY_HTTP_PORT = 8080

#: The gateway's backends, in the order the gateway's settings name them.
BACKENDS = (TOKENIZER, GENERATION, REWARD, SESSION)
#: Every service; SAFETY is the gateway's optional backend (its `safety_address`, empty by default).
SERVICES = {s.name: s for s in (GATEWAY, *BACKENDS, SAFETY)}

#: The tiny LM's name under `make run` (what GET /v1/models lists; OpenAI clients send it as `model`).
DEV_MODEL_NAME = "chatstack-tiny"
#: Redis of `make run` and of `make run-ray`: not 6379, so a system Redis is left alone, and not
#: each other's, so both stacks can run at once.
DEV_REDIS_PORT = 6390
DEV_RAY_REDIS_PORT = 6391
#: Nice of `make run`'s (and `make run-ray`'s) scheduling group while the stack runs: the whole
#: stack, engines and request path together, yields the CPU to every other process on the machine
#: (`chatstack.core.sched_group`; 0 = leave it).
DEV_STACK_GROUP_NICE = 10
#: vLLM settings of the tiny models on CPU (both runtimes). float32: vLLM's bf16 CPU kernels die
#: with SIGILL on machines that report AMX but do not let a process use it; the tiny models lose
#: nothing. A small KV cache: the tiny models' contexts are short, and several engines share a machine.
TINY_ENGINE_SETTINGS: dict[str, str | float] = {"dtype": "float32", "cpu_kvcache_space_gib": 1.0}
#: The same as service CLI flags.
TINY_ENGINE_FLAGS = tuple(part for name, value in TINY_ENGINE_SETTINGS.items()
                          for part in (f"--{name.replace('_', '-')}", f"{value:g}" if isinstance(value, float)
                                       else value))
