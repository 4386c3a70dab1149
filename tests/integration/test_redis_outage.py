"""Redis killed (-9) under mixed Chat/Regenerate/Edit/Undo load: no acknowledged turn is lost, and
no session ever holds a lone or duplicated turn (issue 23). Real Redis, session service, gateway
and engines.

Each worker keeps a model of its sessions: the turns every acknowledged call left. A call that
fails may or may not have landed, so the worker then reads the session back (once Redis answers
again) and the state must be either the model as it was or the model with the call's *whole*
effect (an exchange stored whole, an undo of a whole exchange, an answer replaced); anything else
(an acknowledged turn missing, a user turn without its answer, a turn twice) is a violation. At
the end every session must read exactly as its model, and every listed session (forks, sessions
whose first call failed) must be whole.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from chatstack.client import ChatClient
from chatstack.core.process import ManagedProcess, free_port, wait_until
from chatstack.core.redis_process import RedisProcess
from chatstack.v1 import common_pb2
from tests.integration.conftest import ALICE_KEY, start_gateway, start_session_service

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
OPTIONS = {"max_tokens": 6, "temperature": 1.0}
USER, ASSISTANT = common_pb2.ROLE_USER, common_pb2.ROLE_ASSISTANT
Turns = list[tuple[str, int, str]]  # (turn id, role, content)


@dataclass
class Books:
    """What the workers did, shared (under a lock)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: int = 0  # acknowledged calls
    acked_turns: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    failed_workers: set[int] = field(default_factory=set)  # workers whose call failed
    violations: list[str] = field(default_factory=list)
    sessions: dict[str, Turns] = field(default_factory=dict)  # every model, for the final check

    def ack(self, turns: int) -> None:
        with self.lock:
            self.acked += 1
            self.acked_turns += turns

    def fail(self, code: str, worker: int) -> None:
        with self.lock:
            self.failed[code] = self.failed.get(code, 0) + 1
            self.failed_workers.add(worker)

    def violation(self, text: str) -> None:
        with self.lock:
            self.violations.append(text)


def whole(turns: Turns) -> str:
    """'' if the turns alternate user, assistant, ... and end with an answer, with no id twice."""
    ids = [t[0] for t in turns]
    if len(set(ids)) != len(ids):
        return f"a turn twice: {ids}"
    for i, (_, role, _) in enumerate(turns):
        if role != (USER if i % 2 == 0 else ASSISTANT):
            return f"turn {i} is {common_pb2.Role.Name(role)} out of order: {[common_pb2.Role.Name(r) for _, r, _ in turns]}"
    if len(turns) % 2:
        return "a lone user turn on top"
    return ""


class Worker(threading.Thread):
    """One client doing random chat operations on its own sessions (see module docstring)."""

    def __init__(self, address: str, seed: int, books: Books, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.client = ChatClient(address, ALICE_KEY, timeout=10)
        self.rng, self.books, self.stop, self.seed = random.Random(seed), books, stop, seed
        self.models: dict[str, Turns] = {}
        self.counter = 0

    def message(self) -> str:
        self.counter += 1
        return f"w{self.seed} message {self.counter}"

    def read(self, sid: str, within: float = 90) -> Turns | None:
        """The session's turns once it can be read (None: NOT_FOUND), waiting for the store with
        a deadline."""
        found: list[Turns | None] = []

        def answered() -> bool:
            try:
                found.append([(t.turn_id, t.role, t.content) for t in self.client.history(sid)[1]])
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    return False
                found.append(None)
            return True

        wait_until(answered, within, f"session {sid} to be readable", interval=0.2)
        return found[-1]

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.step()
        except Exception as exc:  # a worker's own bug must fail the test, not hide
            self.books.violation(f"worker {self.seed} crashed: {exc!r}")
        finally:
            self.client.close()

    def step(self) -> None:
        sids = list(self.models)
        if not sids or self.rng.random() < 0.2:
            return self.new_chat()
        sid = self.rng.choice(sids)
        model = self.models[sid]
        op = self.rng.choice(("chat", "chat", "regenerate", "edit", "undo")) if model else "chat"
        message = self.message()
        try:
            if op == "chat":
                r = self.client.chat(message, sid, **OPTIONS)
                self.models[sid] = [*model, (r.user_turn_id, USER, message), (r.assistant_turn_id, ASSISTANT, r.text)]
                self.books.ack(2)
            elif op == "regenerate":
                r = self.client.regenerate(sid, **OPTIONS)
                self.models[sid] = [*model[:-1], (r.assistant_turn_id, ASSISTANT, r.text)]
                self.books.ack(1)
            elif op == "undo":
                reply = self.client.undo(sid)
                self.models[sid] = model[:-len(reply.removed_turns)]
                self.books.ack(0)
            else:
                at = self.rng.randrange(0, len(model), 2)  # a user turn
                r = self.client.edit(sid, model[at][0], message, **OPTIONS)
                self.models[r.session_id] = [*model[:at], (r.user_turn_id, USER, message), (r.assistant_turn_id, ASSISTANT, r.text)]
                self.books.ack(2)
        except grpc.RpcError as exc:
            self.books.fail(exc.code().name, self.seed)
            self.resync(sid, op, message, model)

    def new_chat(self) -> None:
        message = self.message()
        stream = self.client.chat_stream(message, "", "be brief", **OPTIONS)
        sid, user_id = "", ""
        try:
            for event in stream:
                if event.WhichOneof("event") == "session":
                    sid, user_id = event.session.session_id, event.session.user_turn_id
                elif event.WhichOneof("event") == "final":
                    self.models[sid] = [(user_id, USER, message),
                                        (event.final.assistant_turn_id, ASSISTANT, event.final.text)]
                    self.books.ack(2)
        except grpc.RpcError as exc:
            self.books.fail(exc.code().name, self.seed)
            if sid:
                actual = self.read(sid)
                if actual:  # stored whole although the call failed (its reply was lost)
                    self.check(sid, actual, [[], [(actual[0][0], USER, message), *actual[1:2]]], "new chat")

    def resync(self, sid: str, op: str, message: str, model: Turns) -> None:
        actual = self.read(sid)
        if actual is None:
            self.books.violation(f"{sid}: gone after a failed {op}")
            self.models.pop(sid, None)
            return
        allowed = [model]
        if op == "chat" and len(actual) == len(model) + 2:
            allowed.append([*model, (actual[-2][0], USER, message), actual[-1]])
        elif op == "regenerate" and len(actual) == len(model) and actual[-1][0] != model[-1][0]:
            allowed.append([*model[:-1], actual[-1]])
        elif op == "undo":
            allowed.append(model[:-2])
        self.check(sid, actual, allowed, op)

    def check(self, sid: str, actual: Turns, allowed: list[Turns], op: str) -> None:
        problem = whole(actual)
        if problem or actual not in allowed:
            self.books.violation(f"{sid} after a failed {op}: {problem or 'not the model nor its whole change'}: "
                                 f"model {allowed[0]}, read {actual}")
        self.models[sid] = actual
        if not actual:
            self.models.pop(sid, None)


@pytest.fixture
def outage_stack(stack_addresses: dict[str, str], tmp_path: Path, log_dir: Path
                 ) -> Iterator[tuple[RedisProcess, str, str]]:
    """Its own Redis (to kill), session service and gateway over the shared engines; yields
    (redis, gateway address, session address). appendfsync always: with everysec Redis answers a
    write whose AOF write it postponed behind a slow background fsync (up to 2 s, Redis's own
    documented trade-off), so a kill -9 can lose acknowledged writes; what the test checks of
    the product's own writes (whole exchanges) holds either way."""
    redis = RedisProcess(free_port(), tmp_path / "redis", appendfsync="always").start()
    procs: list[ManagedProcess] = []
    try:
        session, session_address, _ = start_session_service(redis.url, log_dir, name="session-outage")
        procs.append(session)
        gateway = start_gateway(log_dir, name="gateway-outage",
                                **{**stack_addresses, "session": session_address})
        procs.append(gateway.proc)
        yield redis, gateway.address, session_address
    finally:
        for proc in reversed(procs):
            proc.stop()
        redis.stop()


def test_redis_killed_under_mixed_load_loses_no_acknowledged_turn_and_leaves_no_lone_turn(
        outage_stack: tuple[RedisProcess, str, str]) -> None:
    redis, address, _ = outage_stack
    books, stop = Books(), threading.Event()
    workers = [Worker(address, seed, books, stop) for seed in range(4)]
    for w in workers:
        w.start()
    try:
        wait_until(lambda: books.acked >= 16, 120, "16 acknowledged calls before the outage")
        redis.kill()
        # Redis stays down until every client has run into the outage (a call failed, and it now
        # waits for the store to read its session back).
        wait_until(lambda: len(books.failed_workers) == len(workers), 60, "every client to hit the outage")
        redis.start()
        before = books.acked
        wait_until(lambda: books.acked >= before + 16, 180, "16 acknowledged calls after Redis came back")
    finally:
        stop.set()
        for w in workers:
            w.join(120)
    assert not books.violations, "\n".join(books.violations[:10])

    # Every session reads exactly as its model; every listed session is whole.
    checker = Worker(address, 99, books, stop)
    try:
        for w in workers:
            for sid, model in w.models.items():
                assert checker.read(sid) == model, sid
        listed, token = [], ""
        while True:
            page = checker.client.list_sessions(page_size=50, page_token=token)
            listed += list(page.sessions)
            token = page.next_page_token
            if not token:
                break
        assert listed
        for session in listed:
            turns = checker.read(session.session_id)
            assert turns is not None and not whole(turns), (session.session_id, whole(turns or []))
    finally:
        checker.client.close()
    print(f"acknowledged calls {books.acked} ({books.acked_turns} turns), failed {books.failed}, "
          f"sessions {len(listed)}")
