"""SPEM, the Self-adaptive Pooling Enhanced attention Module.

Paper: "SPEM: Self-adaptive Pooling Enhanced Attention Module for Image Recognition" (Zhong, Wen, Qin),
MMM 2023, arXiv 2208.10322 (v1 title "Mix-Pooling Strategy for Attention Mechanism"). Reference code:
Qrange-group/SPEM, ``models/spem.py``.

For a feature map F of shape (B, C, H, W):

1. M = global max pool of F and m = global min pool of F (min over W, then over H), both (B, C, 1, 1).
2. A shared channel affine (w₂, b₂): M' = w₂ ⊙ M + b₂ and m' = w₂ ⊙ m + b₂.
3. Mixing weights p̂ = p² / Σ p² from a learnable 2-vector p, and mix = p̂₀ · M' + p̂₁ · m'.
4. A second channel affine (w₁, b₁): u = w₁ ⊙ mix + b₁.
5. Gate a = σ(M' + m') ⊙ σ(u), and the output is a ⊙ F.

w₁, w₂ start at 0, b₁, b₂ at −1 and p at (0.5, 0.5). The module's auxiliary loss is ‖p‖², which the
official training adds to the cross-entropy with factor α = 0.1, summed over all blocks.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from qcore.vision.attention import ATTENTION, ChannelAffine, check_channels

__all__ = ["SPEM", "global_min_pool"]


def global_min_pool(x: torch.Tensor) -> torch.Tensor:
    """Return the minimum of x (B, C, H, W) over W, then over H, as a (B, C, 1, 1) tensor."""
    return x.amin(dim=3, keepdim=True).amin(dim=2, keepdim=True)


class SPEM(nn.Module):
    """Self-adaptive pooling enhanced attention for a (B, C, H, W) feature map.

    Works as a timm ``attn_layer`` and in :class:`qcore.vision.resnet.CifarResNet`; ``forward`` returns
    a ⊙ F and ``aux_loss()`` returns ‖p‖² for the trainer.

    Args:
        channels: Number of channels C.
        weight_init: Initial w₁ and w₂.
        bias_init: Initial b₁ and b₂.
        mix_init: Initial value of both entries of p.

    Attributes:
        pool_affine: The shared affine (w₂, b₂) applied to both pooled descriptors.
        mix_affine: The affine (w₁, b₁) applied to the mixed descriptor.
        mix_weight: The 2-vector p; entry 0 weighs max pooling, entry 1 min pooling.
    """

    def __init__(
        self,
        channels: int,
        *,
        weight_init: float = 0.0,
        bias_init: float = -1.0,
        mix_init: float = 0.5,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.channels = check_channels(type(self).__name__, channels)
        self.mix_init = float(mix_init)
        affine_args: dict[str, Any] = {
            "weight_init": weight_init,
            "bias_init": bias_init,
            "device": device,
            "dtype": dtype,
        }
        self.pool_affine = ChannelAffine(channels, **affine_args)
        self.mix_affine = ChannelAffine(channels, **affine_args)
        self.mix_weight = nn.Parameter(torch.empty(2, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Set w₁, w₂, b₁, b₂ and p back to their initial constants."""
        self.pool_affine.reset_parameters()
        self.mix_affine.reset_parameters()
        with torch.no_grad():
            self.mix_weight.fill_(self.mix_init)

    def mixing_weights(self) -> torch.Tensor:
        """Return p̂ = p² / Σ p² (non-negative, sums to 1), shape (2,)."""
        squared = self.mix_weight.square()
        # The floor only matters for p = (0, 0), where the ratio is undefined; it returns 0 there, not NaN.
        return squared / squared.sum().clamp_min(torch.finfo(squared.dtype).tiny)

    def pooled(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the affine-mapped max and min descriptors (M', m'), each (B, C, 1, 1)."""
        self._check_input(x)
        max_pooled = F.adaptive_max_pool2d(x, 1)
        min_pooled = global_min_pool(x)
        return self.pool_affine(max_pooled), self.pool_affine(min_pooled)

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        """Return mix = p̂₀ · M' + p̂₁ · m', shape (B, C, 1, 1)."""
        max_mapped, min_mapped = self.pooled(x)
        weights = self.mixing_weights()
        return weights[0] * max_mapped + weights[1] * min_mapped

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Return the gate a = σ(M' + m') ⊙ σ(w₁ ⊙ mix + b₁), shape (B, C, 1, 1)."""
        max_mapped, min_mapped = self.pooled(x)
        weights = self.mixing_weights()
        mixed = weights[0] * max_mapped + weights[1] * min_mapped
        return torch.sigmoid(max_mapped + min_mapped) * torch.sigmoid(self.mix_affine(mixed))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return a ⊙ x for x of shape (B, C, H, W)."""
        return x * self.gate(x)

    def aux_loss(self) -> torch.Tensor:
        """Return ‖p‖², the module's share of the official penalty α · Σ_blocks ‖p‖²."""
        return self.mix_weight.square().sum()

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"SPEM was built for {self.channels} channels and expects a (B, {self.channels}, H, W) "
                f"tensor, got shape {tuple(x.shape)}; build it with the channel count of the feature map"
            )

    def extra_repr(self) -> str:
        return f"{self.channels}"


ATTENTION.add("spem", SPEM)
