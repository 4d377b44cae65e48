"""The CPU-sized end-to-end experiment: a tiny Mixtral learns to caption real images with MoExtend.

1. A tiny Mixtral-style LLM is pre-trained in process on English text bundled with scikit-learn and on the
   caption sentences. Its vocabulary covers the captions, but it has never seen an image.
2. A tiny CLIP vision tower with random weights is frozen and used as the image encoder.
3. The three MoExtend stages run on scikit-learn digits and scikit-image photographs.
4. Full fine-tuning of the same LLM (every LLM weight plus the projector, same data and steps) is the
   baseline.

Reported:

- caption accuracy on held-out digits after alignment and after each method: the share of images whose
  correct sentence has the highest likelihood of the ten candidates;
- perplexity of the original, extended and fully fine-tuned LLM on held-out text, which shows forgetting;
- trainable-parameter share and wall time per step.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch

from moextend.bundled import (
    DIGIT_NAMES,
    digit_answer,
    digit_samples,
    photo_captions,
    photo_samples,
    text_corpus,
)
from moextend.data import ChatCollator, ChatSample
from moextend.stages import (
    extend_from_usage,
    finetune_trainable_names,
    load_bundle,
    make_dataset,
    run_align,
    run_finetune,
    run_probe,
)
from moextend.tiny import build_tokenizer, save_tiny_base, tiny_moe_model
from moextend.training import TrainingSettings, train_parameters
from qcore.progress import progress
from qcore.rundir import RunDir
from qcore.seeding import seed_everything

__all__ = [
    "SCALES",
    "DemoScale",
    "caption_accuracy",
    "pretrain_language_model",
    "run_demo",
    "text_perplexity",
]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DemoScale:
    """Model size, data size and step counts of one preset of the experiment."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_experts: int
    vocab_size: int
    pretrain_steps: int
    align_steps: int
    probe_steps: int
    finetune_steps: int
    batch_size: int
    digits_train: int
    digits_test: int
    sequence_length: int = 64
    learning_rate: float = 2e-3


SCALES = {
    "smoke": DemoScale(
        hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_experts=4, vocab_size=300,
        pretrain_steps=8, align_steps=6, probe_steps=4, finetune_steps=6, batch_size=4,
        digits_train=24, digits_test=10,
    ),
    "default": DemoScale(
        hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_experts=4, vocab_size=512,
        pretrain_steps=300, align_steps=150, probe_steps=60, finetune_steps=200, batch_size=16,
        digits_train=1000, digits_test=200,
    ),
}  # fmt: skip


def _caption_sentences() -> list[str]:
    sentences = [digit_answer(label) for label in range(10)]
    sentences += [f"This is {caption}." for caption in photo_captions().values()]
    return sentences


def pretrain_language_model(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: list[str],
    *,
    steps: int,
    batch_size: int,
    sequence_length: int,
    learning_rate: float,
    seed: int,
) -> list[float]:
    """Train every weight of ``model`` on random windows of the tokenised ``texts``; return the losses."""
    stream = []
    for text in texts:
        stream += [tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"]]
        stream.append(tokenizer.eos_token_id)
    tokens = torch.tensor(stream)
    if len(tokens) <= sequence_length + 1:
        raise ValueError(
            f"pre-training text has {len(tokens)} tokens, fewer than one window of {sequence_length}"
        )
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
    model.train()
    losses = []
    for _ in progress(range(steps), desc="pretrain"):
        starts = torch.randint(0, len(tokens) - sequence_length - 1, (batch_size,), generator=generator)
        batch = torch.stack([tokens[s : s + sequence_length] for s in starts.tolist()])
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    model.eval()
    return losses


@torch.no_grad()
def text_perplexity(
    language_model: torch.nn.Module,
    tokenizer: Any,
    texts: list[str],
    *,
    window: int = 64,
    batch_size: int = 32,
) -> float:
    """Perplexity of ``language_model`` on ``texts``, cut into non-overlapping windows of ``window`` tokens."""
    language_model.eval()
    windows = []
    for text in texts:
        ids = [tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"]]
        windows += [ids[start : start + window + 1] for start in range(0, len(ids) - 1, window)]
    windows = [chunk for chunk in windows if len(chunk) >= 2]
    total_loss, total_tokens = 0.0, 0
    for start in range(0, len(windows), batch_size):
        group = windows[start : start + batch_size]
        length = max(len(chunk) for chunk in group)
        tokens = torch.full((len(group), length), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(group), length), dtype=torch.long)
        for row, chunk in enumerate(group):
            tokens[row, : len(chunk)] = torch.tensor(chunk)
            mask[row, : len(chunk)] = 1
        logits = language_model(input_ids=tokens[:, :-1], attention_mask=mask[:, :-1], use_cache=False).logits
        targets = tokens[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
        loss = torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]),
            targets.reshape(-1),
            ignore_index=-100,
            reduction="sum",
        )
        total_loss += float(loss)
        total_tokens += int((targets != -100).sum())
    return math.exp(total_loss / max(total_tokens, 1))


@torch.no_grad()
def caption_accuracy(
    bundle: Any, samples: list[ChatSample], labels: list[int], *, batch_size: int = 40
) -> float:
    """Fraction of images whose correct sentence scores the highest likelihood of the ten digit sentences."""
    candidates = []
    for sample in samples:
        question = sample.turns[0][0]
        candidates += [
            ChatSample(turns=[(question, digit_answer(label))], image=sample.image)
            for label in range(len(DIGIT_NAMES))
        ]
    dataset = make_dataset(bundle, candidates)
    collator = ChatCollator(bundle.tokenizer.pad_token_id)
    bundle.model.eval()
    scores = []
    for start in range(0, len(dataset), batch_size):
        batch = collator([dataset[index] for index in range(start, min(start + batch_size, len(dataset)))])
        logits = bundle.model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            pixel_values=batch["pixel_values"],
        ).logits
        candidate_labels = batch["labels"]
        if candidate_labels is None:
            raise ValueError("caption_accuracy needs labelled candidates")
        targets = candidate_labels[:, 1:]
        log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        mask = targets != -100
        picked = log_probs.gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1)
        scores.append((picked * mask).sum(dim=-1))
    table = torch.cat(scores).reshape(len(samples), len(DIGIT_NAMES))
    predictions = table.argmax(dim=-1)
    return float((predictions == torch.tensor(labels)).float().mean())


def _settings(scale: DemoScale, steps: int, seed: int, device: str) -> TrainingSettings:
    return TrainingSettings(
        learning_rate=scale.learning_rate,
        max_steps=steps,
        batch_size=scale.batch_size,
        log_steps=0,
        seed=seed,
        device=device,
    )


def run_demo(
    scale: DemoScale, run_dir: RunDir, *, seed: int = 0, device: str = "cpu", threads: int | None = 1
) -> dict[str, Any]:
    """Run pre-training, the three stages and the full fine-tuning baseline; return every measurement.

    Args:
        threads: intra-op CPU threads while the experiment runs (restored afterwards). Models this small
            run fastest on one thread; ``None`` keeps the current setting.
    """
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run_demo(scale, run_dir, seed=seed, device=device)
    finally:
        torch.set_num_threads(previous_threads)


def _run_demo(scale: DemoScale, run_dir: RunDir, *, seed: int, device: str) -> dict[str, Any]:
    seed_everything(seed)
    started = time.perf_counter()
    root = Path(run_dir.path)
    corpus = text_corpus()
    held_out = corpus[-max(4, len(corpus) // 10) :]
    training_text = corpus[: len(corpus) - len(held_out)] + _caption_sentences() * 4
    tokenizer = build_tokenizer(
        [*training_text, "[INST]What digit is written here?[/INST]", "[INST]Describe the image.[/INST]"],
        vocab_size=scale.vocab_size,
    )

    language_model = tiny_moe_model(
        "mixtral",
        seed=seed,
        vocab_size=len(tokenizer),
        hidden_size=scale.hidden_size,
        intermediate_size=scale.intermediate_size,
        num_hidden_layers=scale.num_hidden_layers,
        num_experts=scale.num_experts,
    )
    pretrain_losses = pretrain_language_model(
        language_model,
        tokenizer,
        training_text,
        steps=scale.pretrain_steps,
        batch_size=scale.batch_size,
        sequence_length=scale.sequence_length,
        learning_rate=3e-3,
        seed=seed,
    )
    llm_dir, vision_dir = save_tiny_base(
        root / "base", corpus=[], language_model=language_model, tokenizer=tokenizer, seed=seed
    )

    bundle = load_bundle(llm_dir, vision_model=str(vision_dir), max_length=128)
    original_perplexity = text_perplexity(bundle.model.language_model, tokenizer, held_out)
    digits_train, _ = digit_samples("train", limit=scale.digits_train)
    digit_captions, _ = digit_samples("train", limit=scale.digits_train, caption=True)
    digits_test, test_labels = digit_samples("test", limit=scale.digits_test)
    photos = photo_samples()
    instruction_data = digits_train + photos

    align = run_align(
        bundle, digit_captions + photos, _settings(scale, scale.align_steps, seed, device), root / "align"
    )
    accuracy_aligned = caption_accuracy(bundle, digits_test, test_labels)
    aligned_state = copy.deepcopy(bundle.model.state_dict())

    probe = run_probe(
        bundle,
        instruction_data,
        _settings(scale, scale.probe_steps, seed, device),
        root / "probe",
        validation_size=max(4, len(instruction_data) // 5),
    )
    plan = extend_from_usage(bundle, probe.usage)
    total_parameters = sum(p.numel() for p in bundle.model.language_model.parameters()) + sum(
        p.numel() for p in bundle.model.mm_projector.parameters()
    )
    finetune = run_finetune(
        bundle, instruction_data, _settings(scale, scale.finetune_steps, seed, device), root / "finetune"
    )
    accuracy_moextend = caption_accuracy(bundle, digits_test, test_labels)
    moextend_perplexity = text_perplexity(bundle.model.language_model, tokenizer, held_out)

    # Baseline: every LLM weight and the projector, starting from the aligned model.
    baseline = load_bundle(llm_dir, vision_model=str(vision_dir), max_length=128)
    baseline.model.load_state_dict(aligned_state)
    full_names = [f"language_model.{n}" for n, _ in baseline.model.language_model.named_parameters()]
    full_names += baseline.model.projector_parameter_names()
    full = train_parameters(
        baseline.model,
        make_dataset(baseline, instruction_data),
        ChatCollator(tokenizer.pad_token_id),
        trainable=full_names,
        settings=_settings(scale, scale.finetune_steps, seed, device),
        description="full-finetune",
    )
    accuracy_full = caption_accuracy(baseline, digits_test, test_labels)
    full_perplexity = text_perplexity(baseline.model.language_model, tokenizer, held_out)

    return {
        "seed": seed,
        "plan": plan.to_dict(),
        "usage": probe.usage,
        "pretrain_losses": pretrain_losses,
        "align_losses": align.losses,
        "finetune_losses": finetune.losses,
        "full_losses": full.losses,
        "accuracy": {
            "aligned": accuracy_aligned,
            "moextend": accuracy_moextend,
            "full_finetune": accuracy_full,
        },
        "perplexity": {
            "original": original_perplexity,
            "moextend": moextend_perplexity,
            "full_finetune": full_perplexity,
        },
        "trainable": {
            "moextend": finetune.trainable_parameters,
            "full_finetune": full.trainable_parameters,
            "total": total_parameters,
        },
        "seconds_per_step": {
            "moextend": finetune.seconds / max(finetune.steps, 1),
            "full_finetune": full.seconds / max(full.steps, 1),
        },
        "test_images": len(digits_test),
        "chance_accuracy": 1 / len(DIGIT_NAMES),
        "wall_seconds": time.perf_counter() - started,
        "trainable_names": finetune_trainable_names(bundle.model),
    }
