"""Image-classification training with the recipe of the CIFAR attention papers, on accelerate.

The recipe (official ``run.py`` of LSAS, RAS, SEM, SPEM and ASR with their README commands): SGD with
momentum 0.9 and no Nesterov, lr 0.1, weight decay 1e-4 on every parameter, batch 128 (test 100),
164 epochs with lr × 0.1 at epochs 81 and 122, cross-entropy plus α times the sum of the attention
modules' ``aux_loss()`` (α = 0.1 in SPEM's code; modules without ``aux_loss`` add nothing).

Checkpoints go to ``<run_dir>/checkpoints/last`` after every epoch (and every ``checkpoint_every_steps``
optimizer steps), and to ``<run_dir>/checkpoints/best`` when the test accuracy improves. A checkpoint contains
the model, the optimizer and scheduler state, the position in the epoch, the running epoch sums and the
RNG states. The shuffling order depends only on ``(seed, epoch)`` and the augmentation only on
``(seed, epoch, sample index)``, so a run killed at any point and resumed from its last checkpoint ends with
the same weights as an uninterrupted run (bit for bit on CPU; GPU kernels may be non-deterministic).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from qcore.checkpoint import (
    capture_rng_state,
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from qcore.config import Config, check_positive, option
from qcore.progress import progress
from qcore.rundir import RunDir
from qcore.seeding import seed_everything
from qcore.vision.attention import collect_aux_loss
from qcore.vision.data import DATASETS, build_datasets

__all__ = ["TrainConfig", "evaluate_classifier", "train_classifier"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(kw_only=True)
class TrainConfig(Config):
    """Training recipe; the defaults are the official CIFAR recipe of the attention papers."""

    dataset: str = option("digits", help="dataset name", choices=DATASETS)
    data_root: str | None = option(None, help="data folder for cifar10, cifar100 and imagefolder")
    image_size: int = option(32, help="side of the square input images, in pixels")
    augment: bool = option(
        True, help="random crop (padding 4 at 32 px) and horizontal flip on training images"
    )
    train_crop: int = option(
        0, help="stl10 only: train on random crops of this size, test on whole images (0: no crop)"
    )
    drop_last: bool = option(False, help="drop the last incomplete training batch of every epoch")
    epochs: int = option(164, help="number of training epochs")
    milestones: tuple[int, ...] = option(
        (81, 122), help="epochs after which the learning rate is multiplied by gamma"
    )
    gamma: float = option(0.1, help="learning-rate factor at each milestone")
    lr: float = option(0.1, help="initial SGD learning rate")
    momentum: float = option(0.9, help="SGD momentum")
    nesterov: bool = option(False, help="use Nesterov momentum (the official recipe does not)")
    weight_decay: float = option(
        1e-4, help="L2 weight decay on every parameter, attention parameters included"
    )
    batch_size: int = option(128, help="training batch size")
    test_batch_size: int = option(100, help="evaluation batch size")
    aux_loss_weight: float = option(
        0.1, help="factor α of the summed aux_loss() of the model's modules (SPEM's official α is 0.1)"
    )
    seed: int = option(0, help="seed of initialisation, shuffling and augmentation")
    max_steps: int = option(0, help="stop after this many optimizer steps in total (0: no limit; smoke runs)")
    checkpoint_every_steps: int = option(
        0, help="also write checkpoints/last every this many optimizer steps (0: only after each epoch)"
    )
    max_eval_batches: int = option(
        0, help="evaluate on at most this many test batches (0: the whole test set; smoke runs)"
    )
    save_best: bool = option(True, help="write checkpoints/best whenever the test accuracy improves")
    num_workers: int = option(0, help="data-loader worker processes")
    device: str = option("auto", help="'auto' uses CUDA when available", choices=("auto", "cpu", "cuda"))
    mixed_precision: str = option(
        "no", help="accelerate mixed-precision mode", choices=("no", "fp16", "bf16")
    )
    deterministic: bool = option(False, help="ask PyTorch for deterministic kernels (slower on GPU)")

    def validate(self) -> None:
        super().validate()
        for name in ("epochs", "lr", "batch_size", "test_batch_size", "image_size"):
            check_positive(name, getattr(self, name))
        non_negative = (
            "train_crop",
            "momentum",
            "weight_decay",
            "aux_loss_weight",
            "max_steps",
            "checkpoint_every_steps",
            "max_eval_batches",
        )
        for name in non_negative:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"invalid {name}={value!r}: must be a number >= 0")
        if list(self.milestones) != sorted(self.milestones) or any(m < 1 for m in self.milestones):
            raise ValueError(f"invalid milestones={self.milestones!r}: must be increasing epoch numbers >= 1")


@dataclasses.dataclass
class _Progress:
    """Counters saved in every checkpoint, enough to continue a run at the exact optimizer step."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best_acc: float = -1.0
    best_epoch: int = -1
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    # Running sums of the current epoch: loss, cross-entropy, aux loss, correct predictions, samples.
    sums: dict[str, float] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0

    def to_state(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> _Progress:
        return cls(**{f.name: state[f.name] for f in dataclasses.fields(cls) if f.name in state})


def _new_sums() -> dict[str, float]:
    return {"loss": 0.0, "ce": 0.0, "aux": 0.0, "correct": 0.0, "samples": 0.0}


def _epoch_order(num_samples: int, seed: int, epoch: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(num_samples, generator=generator).tolist()


def _move(batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = batch
    return images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


@torch.no_grad()
def evaluate_classifier(
    model: nn.Module, loader: DataLoader, *, device: torch.device | str | None = None, max_batches: int = 0
) -> dict:
    """Return ``{"accuracy", "loss", "samples"}`` of ``model`` on ``loader``, in eval mode.

    Accuracy is top-1 in percent and loss the mean cross-entropy; auxiliary losses are ignored, as in
    the official test pass. ``max_batches`` > 0 stops after that many batches. The model's training mode
    is restored afterwards.
    """
    if device is None:
        device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct, total, loss_sum = 0, 0, 0.0
    try:
        for batch_index, batch in enumerate(loader):
            if max_batches and batch_index >= max_batches:
                break
            images, labels = _move(batch, torch.device(device))
            logits = model(images)
            loss_sum += float(F.cross_entropy(logits.float(), labels, reduction="sum"))
            correct += int((logits.argmax(dim=1) == labels).sum())
            total += labels.numel()
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("evaluate_classifier got an empty data loader")
    return {"accuracy": 100.0 * correct / total, "loss": loss_sum / total, "samples": total}


def _make_accelerator(config: TrainConfig) -> Any:
    from accelerate import Accelerator

    if config.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but no CUDA device is available; use device='cpu'")
    return Accelerator(cpu=config.device == "cpu", mixed_precision=config.mixed_precision)


def _resume(
    run_dir: RunDir, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
) -> _Progress | None:
    checkpoint_path = latest_checkpoint(run_dir.path)
    if checkpoint_path is None:
        return None
    checkpoint = load_checkpoint(checkpoint_path)
    state = checkpoint.training_state or {}
    if "progress" not in state:
        logger.warning("checkpoint %s has no training state; starting from scratch", checkpoint_path)
        return None
    missing, unexpected = model.load_state_dict(checkpoint.state_dict, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {checkpoint_path} does not fit this model (missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}); use a fresh run directory or build the same model"
        )
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    restore_rng_state(state["rng"])
    progress_state = _Progress.from_state(state["progress"])
    logger.info(
        "resumed from %s at epoch %d, step %d of the epoch (global step %d)",
        checkpoint_path,
        progress_state.epoch,
        progress_state.step_in_epoch,
        progress_state.global_step,
    )
    return progress_state


def _save(
    run_dir: RunDir,
    name: str,
    model: nn.Module,
    checkpoint_config: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: _Progress,
) -> Path:
    training_state = {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": capture_rng_state(),
        "progress": state.to_state(),
    }
    return save_checkpoint(
        run_dir.checkpoint_dir / name, model=model, config=checkpoint_config, training_state=training_state
    )


def _results(state: _Progress) -> dict[str, Any]:
    final = state.history[-1] if state.history else {}
    return {
        "best_acc": state.best_acc,
        "best_epoch": state.best_epoch,
        "final_acc": final.get("test_acc", float("nan")),
        "final_loss": final.get("test_loss", float("nan")),
        "epochs_completed": state.epoch,
        "steps": state.global_step,
        "history": list(state.history),
        "seconds": state.seconds,
    }


def train_classifier(
    model: nn.Module,
    config: TrainConfig,
    run_dir: RunDir | str | Path,
    *,
    resume: bool = True,
    datasets: tuple[Any, Any] | None = None,
    step_callback: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Train ``model`` with ``config`` and return its results.

    Args:
        model: Any classifier mapping (B, 3, S, S) images to (B, classes) logits. Modules that define
            ``aux_loss()`` add ``config.aux_loss_weight`` times its value to the loss.
        config: The recipe. ``config.to_dict()`` is stored with every checkpoint, so a subclass with model
            fields makes checkpoints self-describing.
        run_dir: Output folder (metrics, results, checkpoints).
        resume: Continue from ``<run_dir>/checkpoints/last`` when it exists.
        datasets: ``(train, test)`` datasets to use in place of ``build_datasets(config.dataset, ...)``.
        step_callback: Called with the global step after every optimizer step (and after any checkpoint of
            that step); tests use it to interrupt a run.

    Returns:
        ``best_acc`` and ``best_epoch`` (best test top-1 over epochs, in percent, as the papers report),
        ``final_acc`` (test top-1 after the last epoch), ``final_loss``, ``epochs_completed``, ``steps``,
        ``history`` (one dict per evaluated epoch) and ``seconds`` (training time, summed over resumes).
    """
    run_dir = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    seed_everything(config.seed, deterministic=config.deterministic)
    train_set: Any
    test_set: Any
    if datasets is None:
        train_set, test_set, _ = build_datasets(
            config.dataset,
            root=config.data_root,
            image_size=config.image_size,
            augment=config.augment,
            seed=config.seed,
            train_crop=config.train_crop or None,
        )
    else:
        train_set, test_set = datasets
    if len(train_set) == 0:
        raise ValueError("the training set is empty")

    accelerator = _make_accelerator(config)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.nesterov,
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(config.milestones), gamma=config.gamma
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    core_model = accelerator.unwrap_model(model)
    device = accelerator.device

    state = _resume(run_dir, core_model, optimizer, scheduler) if resume else None
    if state is None:
        state = _Progress(sums=_new_sums())
        run_dir.path.joinpath("metrics.jsonl").unlink(missing_ok=True)
    else:
        run_dir.truncate_metrics(state.epoch)
    run_dir.save_config(config)
    checkpoint_config = config.to_dict()
    test_loader = DataLoader(
        test_set, batch_size=config.test_batch_size, shuffle=False, num_workers=config.num_workers
    )
    if config.drop_last:
        batches_per_epoch = len(train_set) // config.batch_size
    else:
        batches_per_epoch = -(-len(train_set) // config.batch_size)
    if batches_per_epoch == 0:
        raise ValueError(
            f"drop_last with batch_size={config.batch_size} leaves no batch of the {len(train_set)} training "
            "images; lower batch_size or turn drop_last off"
        )

    def max_steps_reached() -> bool:
        return config.max_steps > 0 and state.global_step >= config.max_steps

    while state.epoch < config.epochs and not max_steps_reached():
        epoch_start = time.perf_counter()
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(state.epoch)
        order = _epoch_order(len(train_set), config.seed, state.epoch)
        # Skipping whole batches of the epoch's fixed order resumes at the exact next batch.
        order = order[state.step_in_epoch * config.batch_size :]
        loader = DataLoader(
            train_set,
            batch_size=config.batch_size,
            sampler=order,
            num_workers=config.num_workers,
            drop_last=config.drop_last,
        )
        model.train()
        bar = progress(
            loader,
            desc=f"epoch {state.epoch + 1}/{config.epochs}",
            total=batches_per_epoch,
            initial=state.step_in_epoch,
        )
        for batch in bar:
            images, labels = _move(batch, device)
            with accelerator.autocast():
                logits = model(images)
                ce = F.cross_entropy(logits.float(), labels)
            aux = collect_aux_loss(core_model)
            loss = ce if aux is None or config.aux_loss_weight == 0 else ce + config.aux_loss_weight * aux
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()

            state.global_step += 1
            state.step_in_epoch += 1
            sums = state.sums
            sums["loss"] += float(loss.detach()) * labels.numel()
            sums["ce"] += float(ce.detach()) * labels.numel()
            sums["aux"] += (float(aux.detach()) if aux is not None else 0.0) * labels.numel()
            sums["correct"] += float((logits.argmax(dim=1) == labels).sum())
            sums["samples"] += labels.numel()
            bar.set_postfix(loss=f"{sums['loss'] / sums['samples']:.4f}", refresh=False)

            if config.checkpoint_every_steps and state.global_step % config.checkpoint_every_steps == 0:
                _save(run_dir, "last", core_model, checkpoint_config, optimizer, scheduler, state)
            if step_callback is not None:
                step_callback(state.global_step)
            if max_steps_reached():
                break
        bar.close()
        epoch_complete = state.step_in_epoch >= batches_per_epoch
        state.seconds += time.perf_counter() - epoch_start

        lr = optimizer.param_groups[0]["lr"]
        evaluation = evaluate_classifier(
            core_model, test_loader, device=device, max_batches=config.max_eval_batches
        )
        samples = max(state.sums["samples"], 1.0)
        record = {
            "epoch": state.epoch + 1,
            "lr": lr,
            "train_loss": state.sums["loss"] / samples,
            "train_ce": state.sums["ce"] / samples,
            "train_aux": state.sums["aux"] / samples,
            "train_acc": 100.0 * state.sums["correct"] / samples,
            "test_loss": evaluation["loss"],
            "test_acc": evaluation["accuracy"],
        }
        if epoch_complete:
            scheduler.step()
            state.epoch += 1
            state.step_in_epoch = 0
            state.sums = _new_sums()
        state.history.append(record)
        run_dir.log_metrics(state.epoch, **record)
        logger.info(
            "epoch %d: train loss %.4f, train acc %.2f%%, test acc %.2f%%",
            record["epoch"],
            record["train_loss"],
            record["train_acc"],
            record["test_acc"],
        )
        improved = evaluation["accuracy"] > state.best_acc
        if improved:
            state.best_acc = evaluation["accuracy"]
            state.best_epoch = record["epoch"]
        _save(run_dir, "last", core_model, checkpoint_config, optimizer, scheduler, state)
        if improved and config.save_best:
            save_checkpoint(run_dir.checkpoint_dir / "best", model=core_model, config=checkpoint_config)

    results = _results(state)
    run_dir.write_results({key: value for key, value in results.items() if key != "history"})
    return results
