"""The LSAS channel-attention module.

Implements the Lightweight Sub-attention Strategy from "LSAS: Lightweight Sub-attention Strategy for
Alleviating Attention Bias Problem" (Zhong, Wen, Qin, Chen, Huang; ICME 2023, arXiv 2305.05200), as written
in the official code (Qrange-group/LSAS): SE excitation logits y, a cascade of per-channel affine
sub-attention steps s_1 = w_1 ⊙ y + b_1, s_i = w_i ⊙ s_{i-1} + b_i, and the gate
a = σ(y) ⊙ σ(s_1) ⊙ ... ⊙ σ(s_k).
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from qcore.vision.attention import ChannelAffine, SqueezeExcite, check_channels

__all__ = ["LSAS", "SUB_ATTENTION_BIAS_INIT", "SUB_ATTENTION_WEIGHT_INIT"]

logger = logging.getLogger(__name__)

# Initial value of every sub-attention step's scale w_i and shift b_i in the official code.
SUB_ATTENTION_WEIGHT_INIT = 0.5
SUB_ATTENTION_BIAS_INIT = -0.5


class LSAS(nn.Module):
    """SE attention refined by a cascade of ``order`` sub-attention gates.

    The module follows timm's ``attn_layer`` contract: it takes the feature map F of shape (B, C, H, W)
    and returns a ⊙ F of the same shape, with the gate a of shape (B, C, 1, 1).

    Args:
        channels: number of channels C of the feature map.
        order: number k of sub-attention steps. 0 gives plain SE; the official code offers 0 to 5 and
            uses 1 by default.
        reduction: SE reduction ratio; the hidden width is C // reduction.
        rd_channels: SE hidden width; overrides ``reduction`` when given.
        device: device of the parameters.
        dtype: dtype of the parameters.
    """

    def __init__(
        self,
        channels: int,
        *,
        order: int = 1,
        reduction: int = 16,
        rd_channels: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if isinstance(order, bool) or not isinstance(order, int) or order < 0:
            raise ValueError(
                f"LSAS order must be a non-negative integer (0 = plain SE, official values 0 to 5), got {order!r}"
            )
        self.channels = check_channels(type(self).__name__, channels)
        self.order = order
        self.se = SqueezeExcite(
            channels, reduction=reduction, rd_channels=rd_channels, device=device, dtype=dtype
        )
        self.sub_attention = nn.ModuleList(
            ChannelAffine(
                channels,
                weight_init=SUB_ATTENTION_WEIGHT_INIT,
                bias_init=SUB_ATTENTION_BIAS_INIT,
                device=device,
                dtype=dtype,
            )
            for _ in range(order)
        )

    def reset_parameters(self) -> None:
        """Reset the SE layers to PyTorch's defaults and every w_i, b_i to 0.5 and -0.5."""
        self.se.reset_parameters()
        for step in self.sub_attention:
            step.reset_parameters()

    def excitation_logits(self, x: Tensor) -> Tensor:
        """Return the SE logits y of shape (B, C, 1, 1) for a feature map x of shape (B, C, H, W)."""
        return self.se.excitation_logits(x)

    def sub_logits(self, logits: Tensor) -> list[Tensor]:
        """Return the sub-attention logits [s_1, ..., s_k] computed from the SE logits y, each (B, C, 1, 1)."""
        steps = []
        current = logits
        for step in self.sub_attention:
            current = step(current)
            steps.append(current)
        return steps

    def gate(self, x: Tensor) -> Tensor:
        """Return the gate a = σ(y) ⊙ σ(s_1) ⊙ ... ⊙ σ(s_k) of shape (B, C, 1, 1)."""
        logits = self.excitation_logits(x)
        gate = torch.sigmoid(logits)
        for sub_logit in self.sub_logits(logits):
            gate = gate * torch.sigmoid(sub_logit)
        return gate

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"LSAS expects a feature map of shape (B, {self.channels}, H, W), got {tuple(x.shape)}"
            )
        return x * self.gate(x)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, order={self.order}"
