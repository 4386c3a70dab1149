"""The tiny guard model: a Llama sequence classifier over the safety stage's labels, trained
in-repo (deterministically, on CPU, in seconds) so tests know what it flags.

It reads plain text, as a Prompt-Guard-class classifier does: the user turns of a conversation
joined by newlines (input moderation) or a window of an answer (output moderation). Its labels are
`guard_data.LABELS` ("safe", then the categories), named in the config's `id2label`, so the
safety service maps them to categories the way it maps a real guard model's.

Training set: every generated example (`guard_data.examples()`), the fixture texts
(`safety.examples`), and safe text shaped like what a random-init LM writes (the tiny LM's
answers are pseudo-words: the guard must pass them). Quoted copies teach it that a JSON string
holding a harmful text is that text.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from chatstack.safety import examples as fixtures
from chatstack.safety.guard_data import LABELS, Labelled, examples


@dataclass(frozen=True)
class GuardTraining:
    """Knobs of the tiny guard's training (the defaults tell safe from unsafe on > 99% of its
    training set in ~40 s on 2 cores)."""

    epochs: int = 14
    batch_size: int = 16
    learning_rate: float = 2e-3
    seed: int = 4321
    babble: int = 480  # safe pseudo-text examples


def fixture_examples() -> list[Labelled]:
    """The fixture set as labelled texts: a conversation's user turns joined by newlines."""
    out = []
    for example in (*fixtures.UNSAFE_INPUTS, *fixtures.UNSAFE_OUTPUTS, *fixtures.SAFE):
        out.append(Labelled("\n".join(example.texts), LABELS.index(example.category or "safe")))
    return out


def babble(lines: Sequence[str], tokenizer: Any, count: int, seed: int) -> list[str]:
    """Pseudo-text, what a random-init LM writes: half runs of 1-3 corpus lines, half 8-64
    random tokens of the vocabulary (special tokens left out)."""
    rng = random.Random(seed)
    vocabulary = [i for token, i in sorted(tokenizer.get_vocab().items()) if not token.startswith("<")]
    texts = [" ".join(rng.choice(lines) for _ in range(rng.randint(1, 3))) for _ in range(count // 2)]
    texts += [tokenizer.decode([rng.choice(vocabulary) for _ in range(rng.randint(8, 64))])
              for _ in range(count - count // 2)]
    return texts


def training_set(corpus: Sequence[str], tokenizer: Any, settings: GuardTraining) -> list[Labelled]:
    """Everything the tiny guard learns from, in a fixed order."""
    labelled = examples() + fixture_examples()
    quoted = [Labelled(f'"{e.text}"', e.label) for e in labelled if e.label != 0][::3]
    pseudo = babble(corpus, tokenizer, settings.babble, settings.seed)
    return labelled + quoted + [Labelled(t, 0) for t in pseudo]


@contextmanager
def _deterministic() -> Iterator[None]:
    """Deterministic kernels on a fixed number of threads while training (the same bytes on
    every build on one machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(threads)


def train_guard(model: Any, tokenizer: Any, data: Sequence[Labelled], settings: GuardTraining,
                pad_id: int) -> None:
    """Train `model` (a LlamaForSequenceClassification with len(LABELS) labels) in place on
    `data`: AdamW with a linear decay and clipped gradients, batches in a seeded order."""
    import torch

    encoded = [(tokenizer.encode(e.text).ids, e.label) for e in data]
    rng = random.Random(settings.seed)
    steps = settings.epochs * -(-len(encoded) // settings.batch_size)
    with _deterministic():
        torch.manual_seed(settings.seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate)
        decay = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
        model.train()
        for _ in range(settings.epochs):
            order = list(range(len(encoded)))
            rng.shuffle(order)
            for first in range(0, len(order), settings.batch_size):
                ids, mask, labels = _batch([encoded[i] for i in order[first:first + settings.batch_size]],
                                           pad_id)
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                decay.step()
        model.eval()


def predict(model: Any, tokenizer: Any, texts: Sequence[str], pad_id: int) -> list[int]:
    """The model's label of each text."""
    import torch

    encoded = [(tokenizer.encode(t).ids, 0) for t in texts]
    out: list[int] = []
    with _deterministic(), torch.no_grad():
        for first in range(0, len(encoded), 64):
            ids, mask, _ = _batch(encoded[first:first + 64], pad_id)
            out += model(input_ids=ids, attention_mask=mask).logits.argmax(-1).tolist()
    return out


def check_trained(model: Any, tokenizer: Any, data: Sequence[Labelled], pad_id: int,
                  least: float = 0.99) -> None:
    """Refuse a guard that tells safe from unsafe on less than `least` of its training set, or
    gets any fixture wrong that way (tests assert what the fixtures are)."""
    def wrong(examples: Sequence[Labelled]) -> list[Labelled]:
        labels = predict(model, tokenizer, [e.text for e in examples], pad_id)
        return [e for e, label in zip(examples, labels, strict=True) if (label == 0) != (e.label == 0)]

    if bad := wrong(fixture_examples()):
        raise RuntimeError(f"the tiny guard misjudges fixture(s): {[e.text for e in bad]}")
    if (share := 1 - len(wrong(data)) / len(data)) < least:
        raise RuntimeError(f"the tiny guard tells safe from unsafe on only {share:.1%} of its training set")


def _batch(items: Sequence[tuple[list[int], int]], pad_id: int) -> tuple[Any, Any, Any]:
    """Right-padded ids, their mask and the labels (the classifier pools the last real token)."""
    import torch

    width = max(len(ids) for ids, _ in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, (tokens, _) in enumerate(items):
        ids[row, :len(tokens)] = torch.tensor(tokens)
        mask[row, :len(tokens)] = 1
    return ids, mask, torch.tensor([label for _, label in items])
