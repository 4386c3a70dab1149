"""`chatstack chat`: an interactive terminal client of the gateway.

Type a message to chat. Commands: /new [system prompt], /regenerate, /undo,
/edit N <new text> (N = the user message number shown by /history), /history, /quit, and the
feedback on the last answer (when the deployment captures preferences): /good [reason],
/bad [reason], /prefer N [reason] (N = a best-of candidate, 1-based, as the summary lists them).

With --tools FILE (a JSON list of functions: name, description, parameters) the model may call
them: each call is shown as `-> name(arguments)`; answer them in order with /result <output>
(the answer continues once every call of the last answer has its result).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import grpc

from chatstack.catalog import GATEWAY
from chatstack.client import ChatClient, ChatResult, function_tool
from chatstack.v1 import common_pb2, preference_pb2

HELP = ("commands: /new [system prompt]  /regenerate  /undo  /edit N <text>  /history  /quit\n"
        "feedback on the last answer: /good [reason]  /bad [reason]  /prefer N [reason]\n"
        "tools (--tools FILE): /result <output> answers the next open tool call")


def _print_delta(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def call_line(call: common_pb2.ToolCall) -> str:
    """How a tool call is shown."""
    return f"-> {call.name}({call.arguments})  [{call.id}]"


def _summary(result: ChatResult, started: float) -> str:
    parts = [f"reward {result.reward_score:+.3f}"]
    if result.candidates:
        parts.append("best of " + ", ".join(
            f"{'*' if c.chosen else ''}{c.reward_score:+.2f}" for c in result.candidates))
    if result.usage is not None:
        parts.append(f"{result.usage.completion_tokens} tokens")
    parts.append(f"{time.perf_counter() - started:.2f}s")
    if result.context_truncated:
        parts.append(f"context: newest {result.context_turns} turns")
    return "[" + " | ".join(parts) + "]"


class ChatRepl:
    """The REPL state: one client, the current session."""

    def __init__(self, client: ChatClient, options: dict[str, Any], system_prompt: str) -> None:
        self.client = client
        self.options = options
        self.system_prompt = system_prompt
        self.session_id = ""
        self.last_answer = ""  # the assistant turn feedback is about
        self.open_calls: list[common_pb2.ToolCall] = []  # the last answer's calls not answered yet
        self.results: list[tuple[str, str]] = []  # (call id, output) given so far

    def answer(self, call: Any) -> None:
        started = time.perf_counter()
        sys.stdout.write("assistant> ")
        result: ChatResult = call(on_delta=_print_delta)
        self.session_id = result.session_id or self.session_id
        self.open_calls, self.results = list(result.tool_calls), []
        for tool_call in result.tool_calls:
            print(f"\n  {call_line(tool_call)}", end="")
        self.last_answer = result.assistant_turn_id
        print(f"\n{_summary(result, started)}")

    def feedback(self, command: str, rest: str) -> None:
        """/good, /bad or /prefer N on the last answer."""
        if not self.last_answer:
            print("(no answer to rate yet)")
            return
        rating, preferred = preference_pb2.RATING_UNSPECIFIED, None
        if command == "/prefer":
            number, _, rest = rest.strip().partition(" ")
            if not number.isdigit() or int(number) < 1:
                print("usage: /prefer N [reason]  (N: a best-of candidate, from 1)")
                return
            preferred = int(number) - 1
        else:
            rating = preference_pb2.RATING_UP if command == "/good" else preference_pb2.RATING_DOWN
        reply = self.client.feedback(self.session_id, self.last_answer, rating, preferred, rest.strip())
        print("(feedback replaced)" if reply.replaced else "(feedback recorded)")

    def tool_result(self, output: str) -> None:
        """Record the next open call's result; once every call has one, send them together."""
        if len(self.results) >= len(self.open_calls) or not output:
            print("usage: /result <output>  (answers the next open tool call of the last answer)")
            return
        self.results.append((self.open_calls[len(self.results)].id, output))
        if len(self.results) < len(self.open_calls):
            print(f"(result {len(self.results)} of {len(self.open_calls)} recorded)")
            return
        results = self.results
        self.answer(lambda on_delta: self.client.chat(
            "", self.session_id, on_delta=on_delta, tool_results=results, **self.options))

    def user_turns(self) -> list[Any]:
        if not self.session_id:
            return []
        _, turns = self.client.history(self.session_id)
        return [t for t in turns if t.role == common_pb2.ROLE_USER]

    def handle(self, line: str) -> bool:
        """Run one line; False means quit."""
        if not line.startswith("/"):
            self.answer(lambda on_delta: self.client.chat(
                line, self.session_id, self.system_prompt, on_delta=on_delta, **self.options))
            return True
        command, _, rest = line.partition(" ")
        if command in ("/quit", "/exit"):
            return False
        if command == "/result":
            self.tool_result(rest.strip())
            return True
        if command == "/new":
            self.session_id, self.system_prompt = "", rest.strip() or self.system_prompt
            print("(new conversation)")
        elif command == "/regenerate":
            self.answer(lambda on_delta: self.client.regenerate(self.session_id, on_delta=on_delta,
                                                                **self.options))
        elif command == "/undo":
            removed = self.client.undo(self.session_id).removed_turns
            self.last_answer = ""
            print(f"(removed {len(removed)} turn(s))")
        elif command in ("/good", "/bad", "/prefer"):
            self.feedback(command, rest)
        elif command == "/history":
            system, turns = self.client.history(self.session_id) if self.session_id else ("", [])
            if system:
                print(f"system: {system}")
            number = 0
            for turn in turns:
                if turn.role == common_pb2.ROLE_USER:
                    number += 1
                    print(f"[{number}] you: {turn.content}")
                elif turn.role == common_pb2.ROLE_TOOL:
                    print(f"    tool [{turn.tool_call_id}]: {turn.content}")
                else:
                    score = turn.metadata.get("reward_score", "")
                    suffix = f"  (reward {float(score):+.3f})" if score else ""
                    print(f"    assistant: {turn.content}{suffix}")
                    for tool_call in turn.tool_calls:
                        print(f"      {call_line(tool_call)}")
        elif command == "/edit":
            index, _, text = rest.strip().partition(" ")
            users = self.user_turns()
            if not index.isdigit() or not 1 <= int(index) <= len(users) or not text:
                print("usage: /edit N <new text>  (N from /history)")
                return True
            turn_id = users[int(index) - 1].turn_id
            self.answer(lambda on_delta: self.client.edit(self.session_id, turn_id, text,
                                                          on_delta=on_delta, **self.options))
        else:
            print(HELP)
        return True


def main(argv: Sequence[str] | None = None) -> int:
    """Run the REPL."""
    parser = argparse.ArgumentParser(prog="chatstack chat", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default=os.environ.get("CHATSTACK_TARGET", GATEWAY.local_address))
    parser.add_argument("--api-key", default=os.environ.get("CHATSTACK_API_KEY", ""),
                        help="API key (or env CHATSTACK_API_KEY)")
    parser.add_argument("--application", default="",
                        help="Ray Serve application name when --target is Serve's gRPC proxy (gateway)")
    parser.add_argument("--system", default="", help="system prompt of new conversations")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--best-of", type=int, default=1)
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--tools", default="", help="JSON file: a list of functions the model may call "
                        "(name, description, parameters)")
    parser.add_argument("--tool-choice", default=None,
                        help="none, auto (default), required, or a function name")
    args = parser.parse_args(argv)
    if not args.api_key:
        parser.error("give --api-key or set CHATSTACK_API_KEY")
    options: dict[str, Any] = {"max_tokens": args.max_tokens, "best_of": args.best_of,
                               "temperature": args.temperature, "tool_choice": args.tool_choice}
    if args.tools:
        with open(args.tools) as f:
            options["tools"] = [function_tool(t["name"], t.get("description", ""), t.get("parameters"))
                                for t in json.load(f)]
    repl = ChatRepl(ChatClient(args.target, args.api_key, application=args.application), options, args.system)
    print(f"chatstack chat on {args.target} — {HELP}")
    while True:
        try:
            line = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if not line:
            continue
        try:
            if not repl.handle(line):
                return 0
        except grpc.RpcError as err:
            print(f"\nerror: {err.code().name}: {err.details()}")
        except KeyboardInterrupt:
            print("\n(interrupted)")
