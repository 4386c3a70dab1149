"""Fine-tune a reward model on preference pairs with TRL's `RewardTrainer`.

Input: JSONL, one pair per line, in TRL's conversational preference format with an explicit
prompt, plus chatstack's metadata keys (ignored here):

    {"prompt": [{"role": "user", "content": "..."}], "chosen": [{"role": "assistant", ...}],
     "rejected": [{"role": "assistant", ...}], "margin": 0.7, "signal": "best_of", ...}

Training is TRL's pairwise Bradley-Terry loss, -log sigmoid(r(prompt+chosen) - r(prompt+rejected)),
on CPU. Each side is rendered with the model's chat template, exactly as TRL renders it:
`apply_chat_template(prompt + chosen, tokenize=True)`, no generation prompt, which is also how
the reward service renders a conversation plus a response. The `margin` key is dropped: TRL
would subtract it inside the loss, and ours is a chatstack signal strength, not a loss margin.

Output: a complete model directory for the reward service (vLLM's pooling runner): safetensors
weights, a `LlamaForSequenceClassification`-style config with num_labels 1 and pad_token_id,
and the source model's tokenizer files copied byte for byte.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from datasets import Dataset

log = logging.getLogger(__name__)

PAIR_FIELDS = ("prompt", "chosen", "rejected")
# Copied from the source model unchanged, so the reward service tokenizes as the source did.
REQUIRED_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
OPTIONAL_TOKENIZER_FILES = ("special_tokens_map.json", "chat_template.jinja")


@dataclass(frozen=True)
class TrainRewardSettings:
    """Training knobs; the defaults suit the tiny model (a real model wants more steps, lower lr)."""

    steps: int = 20  # optimizer steps (max_steps)
    learning_rate: float = 1e-4  # TRL's RewardConfig default
    batch_size: int = 8  # pairs per device batch (each pair is two sequences)
    gradient_accumulation_steps: int = 1
    max_length: int = 1024  # pairs with a longer side are skipped (TRL filters, never truncates)
    seed: int = 0  # model init, data order: the same seed and data give the same weights
    threads: int = 2  # torch CPU threads (capped by the machine's cores)


@dataclass(frozen=True)
class TrainReport:
    """What a training run did."""

    steps: int  # optimizer steps taken
    final_loss: float  # the loss logged at the last step
    seconds: float  # wall time of the training loop and the save
    out_dir: str  # the new model directory
    pairs: int  # training pairs used
    too_long: int  # pairs skipped for exceeding max_length

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


# -- data ---------------------------------------------------------------------------------------

def _message_problem(messages: object) -> str | None:
    """Why `messages` is not a non-empty list of {role, content} strings, or None if it is."""
    if not isinstance(messages, list) or not messages:
        return "is missing or not a non-empty list of messages"
    for j, message in enumerate(messages):
        if not isinstance(message, Mapping):
            return f"[{j}] is not a message object"
        if not isinstance(message.get("role"), str) or not isinstance(message.get("content"), str):
            return f"[{j}] needs string 'role' and 'content'"
    return None


def check_pairs(rows: Iterable[Mapping[str, Any]], where: str) -> int:
    """Raise ValueError naming the row and field of the first malformed pair; returns the count."""
    n = 0
    for n, row in enumerate(rows, start=1):
        for field in PAIR_FIELDS:
            problem = _message_problem(row.get(field))
            if problem:
                raise ValueError(f"{where}: row {n}: field '{field}' {problem}")
    if n == 0:
        raise ValueError(f"{where}: no preference pairs")
    return n


def _has_content(path: Path) -> bool:
    """True if the file has a non-blank line (stops at the first)."""
    with path.open("rb") as f:
        return any(line.strip() for line in f)


def load_pairs(data: Path, cache_dir: Path) -> Dataset:
    """Load the JSONL with `datasets`, check every pair, keep only prompt/chosen/rejected."""
    import datasets

    if not data.is_file():
        raise ValueError(f"{data}: no such file")
    if not _has_content(data):
        raise ValueError(f"{data}: no preference pairs (empty file)")
    try:
        dataset = datasets.load_dataset("json", data_files=str(data), split="train",
                                        cache_dir=str(cache_dir))
    except (datasets.exceptions.DatasetGenerationError, ValueError, StopIteration) as exc:
        raise ValueError(f"{data}: not JSONL preference pairs: {exc}") from exc
    missing = [f for f in PAIR_FIELDS if f not in dataset.column_names]
    if missing:
        raise ValueError(f"{data}: missing field {', '.join(repr(f) for f in missing)} "
                         f"(each line needs {', '.join(PAIR_FIELDS)})")
    dataset = dataset.select_columns(list(PAIR_FIELDS))  # drops margin and the chatstack metadata
    check_pairs(dataset, str(data))
    return dataset


# -- rendering (what TRL's RewardTrainer does to a conversational pair) -----------------------

def render(tokenizer: Any, messages: Sequence[Mapping[str, Any]]) -> list[int]:
    """Token ids of a conversation through the chat template, as TRL tokenizes it."""
    return list(tokenizer.apply_chat_template(list(messages), tokenize=True, return_dict=True)["input_ids"])


def pair_ids(tokenizer: Any, pair: Mapping[str, Any]) -> tuple[list[int], list[int]]:
    """(prompt + chosen, prompt + rejected) token ids."""
    prompt = list(pair["prompt"])
    chosen = render(tokenizer, prompt + list(pair["chosen"]))
    return chosen, render(tokenizer, prompt + list(pair["rejected"]))


def _load_tokenizer(model_dir: Path) -> Any:
    """The model's tokenizer, with eos as pad (in memory only) if it has no pad token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{model_dir}: the tokenizer has no chat template (the pairs are conversations)")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@contextmanager
def _cpu_threads(limit: int) -> Iterator[None]:
    """torch uses at most `limit` CPU threads (and the machine's cores) inside the block."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(limit, os.cpu_count() or 1)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


# -- training ---------------------------------------------------------------------------------

def _check_dirs(model_dir: Path, out_dir: Path) -> None:
    """Refuse a source without tokenizer files and an out_dir that is a file or not empty."""
    missing = [name for name in REQUIRED_TOKENIZER_FILES if not (model_dir / name).is_file()]
    if missing:
        raise ValueError(f"{model_dir}: not a model directory with a tokenizer "
                         f"(missing {', '.join(missing)})")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ValueError(f"{out_dir}: exists and is not an empty directory; choose a new output directory")


def _reward_config(settings: TrainRewardSettings, work_dir: Path) -> Any:
    """RewardConfig for a quiet, deterministic CPU run that saves nothing on its own."""
    from trl import RewardConfig

    return RewardConfig(
        output_dir=str(work_dir),  # required by Trainer; nothing is written there (no checkpoints)
        max_steps=settings.steps,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        learning_rate=settings.learning_rate,
        max_length=settings.max_length,
        seed=settings.seed,
        data_seed=settings.seed,
        use_cpu=True,
        bf16=False,  # TRL defaults to bf16: keep the float32 weights the service loads
        fp16=False,
        gradient_checkpointing=False,  # TRL defaults it on; a CPU run of a small model only slows down
        save_strategy="no",
        report_to=[],
        logging_steps=1,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def _quiet_trainer(trainer: Any) -> None:
    """Send the per-step logs to `logging` instead of stdout (the CLI prints JSON there)."""
    from transformers import PrinterCallback, TrainerCallback

    class _LogToLogger(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            log.info("train-reward step %d: %s", state.global_step, logs)

    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(_LogToLogger())


def _final_loss(log_history: list[dict[str, Any]]) -> float:
    """The last logged training loss (nan if none was logged)."""
    losses = [entry["loss"] for entry in log_history if "loss" in entry]
    return float(losses[-1]) if losses else float("nan")


def _write_model_dir(trainer: Any, model_dir: Path, staging: Path) -> None:
    """Weights + config through transformers, tokenizer files copied from the source."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    model.save_pretrained(str(staging), safe_serialization=True)
    for name in REQUIRED_TOKENIZER_FILES + OPTIONAL_TOKENIZER_FILES:
        if (model_dir / name).is_file():
            shutil.copyfile(model_dir / name, staging / name)


def train_reward(data: Path, model_dir: Path, out_dir: Path,
                 settings: TrainRewardSettings | None = None) -> TrainReport:
    """Train the reward model in `model_dir` on the pairs in `data`; write it to `out_dir`.

    `out_dir` must not exist or be empty; it appears complete or not at all (the model is staged
    in a temporary directory beside it, then renamed)."""
    from trl import RewardTrainer

    settings = settings or TrainRewardSettings()
    data, model_dir, out_dir = Path(data), Path(model_dir), Path(out_dir)
    _check_dirs(model_dir, out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.", dir=out_dir.parent) as tmp, \
            _cpu_threads(settings.threads):
        work = Path(tmp)
        dataset = load_pairs(data, work / "datasets")
        tokenizer = _load_tokenizer(model_dir)
        trainer = RewardTrainer(model=str(model_dir), args=_reward_config(settings, work / "trainer"),
                                train_dataset=dataset, processing_class=tokenizer)
        pairs = len(cast("Dataset", trainer.train_dataset))  # a Dataset in, a Dataset out
        if pairs == 0:
            raise ValueError(f"{data}: no pair fits max_length {settings.max_length} tokens")
        _quiet_trainer(trainer)
        start = time.monotonic()
        trainer.train()
        _write_model_dir(trainer, model_dir, work / "model")
        if out_dir.exists():
            out_dir.rmdir()  # checked empty above
        (work / "model").rename(out_dir)
        return TrainReport(steps=trainer.state.global_step, final_loss=_final_loss(trainer.state.log_history),
                           seconds=round(time.monotonic() - start, 3), out_dir=str(out_dir), pairs=pairs,
                           too_long=len(dataset) - pairs)


# -- evaluation -------------------------------------------------------------------------------

def _rows(data: Path | Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The pairs of a JSONL file (loaded as for training) or of a list, checked."""
    if isinstance(data, Path):
        with tempfile.TemporaryDirectory(prefix="chatstack-pairs-") as tmp:
            return list(load_pairs(data, Path(tmp)).to_list())
    check_pairs(data, "pairs")
    return list(data)


def pairwise_accuracy(model_dir: Path, data: Path | Sequence[Mapping[str, Any]],
                      batch_size: int = 16, threads: int = 2) -> float:
    """Fraction of pairs whose prompt+chosen the model scores strictly above prompt+rejected.

    Pairs are rendered and batched as TRL's RewardTrainer does (right padding with the pad
    token, chosen and rejected in one batch), so this is the training metric on other data."""
    import torch
    from transformers import AutoModelForSequenceClassification
    from trl.trainer.reward_trainer import DataCollatorForPreference

    rows = _rows(data)
    with _cpu_threads(threads):
        tokenizer = _load_tokenizer(Path(model_dir))
        model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), dtype=torch.float32).eval()
        if model.config.pad_token_id is None:  # it finds each sequence's last token by the pad id
            model.config.pad_token_id = tokenizer.pad_token_id
        collate = DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id)
        wins = 0
        for i in range(0, len(rows), batch_size):
            features = [dict(zip(("chosen_ids", "rejected_ids"), pair_ids(tokenizer, row), strict=True))
                        for row in rows[i:i + batch_size]]
            with torch.inference_mode():
                scores = model(**collate(features)).logits.squeeze(-1)
            chosen, rejected = torch.chunk(scores, chunks=2)
            wins += int((chosen > rejected).sum())
    return wins / len(rows)


def train_reward_command(data: Path, model_dir: Path, out_dir: Path, settings: TrainRewardSettings,
                         eval_data: Path | None = None) -> dict[str, Any]:
    """`chatstack models train-reward`: train, and with `eval_data` measure accuracy before and after."""
    _check_dirs(Path(model_dir), Path(out_dir))  # before spending time on the first evaluation
    before = pairwise_accuracy(model_dir, eval_data, threads=settings.threads) if eval_data else None
    result: dict[str, Any] = train_reward(data, model_dir, out_dir, settings).to_dict()
    if eval_data is not None:
        after = pairwise_accuracy(out_dir, eval_data, threads=settings.threads)
        result["eval"] = {"data": str(eval_data), "pairwise_accuracy_before": before,
                          "pairwise_accuracy_after": after}
    return result
