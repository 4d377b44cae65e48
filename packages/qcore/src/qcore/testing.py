"""Assertions for package tests: gradient coverage and which parameters an update changed."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

__all__ = ["assert_all_parameters_get_gradients", "assert_only_changed", "snapshot_parameters"]


def assert_all_parameters_get_gradients(model: nn.Module, loss: torch.Tensor) -> None:
    """Backpropagate ``loss`` and fail if any trainable parameter gets no gradient or a non-finite one."""
    model.zero_grad(set_to_none=True)
    loss.backward()
    without = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    if without:
        raise AssertionError(f"{len(without)} trainable parameters got no gradient: {without[:10]}")
    non_finite = [
        n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()
    ]
    if non_finite:
        raise AssertionError(f"non-finite gradients in: {non_finite[:10]}")


def snapshot_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """Return detached copies of every parameter and buffer, keyed by state-dict name."""
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def assert_only_changed(
    before: dict[str, torch.Tensor],
    model: nn.Module,
    allowed: Callable[[str], bool] | Iterable[str],
    *,
    require_change: bool = True,
) -> None:
    """Fail if a tensor outside ``allowed`` changed since ``before`` (or, optionally, none inside did).

    Args:
        before: A :func:`snapshot_parameters` result.
        model: The model after the update.
        allowed: A predicate on names, or name prefixes that may change.
        require_change: Also fail when no allowed parameter changed at all.
    """
    if not callable(allowed):
        prefixes = tuple(allowed)

        def allowed(name: str) -> bool:
            return name.startswith(prefixes)

    after = model.state_dict()
    changed = [n for n, t in before.items() if not torch.equal(t, after[n].detach())]
    forbidden = [n for n in changed if not allowed(n)]
    if forbidden:
        raise AssertionError(f"{len(forbidden)} tensors changed that should be frozen: {forbidden[:10]}")
    if require_change and not changed:
        raise AssertionError("no allowed parameter changed; the update had no effect")
