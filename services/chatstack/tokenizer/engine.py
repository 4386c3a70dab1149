"""TokenizerEngine: batch encode/decode/count and chat templates over HF `tokenizers`.

Knows nothing of gRPC. Validation errors raise `InvalidRequest` naming the offending item.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from chatstack.core.chat_message import ChatMessage, FunctionTool
from chatstack.core.errors import InvalidRequest
from chatstack.core.roles import CHAT_ROLES
from chatstack.tokenizer.chat_template import ChatTemplate


@dataclass(frozen=True)
class TokenizerLimits:
    """Request limits enforced before the tokenizer runs."""

    max_batch_items: int = 1024
    max_text_chars: int = 1_000_000
    max_sequence_tokens: int = 1_000_000
    max_messages: int = 1024
    max_request_chars: int = 2_000_000
    max_request_tokens: int = 2_000_000
    max_response_bytes: int = 16 * 1024 * 1024


@dataclass
class EncodedText:
    """Token ids of one text and, if asked, their (start, end) character offsets."""

    ids: list[int]
    offsets: list[tuple[int, int]] = field(default_factory=list)


@dataclass(frozen=True)
class TokenizerInfo:
    """What GetInfo reports."""

    model_name: str
    vocab_size: int
    max_length_tokens: int
    special_tokens: list[tuple[str, str, int]]  # (kind, content, id)
    has_chat_template: bool


class TokenizerEngine:
    """The model's tokenizer, loaded from a model directory (tokenizer.json + config)."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        tokenizer_config: dict[str, Any],
        model_name: str,
        limits: TokenizerLimits | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.limits = limits or TokenizerLimits()
        self.model_name = model_name
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        self.max_length = int(tokenizer_config.get("model_max_length") or 0)
        if self.max_length > 10**9:  # transformers' "no limit" sentinel
            self.max_length = 0
        self._special = {
            kind: _token_text(tokenizer_config.get(f"{kind}_token"))
            for kind in ("bos", "eos", "pad", "unk")
        }
        template = tokenizer_config.get("chat_template")
        special_vars = {f"{k}_token": v for k, v in self._special.items() if v}
        self.chat_template = ChatTemplate(template, special_vars) if template else None
        self._additional = [_token_text(t) for t in
                            tokenizer_config.get("additional_special_tokens") or []]

    @classmethod
    def from_dir(
        cls, model_dir: str | Path, model_name: str = "", limits: TokenizerLimits | None = None
    ) -> TokenizerEngine:
        """Load tokenizer.json and tokenizer_config.json from a HF model directory."""
        path = Path(model_dir)
        tok_file = path / "tokenizer.json"
        if not tok_file.is_file():
            raise FileNotFoundError(f"no tokenizer.json in {path}")
        cfg_file = path / "tokenizer_config.json"
        config = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
        template_file = path / "chat_template.jinja"
        if "chat_template" not in config and template_file.is_file():
            config["chat_template"] = template_file.read_text()
        return cls(Tokenizer.from_file(str(tok_file)), config, model_name or path.name, limits)

    # -- validation -------------------------------------------------------------------------
    def _check_batch(self, n: int, what: str) -> None:
        if n == 0:
            raise InvalidRequest(f"{what}: empty batch, give at least one item")
        if n > self.limits.max_batch_items:
            raise InvalidRequest(
                f"{what}: {n} items exceed the limit of {self.limits.max_batch_items}"
            )

    def _check_texts(self, texts: Sequence[str], what: str = "texts") -> None:
        self._check_batch(len(texts), what)
        limit, total = self.limits.max_text_chars, 0
        for i, text in enumerate(texts):
            if len(text) > limit:
                raise InvalidRequest(f"{what}[{i}]: {len(text)} characters exceed the limit of {limit}")
            total += len(text)
        self._check_request_chars(total, what)

    def _check_request_chars(self, total: int, what: str) -> None:
        if total > self.limits.max_request_chars:
            raise InvalidRequest(f"{what}: {total} characters in all exceed the per-request limit of "
                                 f"{self.limits.max_request_chars}")

    def _check_tokens(self, total: int, what: str) -> None:
        """Bound a response (or Decode request) by its token ids, before it is built."""
        if total > self.limits.max_request_tokens:
            raise InvalidRequest(f"{what}: {total} token ids in all exceed the per-request limit of "
                                 f"{self.limits.max_request_tokens}; send fewer or shorter texts")

    # -- operations -------------------------------------------------------------------------
    def _check_encode_response(self, tokens: int, items: int, longest_text: int, offsets: bool) -> None:
        """Bound the EncodeResponse's bytes before it is built: each id is a varint of at most
        the vocabulary's width, each offset pair a small message of two varints."""
        per_token = _varint_len(self.vocab_size)
        if offsets:
            per_token += 4 + 2 * _varint_len(longest_text)
        estimate = tokens * per_token + items * 8
        if estimate > self.limits.max_response_bytes:
            raise InvalidRequest(
                f"texts: the encoding would take about {estimate} bytes, over the response limit of "
                f"{self.limits.max_response_bytes}; send fewer or shorter texts"
                + (", or leave return_offsets off" if offsets else ""))

    def encode(
        self, texts: Sequence[str], add_special_tokens: bool, return_offsets: bool = False
    ) -> list[EncodedText]:
        """Encode a batch through the tokenizer's parallel batch path."""
        self._check_texts(texts)
        if return_offsets:
            encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        else:  # encode_batch_fast skips offset tracking: measurably faster on large batches.
            encodings = self.tokenizer.encode_batch_fast(list(texts), add_special_tokens=add_special_tokens)
        tokens = sum(len(e.ids) for e in encodings)
        self._check_tokens(tokens, "texts")
        self._check_encode_response(tokens, len(encodings), max(map(len, texts)), return_offsets)
        if return_offsets:
            return [EncodedText(e.ids, list(e.offsets)) for e in encodings]
        return [EncodedText(e.ids) for e in encodings]

    def count(self, texts: Sequence[str], add_special_tokens: bool) -> list[int]:
        """Token count per text."""
        self._check_texts(texts)  # counts are small: no response bound needed
        encodings = self.tokenizer.encode_batch_fast(list(texts), add_special_tokens=add_special_tokens)
        return [len(e.ids) for e in encodings]

    def decode(self, sequences: Sequence[Sequence[int]], skip_special_tokens: bool) -> list[str]:
        """Decode a batch of id sequences; every id must be in the vocabulary."""
        self._check_batch(len(sequences), "sequences")
        self._check_tokens(sum(len(ids) for ids in sequences), "sequences")
        for i, ids in enumerate(sequences):
            if len(ids) > self.limits.max_sequence_tokens:
                raise InvalidRequest(
                    f"sequences[{i}]: {len(ids)} ids exceed the limit of "
                    f"{self.limits.max_sequence_tokens}"
                )
            for j, token_id in enumerate(ids):
                if token_id >= self.vocab_size:
                    raise InvalidRequest(
                        f"sequences[{i}].ids[{j}]: id {token_id} is outside the vocabulary "
                        f"[0, {self.vocab_size})"
                    )
        return self.tokenizer.decode_batch(
            [list(s) for s in sequences], skip_special_tokens=skip_special_tokens
        )

    def apply_chat_template(
        self, messages: Sequence[ChatMessage], add_generation_prompt: bool,
        count_messages: Sequence[int] = (), tools: Sequence[FunctionTool] = (),
    ) -> tuple[str, list[int], list[int]]:
        """Render messages and the tools the model may call; returns the prompt text, its token
        ids and the token counts of the contents of the messages at `count_messages` (indices)."""
        if self.chat_template is None:
            raise InvalidRequest(f"model {self.model_name} has no chat template")
        self._check_messages(messages, count_messages)
        template_tools = [_tool_for_template(t, f"tools[{i}]") for i, t in enumerate(tools)]
        # Counted contents are encoded a second time: they count against the request's characters.
        self._check_request_chars(sum(_chars(m) for m in messages)
                                  + sum(len(messages[i].content) for i in count_messages)
                                  + sum(len(t.parameters) + len(t.description) for t in tools), "messages")
        prompt = self.chat_template.render([m.as_template() for m in messages], add_generation_prompt,
                                           template_tools)
        # The template already wrote BOS and role markers as text: don't add them again.
        # encode_batch releases the GIL while it runs (encode does not); the counted contents
        # are encoded in the same batch.
        encodings = self.tokenizer.encode_batch_fast(
            [prompt, *(messages[i].content for i in count_messages)], add_special_tokens=False)
        ids = encodings[0].ids
        self._check_tokens(len(ids), "messages")
        return prompt, ids, [len(e.ids) for e in encodings[1:]]

    def _check_messages(self, messages: Sequence[ChatMessage], count_messages: Sequence[int]) -> None:
        if not messages:
            raise InvalidRequest("messages: empty, give at least one message")
        if len(messages) > self.limits.max_messages:
            raise InvalidRequest(
                f"messages: {len(messages)} exceed the limit of {self.limits.max_messages}"
            )
        for i, m in enumerate(messages):
            if m.role not in CHAT_ROLES:
                raise InvalidRequest(
                    f"messages[{i}].role: {m.role or 'unspecified'!s} is not one of "
                    f"{sorted(CHAT_ROLES)}"
                )
            if _chars(m) > self.limits.max_text_chars:
                raise InvalidRequest(
                    f"messages[{i}].content: {_chars(m)} characters exceed the limit of "
                    f"{self.limits.max_text_chars}"
                )
        seen: set[int] = set()
        for i, index in enumerate(count_messages):
            if index >= len(messages) or index in seen:
                raise InvalidRequest(f"count_messages[{i}]: {index} is not a distinct message index "
                                     f"(there are {len(messages)} messages)")
            seen.add(index)

    def info(self) -> TokenizerInfo:
        """Vocabulary size, special tokens, max length and model name."""
        specials: list[tuple[str, str, int]] = []
        for kind, text in self._special.items():
            token_id = self.tokenizer.token_to_id(text) if text else None
            if text and token_id is not None:
                specials.append((kind, text, token_id))
        for text in self._additional:
            token_id = self.tokenizer.token_to_id(text)
            if token_id is not None:
                specials.append(("additional", text, token_id))
        return TokenizerInfo(
            model_name=self.model_name,
            vocab_size=self.vocab_size,
            max_length_tokens=self.max_length,
            special_tokens=specials,
            has_chat_template=self.chat_template is not None,
        )


def _varint_len(value: int) -> int:
    """Bytes of `value` as a protobuf varint."""
    return max(1, (max(value, 1).bit_length() + 6) // 7)


def _token_text(token: object) -> str:
    """A special token from tokenizer_config.json: a string or an AddedToken dict."""
    if isinstance(token, dict):
        return str(token.get("content", ""))
    return str(token) if token else ""


def _chars(message: ChatMessage) -> int:
    """A message's characters: its content and its calls' names and arguments."""
    return len(message.content) + sum(len(c.name) + len(c.arguments) for c in message.tool_calls)


def _tool_for_template(tool: FunctionTool, path: str) -> dict[str, Any]:
    """A tool as templates read it, or INVALID_ARGUMENT naming what is wrong with it."""
    if not tool.name:
        raise InvalidRequest(f"{path}.name: empty")
    try:
        return tool.as_template()
    except ValueError as exc:
        raise InvalidRequest(f"{path}.parameters_json: not valid JSON ({exc})") from None
