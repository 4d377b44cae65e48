"""Binary cross-entropy between the recognition network's logits and the PSNR-prior difficulty labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

__all__ = ["DWSRMaskBCELoss"]

_REDUCTIONS = ("none", "mean", "sum")


@LOSS_REGISTRY.register()
class DWSRMaskBCELoss(nn.Module):
    """Binary cross-entropy on logits for the difficulty mask (label 1 = hard).

    Args:
        loss_weight (float): Weight of this loss in the total. Default: 1.0.
        pos_weight (float | None): Weight of the hard class, as in ``torch.nn.BCEWithLogitsLoss``.
            Default: None (both classes weigh the same).
        reduction (str): ``"none"``, ``"mean"`` or ``"sum"``. Default: ``"mean"``.
    """

    def __init__(self, loss_weight: float = 1.0, pos_weight: float | None = None, reduction: str = "mean"):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        if pos_weight is not None and pos_weight <= 0:
            raise ValueError(f"pos_weight must be positive, got {pos_weight!r}")
        self.loss_weight = loss_weight
        self.pos_weight = pos_weight
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Compare logits ``(B, 1, H, W)`` with targets of the same shape in [0, 1]."""
        if logits.shape != target.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ")
        pos_weight = None if self.pos_weight is None else logits.new_tensor(self.pos_weight)
        loss = F.binary_cross_entropy_with_logits(
            logits, target, pos_weight=pos_weight, reduction=self.reduction
        )
        return self.loss_weight * loss
