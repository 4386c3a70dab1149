"""Scale-out over real replicas: two generation replicas and two session replicas behind DNS names
(a DNS server on loopback standing in for headless Services), one gateway routing by session.

The replicas of a service share a port on 127.0.0.2, 127.0.0.3, ... as pods share a port on their
own IPs. Which replica served a call is read from the gateway's per-replica counters.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from chatstack.client import ChatClient, collect
from chatstack.core.process import ManagedProcess, health_status, service_argv, wait_until
from chatstack.core.redis_process import RedisProcess
from tests.integration.conftest import ALICE_KEY, GENERATION_SERVICE, start_gateway, start_generation_service
from tests.loopback_dns import LoopbackDns, free_shared_port
from tests.scrape import metric_labelled
from tests.stack_fixtures import GENERATION_FLAGS, start_session_service

pytestmark = pytest.mark.integration

GEN_HOSTS = ["127.0.0.2", "127.0.0.3"]
SESSION_HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]  # the third joins mid-test
GEN_NAME, SESSION_NAME = "generation.chatstack.test", "session.chatstack.test"


@dataclass
class ScaleOut:
    """The replicas, the DNS that names them and the gateway over them."""

    dns: LoopbackDns
    gateway: str
    gateway_metrics: int
    gen_port: int
    session_port: int
    generation: dict[str, ManagedProcess] = field(default_factory=dict)  # address -> process
    gen_metrics: dict[str, int] = field(default_factory=dict)
    sessions: list[ManagedProcess] = field(default_factory=list)
    homes: dict[str, str] = field(default_factory=dict)  # session id -> generation replica

    def served(self, service: str, replica: str) -> float:
        """Calls the gateway completed or failed on `replica` of `service`."""
        return sum(metric_labelled(self.gateway_metrics, "chatstack_gateway_backend_requests_total",
                                   f'outcome="{outcome}",replica="{replica}",service="{service}"')
                   for outcome in ("ok", "error", "cancelled"))

    def gen_counts(self) -> dict[str, float]:
        return {address: self.served("generation", address) for address in self.generation}

    def serving(self, service: str) -> float:
        return metric_labelled(self.gateway_metrics, "chatstack_gateway_backend_replicas",
                               f'service="{service}",state="serving"')


@pytest.fixture(scope="module")
def scale_out(models_dir: Path, log_dir: Path, redis_server: RedisProcess, tokenizer_address: str,
              reward_service: tuple[str, int]) -> Iterator[ScaleOut]:
    dns = LoopbackDns().start()
    gen_port, session_port = free_shared_port(GEN_HOSTS), free_shared_port(SESSION_HOSTS)
    procs: list[ManagedProcess] = []
    try:
        sessions = []
        for i, host in enumerate(SESSION_HOSTS[:2]):
            proc, _, _ = start_session_service(redis_server.url, log_dir, name=f"session-replica-{i}",
                                               host=host, port=session_port)
            procs.append(proc)
            sessions.append(proc)
        generation, gen_metrics = {}, {}
        for i, host in enumerate(GEN_HOSTS):
            proc, address, metrics_port = start_generation_service(
                models_dir / "lm", log_dir, name=f"generation-replica-{i}", host=host, port=gen_port)
            procs.append(proc)
            generation[address], gen_metrics[address] = proc, metrics_port
        dns.set(GEN_NAME, GEN_HOSTS)
        dns.set(SESSION_NAME, SESSION_HOSTS[:2])
        gw, address, metrics_port, _ = start_gateway(
            log_dir, name="gateway-scale-out",
            extra_flags=("--resolve-interval-seconds", "0.5", "--single-answer-scoring", "off",
                         "--generation-routing", "session_affinity", "--session-routing", "round_robin"),
            tokenizer=tokenizer_address, reward=reward_service[0],
            generation=dns.target(GEN_NAME, gen_port), session=dns.target(SESSION_NAME, session_port))
        procs.append(gw)
        with ChatClient(address, ALICE_KEY, timeout=120) as warm:  # the gateway asks the model's
            warm.chat("warm up", max_tokens=2)  # limits once: later counts see only the answers
        yield ScaleOut(dns, address, metrics_port, gen_port, session_port, generation, gen_metrics, sessions)
    finally:
        for proc in reversed(procs):
            proc.stop(30)
        dns.stop()


@pytest.fixture
def alice(scale_out: ScaleOut) -> Iterator[ChatClient]:
    with ChatClient(scale_out.gateway, ALICE_KEY, timeout=120) as client:
        yield client


def _turn(stack: ScaleOut, alice: ChatClient, session_id: str, message: str) -> tuple[str, str]:
    """One Chat; returns (session id, the generation replica that answered it)."""
    before = stack.gen_counts()
    result = alice.chat(message, session_id=session_id, max_tokens=8)
    after = stack.gen_counts()
    moved = [a for a in after if after[a] != before[a]]
    assert len(moved) == 1, (before, after)
    return result.session_id, moved[0]


def test_sessions_spread_over_both_replicas_and_each_sticks_to_one(scale_out: ScaleOut, alice: ChatClient) -> None:
    served_turns: Counter[str] = Counter()
    for s in range(30):
        session_id, replicas = "", set()
        for t in range(3):
            session_id, replica = _turn(scale_out, alice, session_id, f"session {s} turn {t}: hello there")
            replicas.add(replica)
            served_turns[replica] += 1
        assert len(replicas) == 1, f"session {session_id} moved between {replicas}"
        scale_out.homes[session_id] = replicas.pop()
    print(f"\nturns per generation replica: {dict(served_turns)}")
    assert all(served_turns[a] >= 0.25 * 90 for a in scale_out.generation), served_turns
    # the two session replicas behind one name both took their share (round robin)
    session_calls = [scale_out.served("session", f"{h}:{scale_out.session_port}") for h in SESSION_HOSTS[:2]]
    print(f"session calls per replica: {session_calls}")
    assert min(session_calls) >= 0.25 * sum(session_calls)


def _stream_until_first_delta(alice: ChatClient, session_id: str, outcome: dict[str, object]) -> threading.Thread:
    """A long Chat in a thread; returns once it has streamed its first delta."""
    started = threading.Event()

    def run() -> None:
        stream = alice.chat_stream("write a very long answer", session_id=session_id, max_tokens=1000,
                                   temperature=1.0)

        def events() -> Iterator[object]:
            for event in stream:
                if event.WhichOneof("event") == "delta":
                    started.set()
                yield event
        try:
            outcome["result"] = collect(events())
        except grpc.RpcError as err:
            outcome["code"] = err.code()
        finally:
            started.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(60)
    assert "result" not in outcome and "code" not in outcome, f"finished before the kill: {outcome}"
    return thread


def test_killing_a_replica_fails_only_its_calls_in_flight_and_moves_its_sessions(
        scale_out: ScaleOut, alice: ChatClient, models_dir: Path, log_dir: Path) -> None:
    assert scale_out.homes, "needs the sessions of the spread test"
    survivor, victim = GEN_HOSTS[0], GEN_HOSTS[1]
    survivor, victim = (f"{h}:{scale_out.gen_port}" for h in (survivor, victim))
    on = {replica: [s for s, home in scale_out.homes.items() if home == replica] for replica in (survivor, victim)}
    history = {s: alice.history(s)[1] for s in on[victim][:2]}

    # two long answers in flight on each replica (started one by one so each lands at home)
    outcomes: dict[str, dict[str, object]] = {}
    threads = []
    for s in (on[survivor][0], on[victim][0], on[survivor][1], on[victim][1]):
        outcomes[s] = {}
        threads.append(_stream_until_first_delta(alice, s, outcomes[s]))
    in_flight = {a: metric_labelled(scale_out.gateway_metrics, "chatstack_gateway_backend_in_flight",
                                    f'replica="{a}",service="generation"') for a in (survivor, victim)}
    assert in_flight == {survivor: 2.0, victim: 2.0}

    os.killpg(scale_out.generation[victim].proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
    for thread in threads:
        thread.join(120)
    for s in on[victim][:2]:
        assert outcomes[s].get("code") == grpc.StatusCode.UNAVAILABLE, outcomes[s]
        assert alice.history(s)[1] == history[s]  # the failed turn was rolled back: nothing half-written
    for s in on[survivor][:2]:
        assert "result" in outcomes[s], outcomes[s]

    # the victim's sessions now answer from the survivor
    wait_until(lambda: scale_out.serving("generation") == 1, 30, "the gateway sees one serving replica")
    for s in on[victim][:3]:
        assert _turn(scale_out, alice, s, "are you still there?")[1] == survivor

    # it comes back on the same address: while its engine loads it is NOT_SERVING and gets nothing
    proc = ManagedProcess("generation-replica-1-again", service_argv(
        "generation", "--host", GEN_HOSTS[1], "--port", str(scale_out.gen_port),
        "--metrics-port", str(scale_out.gen_metrics[victim]), "--model", str(models_dir / "lm"),
        *GENERATION_FLAGS), log_dir / "generation-replica-1-again.log")
    proc.start()
    scale_out.generation[victim] = proc
    wait_until(lambda: health_status(victim, GENERATION_SERVICE) == health_pb2.HealthCheckResponse.NOT_SERVING,
               60, "the restarted replica bound its port, NOT_SERVING", alive=proc.alive, interval=0.1)
    served_before = scale_out.served("generation", victim)
    for s in on[victim][:3]:
        assert _turn(scale_out, alice, s, "and now?")[1] == survivor
    assert scale_out.served("generation", victim) == served_before

    wait_until(lambda: health_status(victim, GENERATION_SERVICE) == health_pb2.HealthCheckResponse.SERVING,
               300, "the restarted replica SERVING", alive=proc.alive, interval=0.2)
    wait_until(lambda: scale_out.serving("generation") == 2, 30, "the gateway sees both replicas serving")
    for s in on[victim][:3]:  # its sessions come home
        assert _turn(scale_out, alice, s, "welcome back")[1] == victim


def test_a_replica_added_to_the_name_gets_traffic_and_drains_cleanly(
        scale_out: ScaleOut, alice: ChatClient, redis_server: RedisProcess, log_dir: Path) -> None:
    newcomer = f"{SESSION_HOSTS[2]}:{scale_out.session_port}"
    proc, _, _ = start_session_service(redis_server.url, log_dir, "--grace-seconds", "30",
                                       name="session-replica-2", host=SESSION_HOSTS[2], port=scale_out.session_port)
    try:
        scale_out.dns.set(SESSION_NAME, SESSION_HOSTS)
        wait_until(lambda: scale_out.serving("session") == 3, 30, "the gateway resolved the third replica")
        for _ in range(6):
            alice.create_session()
        assert scale_out.served("session", newcomer) >= 1

        # SIGTERM while still in the name: it turns NOT_SERVING, the gateway stops watching it
        # (a held Watch would keep it draining for its whole 30 s grace), calls go elsewhere
        started = time.monotonic()
        assert proc.stop(30) == 0, proc.tail()
        assert time.monotonic() - started < 15
        wait_until(lambda: scale_out.serving("session") == 2, 30, "the gateway saw the replica go")
        before = scale_out.served("session", newcomer)
        for _ in range(6):
            alice.create_session()
        assert scale_out.served("session", newcomer) == before
    finally:
        proc.stop(30)
        scale_out.dns.set(SESSION_NAME, SESSION_HOSTS[:2])
