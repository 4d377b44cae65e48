"""The RAS channel-attention module.

Implements the Recurrent Attention Strategy from "RAS: Deepening Neural Networks Implicitly and Locally via
Recurrent Attention Strategy" (Zhong, Wen, Qin, Huang; arXiv 2210.15676), as written in the official code
(Qrange-group/RAS). One per-channel affine map (w, b) is applied recurrently to the pooled descriptor:

    g = GAP(F),  z_1 = w ⊙ g + b,  z_2 = w ⊙ BN(z_1) + b,  a = σ(z_2),  output a ⊙ F,

with w = 0 and b = −1 at initialisation and a ``BatchNorm2d`` between the two steps.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from qcore.vision.attention import ChannelAffine, check_channels

__all__ = ["RAS", "RAS_BIAS_INIT", "RAS_WEIGHT_INIT"]

logger = logging.getLogger(__name__)

# Initial scale w and shift b of the shared affine map in the official code.
RAS_WEIGHT_INIT = 0.0
RAS_BIAS_INIT = -1.0


class RAS(nn.Module):
    """Recurrent shared per-channel affine attention.

    Follows timm's ``attn_layer`` contract: F of shape (B, C, H, W) in, a ⊙ F out, gate a of shape
    (B, C, 1, 1).

    Step t > 1 computes z_t = w ⊙ BN_t(z_{t−1}) + b with the same w and b in every step. The official code
    has exactly two steps and one BN (``steps=2``, the default). For ``steps > 2`` each extra step gets its
    own ``BatchNorm2d``, so every BN keeps running statistics of one step only. That form is our choice,
    because the official code defines no third step. ``steps=1`` gives σ(w ⊙ g + b) without a BN.

    Args:
        channels: number of channels C of the feature map.
        steps: number of recurrence steps T ≥ 1.
        weight_init: initial value of every entry of w. The official value 0 makes the first BN's input
            identical across the batch, so w and the BN receive no gradient at the start. Any other value
            is a deviation from the official code.
        bias_init: initial value of every entry of b.
        eps: epsilon of the BN layers.
        momentum: running-statistics momentum of the BN layers.
        device: device of the parameters.
        dtype: dtype of the parameters.
    """

    def __init__(
        self,
        channels: int,
        *,
        steps: int = 2,
        weight_init: float = RAS_WEIGHT_INIT,
        bias_init: float = RAS_BIAS_INIT,
        eps: float = 1e-5,
        momentum: float = 0.1,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.channels = check_channels(type(self).__name__, channels)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"RAS steps must be a positive integer (official value 2), got {steps!r}")
        self.steps = steps
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.affine = ChannelAffine(
            channels, weight_init=weight_init, bias_init=bias_init, device=device, dtype=dtype
        )
        self.norms = nn.ModuleList(
            nn.BatchNorm2d(channels, eps=eps, momentum=momentum, device=device, dtype=dtype)
            for _ in range(steps - 1)
        )

    def reset_parameters(self) -> None:
        """Reset w and b to their initial constants and every BN to γ = 1, β = 0 with fresh statistics."""
        self.affine.reset_parameters()
        for norm in self.norms:
            norm.reset_parameters()

    def step_logits(self, x: Tensor) -> list[Tensor]:
        """Return [z_1, ..., z_T] for a feature map x of shape (B, C, H, W), each of shape (B, C, 1, 1)."""
        current = self.affine(self.pool(x))
        logits = [current]
        for norm in self.norms:
            current = self.affine(norm(current))
            logits.append(current)
        return logits

    def gate(self, x: Tensor) -> Tensor:
        """Return the gate a = σ(z_T) of shape (B, C, 1, 1)."""
        return torch.sigmoid(self.step_logits(x)[-1])

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"RAS expects a feature map of shape (B, {self.channels}, H, W), got {tuple(x.shape)}"
            )
        return x * self.gate(x)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, steps={self.steps}"
