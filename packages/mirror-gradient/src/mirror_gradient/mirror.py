"""Mirror Gradient as a training step that any PyTorch loop can call.

Mirror Gradient (Zhong et al., "Mirror Gradient: Towards Robust Multimodal Recommender Systems via
Exploring Flat Local Minima", WWW 2024, arXiv 2402.11262) alternates normal descent steps with "mirror"
iterations. A mirror iteration takes a descent step scaled by ``alpha1`` and then an ascent step scaled by
``alpha2``, evaluated at the new point on the same batch, which pushes training towards flat minima.

Two update rules are available:

* ``update="optimizer"`` (default, as in the authors' code): the loss is multiplied by ``alpha1``, then by
  ``-alpha2`` for the second pass, and both passes go through ``optimizer.step()``. With SGD this is exactly
  ``theta - alpha1*lr*g(theta) + alpha2*lr*g(theta')``. With Adam the scale mostly cancels in the update
  size, and the reversed gradient is mixed into the moment estimates.
* ``update="sgd"``: the mirror pair updates the parameters directly with each parameter group's learning
  rate, ``theta' = theta - alpha1*lr*g(theta)`` and ``theta = theta' + alpha2*lr*g(theta')``, whatever the
  optimiser is. The optimiser's state is left untouched, so Algorithm 1 of the paper holds for any optimiser.

Two counters decide which iterations mirror:

* ``counter="batch"`` (default, as in the authors' code): the batch index within the epoch, from 0, so
  batches 0, beta, 2*beta, ... of every epoch mirror and an epoch of N batches makes
  ``N + ceil(N / beta)`` optimiser steps.
* ``counter="global"`` (Algorithm 1 of the paper): iteration ``t`` counts from 1 across epochs and
  mirrors when ``t % beta == 0``.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "COUNTERS",
    "UPDATES",
    "MirrorGradient",
    "MirrorStepResult",
    "expected_optimizer_steps",
    "mirrored_batches",
]

logger = logging.getLogger(__name__)

COUNTERS = ("batch", "global")
UPDATES = ("optimizer", "sgd")

LossClosure = Callable[[], torch.Tensor | tuple[torch.Tensor, ...]]


def _sum_loss(losses: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    if isinstance(losses, tuple | list):
        return sum(losses[1:], losses[0])
    return losses


def mirrored_batches(num_batches: int, beta: int) -> list[int]:
    """Return the batch indices within an epoch that mirror under the batch counter (0, beta, 2*beta, ...)."""
    return list(range(0, num_batches, beta))


def expected_optimizer_steps(num_batches: int, beta: int) -> int:
    """Return ``N + ceil(N / beta)``: the optimiser steps of one epoch of N batches under the batch counter."""
    return num_batches + math.ceil(num_batches / beta)


@dataclass(frozen=True)
class MirrorStepResult:
    """Outcome of one training iteration.

    Attributes:
        loss: the first-pass loss (detached), the value the authors' trainer logs.
        losses: the first-pass loss parts (detached) when the closure returns a tuple, else ``(loss,)``.
        mirrored: whether this iteration ran the mirror pair.
        mirror_loss: the loss of the second pass at the updated parameters (detached), or None.
        optimizer_steps: parameter updates made: 1 for a normal iteration and 2 for a mirror pair.
    """

    loss: torch.Tensor
    losses: tuple[torch.Tensor, ...]
    mirrored: bool
    mirror_loss: torch.Tensor | None
    optimizer_steps: int


class MirrorGradient:
    """Run normal and mirror iterations for one optimiser.

    Args:
        optimizer: the optimiser that updates the model.
        alpha1: scale of the descent step of a mirror pair (paper: alpha1 > alpha2 > 0). Default 1.0.
        alpha2: scale of the ascent step of a mirror pair. Default 0.2, the middle of the authors' grid
            {0.1, 0.2, 0.3}.
        beta: mirror interval in iterations, a positive integer. Default 3.
        counter: ``"batch"`` (authors' code) or ``"global"`` (the paper's Algorithm 1), see the module doc.
        update: ``"optimizer"`` (authors' code) or ``"sgd"`` (the paper's algebra for any optimiser).
        clip_grad_norm: keyword arguments of ``torch.nn.utils.clip_grad_norm_`` (for example
            ``{"max_norm": 5.0}``), or None. As in the authors' code, a mirror pair clips only before its
            second step, and a normal iteration clips before its step.
        scaler: an optional ``torch.amp.GradScaler`` for mixed precision with ``update="optimizer"``.
        enabled: when False every iteration is a normal one, which gives plain training with the same loop.

    Call :meth:`start_epoch` at the start of every epoch, then :meth:`step` once per batch.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        alpha1: float = 1.0,
        alpha2: float = 0.2,
        beta: int = 3,
        counter: str = "batch",
        update: str = "optimizer",
        clip_grad_norm: dict | None = None,
        scaler: torch.amp.GradScaler | None = None,
        enabled: bool = True,
    ) -> None:
        validate_mirror_settings(alpha1=alpha1, alpha2=alpha2, beta=beta, counter=counter, update=update)
        if scaler is not None and update == "sgd":
            raise ValueError(
                "update='sgd' applies the mirror pair without the optimiser and cannot use a GradScaler; "
                "pass scaler=None or use update='optimizer'."
            )
        self.optimizer = optimizer
        self.alpha1 = float(alpha1)
        self.alpha2 = float(alpha2)
        self.beta = int(beta)
        self.counter = counter
        self.update = update
        self.clip_grad_norm = dict(clip_grad_norm) if clip_grad_norm else None
        self.scaler = scaler
        self.enabled = enabled
        self.batch_index = 0
        self.global_step = 0
        self.optimizer_steps = 0

    def start_epoch(self) -> None:
        """Reset the batch index; the global counter keeps counting."""
        self.batch_index = 0

    def is_mirror_iteration(self) -> bool:
        """Return whether the next call to :meth:`step` runs a mirror pair."""
        if not self.enabled:
            return False
        if self.counter == "batch":
            return self.batch_index % self.beta == 0
        return (self.global_step + 1) % self.beta == 0

    def step(
        self,
        compute_loss: LossClosure,
        *,
        check_loss: Callable[[torch.Tensor], None] | None = None,
    ) -> MirrorStepResult:
        """Run one training iteration on one batch.

        Args:
            compute_loss: closure that runs the forward pass on the batch and returns a scalar loss or a
                tuple of scalar losses, which are summed. A mirror pair calls it twice, so it must use the
                same batch (users, positives and sampled negatives) both times.
            check_loss: optional callback run on every summed loss before its backward pass, for example a
                NaN check that raises.

        Returns:
            The first-pass loss, whether the iteration mirrored, and the number of optimiser steps taken.
        """
        mirrored = self.is_mirror_iteration()
        self.optimizer.zero_grad()
        losses = compute_loss()
        loss = _sum_loss(losses)
        if check_loss is not None:
            check_loss(loss)
        parts = (
            tuple(part.detach() for part in losses) if isinstance(losses, tuple | list) else (loss.detach(),)
        )

        mirror_loss = None
        if mirrored:
            mirror_loss = self._mirror_pair(loss, compute_loss, check_loss)
            steps = 2
        else:
            self._backward(loss)
            self._clip()
            self._optimizer_step()
            steps = 1

        self.batch_index += 1
        self.global_step += 1
        self.optimizer_steps += steps
        return MirrorStepResult(
            loss=loss.detach(),
            losses=parts,
            mirrored=mirrored,
            mirror_loss=mirror_loss,
            optimizer_steps=steps,
        )

    def _mirror_pair(
        self,
        loss: torch.Tensor,
        compute_loss: LossClosure,
        check_loss: Callable[[torch.Tensor], None] | None,
    ) -> torch.Tensor:
        # Descent step scaled by alpha1 at theta.
        if self.update == "optimizer":
            self._backward(self.alpha1 * loss)
            self._optimizer_step()
        else:
            loss.backward()
            self._sgd_update(-self.alpha1)
        self.optimizer.zero_grad()

        # Ascent step scaled by alpha2, evaluated at theta' on the same batch.
        second_loss = _sum_loss(compute_loss())
        if check_loss is not None:
            check_loss(second_loss)
        if self.update == "optimizer":
            self._backward(-self.alpha2 * second_loss)
            self._clip()
            self._optimizer_step()
        else:
            second_loss.backward()
            self._clip()
            self._sgd_update(self.alpha2)
        return second_loss.detach()

    def _parameters(self) -> Iterable[nn.Parameter]:
        for group in self.optimizer.param_groups:
            yield from group["params"]

    def _backward(self, loss: torch.Tensor) -> None:
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def _clip(self) -> None:
        if not self.clip_grad_norm:
            return
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(list(self._parameters()), **self.clip_grad_norm)

    def _optimizer_step(self) -> None:
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()

    @torch.no_grad()
    def _sgd_update(self, signed_scale: float) -> None:
        """Apply ``theta += signed_scale * lr * grad`` to every parameter that has a gradient."""
        for group in self.optimizer.param_groups:
            lr = group["lr"]
            for parameter in group["params"]:
                if parameter.grad is not None:
                    parameter.add_(parameter.grad, alpha=signed_scale * lr)


def validate_mirror_settings(*, alpha1: float, alpha2: float, beta: int, counter: str, update: str) -> None:
    """Raise ValueError naming the setting when a Mirror Gradient setting is invalid."""
    if not isinstance(alpha1, int | float) or not math.isfinite(alpha1) or alpha1 < 0:
        raise ValueError(f"mg_alpha1 must be a finite number >= 0, got {alpha1!r}; the authors use 1.0.")
    if not isinstance(alpha2, int | float) or not math.isfinite(alpha2) or alpha2 < 0:
        raise ValueError(
            f"mg_alpha2 must be a finite number >= 0, got {alpha2!r}; the authors search 0.1, 0.2 and 0.3."
        )
    if isinstance(beta, bool) or not isinstance(beta, int) or beta < 1:
        raise ValueError(f"mg_beta must be a positive integer, got {beta!r}; the authors use 3.")
    if counter not in COUNTERS:
        raise ValueError(f"mg_counter must be one of {COUNTERS}, got {counter!r}.")
    if update not in UPDATES:
        raise ValueError(f"mg_update must be one of {UPDATES}, got {update!r}.")
    if alpha2 >= alpha1 > 0:
        warnings.warn(
            f"mg_alpha2={alpha2} is not below mg_alpha1={alpha1}, so a mirror pair may ascend the loss; "
            "the paper requires alpha1 > alpha2 > 0.",
            stacklevel=3,
        )
