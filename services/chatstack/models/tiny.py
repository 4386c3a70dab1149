"""Build chatstack's tiny models deterministically, with nothing downloaded.

Layout written under DIR:

    DIR/lm/       byte-level BPE tokenizer + chat template + random-init LlamaForCausalLM
    DIR/reward/   the same tokenizer + random-init LlamaForSequenceClassification (num_labels=1)
    DIR/guard/    the same tokenizer + LlamaForSequenceClassification over the safety labels,
                  trained in-repo on the labelled safety set (`chatstack.models.tiny_guard`)

The training text is generated from a fixed seed (no third-party prose). head_dim is 64
because vLLM's CPU attention rejects smaller heads.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
END_OF_TURN = "<|end|>"

# The same shape as Llama/Zephyr-style templates: role header, content, end marker. Tools as
# Hermes-style models take them: the tools' JSON in a system block, an assistant's calls as
# `<tool_call>{"name": ..., "arguments": ...}</tool_call>`, a tool's result as a user turn in
# `<tool_response>` (the gateway's `hermes` tool parser reads this format back).
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% if tools %}<|system|>\n# Tools\nCall a function as <tool_call>{\"name\": <name>, "
    "\"arguments\": <arguments>}</tool_call>. Functions:\n"
    "{% for tool in tools %}{{ tool | tojson }}\n{% endfor %}<|end|>\n{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant', 'tool'] %}"
    "{{ raise_exception('unknown role: ' + message['role']) }}"
    "{% endif %}"
    "{% if message['role'] == 'tool' %}"
    "<|user|>\n<tool_response>\n{{ message['content'] }}\n</tool_response><|end|>\n"
    "{% else %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}"
    "{% for call in message['tool_calls'] or [] %}"
    "<tool_call>{\"name\": {{ call['function']['name'] | tojson }}, "
    "\"arguments\": {{ call['function']['arguments'] | tojson }}}</tool_call>"
    "{% endfor %}<|end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_SYLLABLES = [
    "ka", "to", "ri", "ne", "sa", "mo", "lu", "pe", "di", "go", "an", "er", "in", "on", "ul",
    "the", "and", "ing", "ion", "ver", "ter", "est", "ch", "sh", "th", "qu", "str", "pl", "gr",
]
_PUNCT = [".", ",", "?", "!", ":", ";"]


@dataclass(frozen=True)
class TinyModelSpec:
    """Sizes of the tiny models (defaults load in vLLM on CPU in seconds)."""

    vocab_size: int = 2048
    hidden_size: int = 128
    num_attention_heads: int = 2  # head_dim = 64
    num_hidden_layers: int = 2
    intermediate_size: int = 256
    max_position_embeddings: int = 2048
    seed: int = 1234
    corpus_lines: int = 4000


def _corpus(spec: TinyModelSpec) -> list[str]:
    """Deterministic pseudo-text with words, numbers, punctuation and some non-ASCII."""
    rng = random.Random(spec.seed)
    extra = ["é", "ü", "ß", "ñ", "€", "中", "文", "😀", "→"]
    lines = []
    for _ in range(spec.corpus_lines):
        words = []
        for _ in range(rng.randint(3, 14)):
            word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 3)))
            roll = rng.random()
            if roll < 0.05:
                word = str(rng.randint(0, 9999))
            elif roll < 0.08:
                word += rng.choice(extra)
            elif roll < 0.15:
                word = word.capitalize()
            words.append(word)
        lines.append(" ".join(words) + rng.choice(_PUNCT))
    return lines


def build_tokenizer(spec: TinyModelSpec):  # type: ignore[no-untyped-def]
    """Train the byte-level BPE tokenizer (returns a `tokenizers.Tokenizer`)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(spec), trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return tok


def _write_tokenizer_files(tok, out: Path, spec: TinyModelSpec) -> None:  # type: ignore[no-untyped-def]
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "unk_token": UNK,
        "additional_special_tokens": SPECIAL_TOKENS[4:],
        "model_max_length": spec.max_position_embeddings,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "add_bos_token": True,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    special_map = {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD, "unk_token": UNK,
                   "additional_special_tokens": SPECIAL_TOKENS[4:]}
    (out / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2, sort_keys=True))


def _llama_config(tok, spec: TinyModelSpec, **extra):  # type: ignore[no-untyped-def]
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_attention_heads,
        max_position_embeddings=spec.max_position_embeddings,
        bos_token_id=tok.token_to_id(BOS),
        eos_token_id=[tok.token_to_id(EOS), tok.token_to_id(END_OF_TURN)],
        pad_token_id=tok.token_to_id(PAD),
        tie_word_embeddings=False,
        dtype="float32",
        **extra,
    )


def build_tiny_models(out_dir: str | Path, spec: TinyModelSpec | None = None) -> dict[str, Path]:
    """Write the tiny LM and reward model (with tokenizer) under `out_dir`; returns their dirs."""
    import torch
    from transformers import LlamaForCausalLM, LlamaForSequenceClassification

    spec = spec or TinyModelSpec()
    out = Path(out_dir)
    tok = build_tokenizer(spec)
    dirs = {"lm": out / "lm", "reward": out / "reward", "guard": out / "guard"}

    torch.manual_seed(spec.seed)
    lm = LlamaForCausalLM(_llama_config(tok, spec))
    _write_tokenizer_files(tok, dirs["lm"], spec)
    lm.save_pretrained(dirs["lm"], safe_serialization=True)

    torch.manual_seed(spec.seed + 1)
    rm_config = _llama_config(tok, spec, num_labels=1)
    rm = LlamaForSequenceClassification(rm_config)
    # A random score head is ~N(0, 0.02): widen it so rewards separate candidates clearly.
    with torch.no_grad():
        rm.score.weight.normal_(0.0, 1.0)
    _write_tokenizer_files(tok, dirs["reward"], spec)
    rm.save_pretrained(dirs["reward"], safe_serialization=True)
    _build_guard(tok, spec, dirs["guard"])
    (out / "MANIFEST.json").write_text(json.dumps(fingerprint(out), indent=2, sort_keys=True))
    return dirs


def _build_guard(tok, spec: TinyModelSpec, out: Path) -> None:  # type: ignore[no-untyped-def]
    """Train the tiny guard (see `tiny_guard`) and write it with the tokenizer."""
    import torch
    from transformers import LlamaForSequenceClassification

    from chatstack.models.tiny_guard import GuardTraining, check_trained, train_guard, training_set
    from chatstack.safety.guard_data import LABELS

    settings = GuardTraining()
    torch.manual_seed(spec.seed + 2)
    config = _llama_config(tok, spec, num_labels=len(LABELS),
                           id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})
    guard = LlamaForSequenceClassification(config)
    data = training_set(_corpus(spec), tok, settings)
    train_guard(guard, tok, data, settings, tok.token_to_id(PAD))
    check_trained(guard, tok, data, tok.token_to_id(PAD))
    _write_tokenizer_files(tok, out, spec)
    guard.save_pretrained(out, safe_serialization=True)


def fingerprint(out_dir: str | Path) -> dict[str, str]:
    """sha256 of every weight and tokenizer file under `out_dir` (determinism check)."""
    out = Path(out_dir)
    files = sorted(p for p in out.rglob("*") if p.suffix in {".json", ".safetensors"}
                   and p.name not in {"MANIFEST.json", "config.json", "generation_config.json"})
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
