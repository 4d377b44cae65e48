"""Measurements of RAS's shared scale w: its gradient at initialisation and its size after training.

With the official initialisation (w = 0, b = −1) the BN between the two recurrence steps receives the
same value for every sample, so its output and therefore w's gradient are zero up to float32 rounding.
These helpers measure how close to zero they are in a given network.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from ras.module import RAS

__all__ = ["init_gradient_report", "shared_scale_summary", "track_shared_scale"]

logger = logging.getLogger(__name__)


def _ras_modules(model: nn.Module) -> list[RAS]:
    modules = [module for module in model.modules() if isinstance(module, RAS)]
    if not modules:
        raise ValueError(f"{type(model).__name__} contains no RAS module")
    return modules


def shared_scale_summary(model: nn.Module) -> dict[str, float]:
    """Return max |w|, mean |w| and the share of w entries that are exactly zero, over all RAS modules."""
    weights = torch.cat([module.affine.weight.detach().flatten() for module in _ras_modules(model)])
    return {
        "w_abs_max": float(weights.abs().max()),
        "w_abs_mean": float(weights.abs().mean()),
        "w_zero_share": float((weights == 0).float().mean()),
    }


def init_gradient_report(
    model: nn.Module,
    *,
    batch_size: int = 8,
    image_size: int = 32,
    num_classes: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Run one training-mode forward and backward pass on random data and summarise the RAS gradients.

    The model's parameter gradients are overwritten; its training flag is restored afterwards.

    Returns:
        The max |grad| of w, of b and of the BN γ and β over all RAS modules, and the share of w entries
        whose gradient is exactly zero.
    """
    if batch_size < 2:
        raise ValueError(f"batch_size must be at least 2 for training-mode BN, got {batch_size}")
    modules = _ras_modules(model)
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    images = torch.randn(batch_size, 3, image_size, image_size, generator=generator).to(device)
    was_training = model.training
    model.train()
    model.zero_grad(set_to_none=True)
    logits = model(images)
    classes = num_classes or logits.shape[1]
    labels = torch.randint(0, classes, (batch_size,), generator=generator).to(device)
    F.cross_entropy(logits, labels).backward()
    model.train(was_training)

    def max_abs(tensors: list[torch.Tensor | None]) -> float:
        return max(float(t.abs().max()) if t is not None else 0.0 for t in tensors)

    weight_grads = torch.cat([m.affine.weight.grad.flatten() for m in modules])
    norms = [norm for m in modules for norm in m.norms]
    return {
        "modules": float(len(modules)),
        "w_grad_abs_max": float(weight_grads.abs().max()),
        "w_grad_zero_share": float((weight_grads == 0).float().mean()),
        "b_grad_abs_max": max_abs([m.affine.bias.grad for m in modules]),
        "bn_gamma_grad_abs_max": max_abs([n.weight.grad for n in norms]) if norms else 0.0,
        "bn_beta_grad_abs_max": max_abs([n.bias.grad for n in norms]) if norms else 0.0,
    }


def track_shared_scale(
    model: nn.Module,
    *,
    steps: int,
    batch_size: int = 8,
    image_size: int = 32,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> list[float]:
    """Train ``model`` for ``steps`` SGD steps on random images and labels and return max |w| after each step.

    The defaults are the official optimiser settings. Random data cannot teach the network anything, so the
    result shows only how fast float32 rounding moves w away from an initial 0. The model is modified in place.
    """
    if steps < 1:
        raise ValueError(f"steps must be positive, got {steps}")
    if batch_size < 2:
        raise ValueError(f"batch_size must be at least 2 for training-mode BN, got {batch_size}")
    modules = _ras_modules(model)
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    model.train()
    history = []
    for _ in range(steps):
        images = torch.randn(batch_size, 3, image_size, image_size, generator=generator).to(device)
        optimizer.zero_grad(set_to_none=True)
        logits = model(images)
        labels = torch.randint(0, logits.shape[1], (batch_size,), generator=generator).to(device)
        F.cross_entropy(logits, labels).backward()
        optimizer.step()
        history.append(max(float(module.affine.weight.detach().abs().max()) for module in modules))
    return history
