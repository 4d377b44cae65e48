"""A resumable training loop over a chosen set of parameters, driven by Hugging Face Accelerate.

Optimiser and schedule follow the official recipe: AdamW (``adamw_torch``), weight decay 0, linear warm-up
over 3 % of the steps, then cosine decay, gradient norm clipped at 1.0. A checkpoint stores only the
trained tensors plus optimiser, scheduler, step and RNG state, under ``<output_dir>/checkpoints/last``, so a
rerun with the same arguments continues where the last checkpoint left off.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qcore.checkpoint import (
    capture_rng_state,
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from qcore.progress import progress
from qcore.rundir import RunDir

__all__ = ["TrainingSettings", "TrainingSummary", "train_parameters"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainingSettings:
    """Optimisation settings of one stage."""

    learning_rate: float
    max_steps: int
    batch_size: int
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    save_steps: int = 0
    log_steps: int = 10
    seed: int = 42
    device: str = "cpu"
    mixed_precision: str = "no"


@dataclasses.dataclass
class TrainingSummary:
    """Result of a training run: per-step losses, the first step run (above 0 after a resume), wall time."""

    losses: list[float]
    ce_losses: list[float]
    start_step: int
    steps: int
    seconds: float
    trainable_parameters: int


def _batches_for_step(step: int, dataset_size: int, batch_size: int, seed: int) -> list[int]:
    """Return the dataset indices of optimiser step ``step`` (a fresh permutation every epoch)."""
    batches_per_epoch = max(1, math.ceil(dataset_size / batch_size))
    epoch, position = divmod(step, batches_per_epoch)
    generator = torch.Generator().manual_seed(seed + epoch)
    order = torch.randperm(dataset_size, generator=generator).tolist()
    return order[position * batch_size : (position + 1) * batch_size]


def _move(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {
        key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()
    }


def train_parameters(
    model: nn.Module,
    dataset: Any,
    collator: Callable[[list[Any]], dict[str, Any]],
    *,
    trainable: Sequence[str],
    settings: TrainingSettings,
    output_dir: str | Path | None = None,
    resume: bool = True,
    description: str = "train",
    run_dir: RunDir | None = None,
) -> TrainingSummary:
    """Train the parameters named in ``trainable`` and freeze every other one.

    Args:
        model: a module whose forward takes the collated batch and returns an object with ``loss`` and
            ``ce_loss``.
        dataset: items for ``collator``.
        collator: builds a batch from a list of items.
        trainable: state-dict names of the parameters to train.
        settings: optimisation settings.
        output_dir: where ``checkpoints/last`` is written; ``None`` disables checkpoints.
        resume: continue from ``output_dir/checkpoints/last`` when it exists.
        description: label of the progress bar and log lines.
        run_dir: where per-step metrics are appended.
    """
    from accelerate import Accelerator
    from transformers import get_cosine_schedule_with_warmup

    if len(dataset) == 0:
        raise ValueError(f"{description}: the training set is empty")
    if settings.max_steps < 1:
        raise ValueError(f"{description}: max_steps must be at least 1, got {settings.max_steps}")
    names = set(trainable)
    params = dict(model.named_parameters())
    missing = sorted(names - set(params))
    if missing:
        raise ValueError(f"{description}: unknown trainable parameter names {missing[:5]}")
    for name, param in params.items():
        param.requires_grad_(name in names)
    trained = [params[name] for name in sorted(names)]
    trainable_count = sum(param.numel() for param in trained)
    logger.info("%s: training %d tensors, %d parameters", description, len(trained), trainable_count)

    accelerator = Accelerator(cpu=settings.device == "cpu", mixed_precision=settings.mixed_precision)
    optimizer = torch.optim.AdamW(trained, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    warmup = math.ceil(settings.warmup_ratio * settings.max_steps)
    scheduler = get_cosine_schedule_with_warmup(optimizer, warmup, settings.max_steps)

    start_step = 0
    checkpoint_dir = None if output_dir is None else Path(output_dir)
    last = None if checkpoint_dir is None or not resume else latest_checkpoint(checkpoint_dir)
    if last is not None:
        checkpoint = load_checkpoint(last)
        with torch.no_grad():
            for name, tensor in checkpoint.state_dict.items():
                params[name].copy_(tensor)
        state = checkpoint.training_state or {}
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng_state(state["rng"])
        start_step = int(state["step"])
        logger.info("%s: resumed from %s at step %d", description, last, start_step)

    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()

    def save(step: int) -> None:
        if checkpoint_dir is None:
            return
        save_checkpoint(
            checkpoint_dir / "checkpoints" / "last",
            model={name: params[name].detach().contiguous() for name in sorted(names)},
            config=dataclasses.asdict(settings),
            training_state={
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": capture_rng_state(),
                "step": step,
            },
        )

    losses: list[float] = []
    ce_losses: list[float] = []
    started = time.perf_counter()
    for step in progress(range(start_step, settings.max_steps), desc=description):
        indices = _batches_for_step(step, len(dataset), settings.batch_size, settings.seed)
        batch = _move(collator([dataset[index] for index in indices]), accelerator.device)
        output = model(**batch)
        accelerator.backward(output.loss)
        if settings.max_grad_norm > 0:
            accelerator.clip_grad_norm_(trained, settings.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        losses.append(float(output.loss.detach()))
        ce_losses.append(float(output.ce_loss.detach()))
        if run_dir is not None:
            run_dir.log_metrics(
                step + 1, **{f"{description}/loss": losses[-1], f"{description}/ce": ce_losses[-1]}
            )
        if settings.log_steps and (step + 1) % settings.log_steps == 0:
            logger.info("%s step %d/%d loss %.4f", description, step + 1, settings.max_steps, losses[-1])
        if settings.save_steps and (step + 1) % settings.save_steps == 0:
            save(step + 1)
    seconds = time.perf_counter() - started
    if start_step < settings.max_steps:
        save(settings.max_steps)
    model.eval()
    return TrainingSummary(
        losses, ce_losses, start_step, settings.max_steps - start_step, seconds, trainable_count
    )
