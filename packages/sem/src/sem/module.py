"""The SEM channel-attention module.

Implements the Switchable Self-attention Module from "SEM: Switchable Self-attention Module" (Zhong, Wen,
Qin; arXiv 2209.05680) as written in the official code (Qrange-group/SEM). From the squeezed descriptor
z = GAP(F), three excitation operators give pre-sigmoid logits: SE (e_1), ECA (e_2) and the channel affine
"IE" (e_3). A decision layer s = σ(Linear(C → 3)(z)) weighs each of them, and the gate is
a = σ(s_1·e_1) ⊙ σ(s_2·e_2) ⊙ σ(s_3·e_3). The output is a ⊙ F.

Each operator can be switched off. The decision layer then has one output per remaining operator and the
product runs over those. With all three on (the default) the module is the official one.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import Tensor, nn

from qcore.vision.attention import ATTENTION, ChannelAffine, SqueezeExcite, check_channels

__all__ = ["IE_BIAS_INIT", "IE_WEIGHT_INIT", "OPERATORS", "SEM", "eca_kernel_size"]

logger = logging.getLogger(__name__)

OPERATORS = ("se", "eca", "ie")
"""Operator names in the order of the decision layer's outputs."""

# Initial value of the IE branch's scale w and shift b in the official code.
IE_WEIGHT_INIT = 0.0
IE_BIAS_INIT = -1.0


def eca_kernel_size(channels: int, *, gamma: int = 2, beta: int = 1) -> int:
    """Return ECA's adaptive kernel size k: t if t is odd, else t + 1, with t = int(|(log₂ C + β) / γ|).

    This gives 3, 5 and 5 for C = 64, 128 and 256.
    """
    channels = check_channels("eca_kernel_size", channels)
    t = int(abs((math.log2(channels) + beta) / gamma))
    return t if t % 2 == 1 else t + 1


class SEM(nn.Module):
    """Switchable excitation: SE, ECA and IE logits, each gated by a learned input-dependent decision.

    Follows timm's ``attn_layer`` contract: it takes F of shape (B, C, H, W) and returns a ⊙ F, with the
    gate a of shape (B, C, 1, 1).

    Args:
        channels: number of channels C.
        reduction: SE reduction ratio. The hidden width is round(C / reduction), C/16 in every bottleneck.
        rd_channels: SE hidden width, which overrides ``reduction``.
        use_se: include the SE operator.
        use_eca: include the ECA operator.
        use_ie: include the IE (channel affine) operator.
        eca_kernel: ECA kernel size, odd. None uses `eca_kernel_size` of C.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Attributes:
        decision: Linear(C → number of operators) with bias. Its sigmoid is the decision s.
        se: the SE operator (a ``SqueezeExcite`` whose excitation logits are used), or None.
        eca: Conv1d(1 → 1, k, padding k // 2, no bias) over the channel axis, or None.
        ie: ``ChannelAffine`` with w = 0 and b = −1 at init, or None.
    """

    def __init__(
        self,
        channels: int,
        *,
        reduction: int = 16,
        rd_channels: int | None = None,
        use_se: bool = True,
        use_eca: bool = True,
        use_ie: bool = True,
        eca_kernel: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.channels = check_channels(type(self).__name__, channels)
        switches = {"se": use_se, "eca": use_eca, "ie": use_ie}
        for name, value in switches.items():
            if not isinstance(value, bool):
                raise ValueError(f"SEM use_{name} must be True or False, got {value!r}")
        self.operators = tuple(name for name in OPERATORS if switches[name])
        if not self.operators:
            raise ValueError(
                "SEM needs at least one operator: set one of use_se, use_eca, use_ie to True "
                "(all three are on by default)"
            )

        self.pool = nn.AdaptiveAvgPool2d(1)
        self.decision = nn.Linear(channels, len(self.operators), device=device, dtype=dtype)
        self.se = (
            SqueezeExcite(channels, reduction=reduction, rd_channels=rd_channels, device=device, dtype=dtype)
            if use_se
            else None
        )
        self.eca = None
        self.eca_kernel = None
        if use_eca:
            kernel = eca_kernel_size(channels) if eca_kernel is None else eca_kernel
            if isinstance(kernel, bool) or not isinstance(kernel, int) or kernel < 1 or kernel % 2 == 0:
                raise ValueError(f"SEM eca_kernel must be a positive odd integer, got {eca_kernel!r}")
            self.eca_kernel = kernel
            self.eca = nn.Conv1d(1, 1, kernel, padding=kernel // 2, bias=False, device=device, dtype=dtype)
        self.ie = (
            ChannelAffine(
                channels, weight_init=IE_WEIGHT_INIT, bias_init=IE_BIAS_INIT, device=device, dtype=dtype
            )
            if use_ie
            else None
        )

    def reset_parameters(self) -> None:
        """Re-draw the decision layer, SE and ECA with PyTorch's defaults and set IE to w = 0, b = −1."""
        self.decision.reset_parameters()
        if self.se is not None:
            self.se.reset_parameters()
        if self.eca is not None:
            self.eca.reset_parameters()
        if self.ie is not None:
            self.ie.reset_parameters()

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"SEM expects a (B, {self.channels}, H, W) tensor, got shape {tuple(x.shape)}")

    def decide(self, x: Tensor) -> Tensor:
        """Return the decision s = σ(Linear(GAP(x))) of shape (B, number of operators), one sigmoid each."""
        self._check_input(x)
        return self._decide(self.pool(x))

    def operator_logits(self, x: Tensor) -> dict[str, Tensor]:
        """Return each enabled operator's pre-sigmoid logits e_i of shape (B, C, 1, 1), keyed by name."""
        self._check_input(x)
        return self._operator_logits(self.pool(x))

    def gate(self, x: Tensor) -> Tensor:
        """Return the gate a = ∏ σ(s_i · e_i) of shape (B, C, 1, 1) for x of shape (B, C, H, W)."""
        self._check_input(x)
        squeezed = self.pool(x)
        decision = self._decide(squeezed)
        factors = [
            torch.sigmoid(decision[:, index].view(-1, 1, 1, 1) * logits)
            for index, logits in enumerate(self._operator_logits(squeezed).values())
        ]
        gate = factors[0]
        for factor in factors[1:]:
            gate = gate * factor
        return gate

    def _decide(self, squeezed: Tensor) -> Tensor:
        return torch.sigmoid(self.decision(squeezed.flatten(1)))

    def _operator_logits(self, squeezed: Tensor) -> dict[str, Tensor]:
        batch = squeezed.shape[0]
        logits: dict[str, Tensor] = {}
        if self.se is not None:
            # SqueezeExcite pools again, which is the identity on the (B, C, 1, 1) descriptor.
            logits["se"] = self.se.excitation_logits(squeezed)
        if self.eca is not None:
            channel_sequence = squeezed.view(batch, 1, self.channels)
            logits["eca"] = self.eca(channel_sequence).view(batch, self.channels, 1, 1)
        if self.ie is not None:
            logits["ie"] = self.ie(squeezed)
        return logits

    def forward(self, x: Tensor) -> Tensor:
        """Return a ⊙ x for x of shape (B, C, H, W)."""
        return x * self.gate(x)

    def extra_repr(self) -> str:
        return f"{self.channels}, operators={self.operators}, eca_kernel={self.eca_kernel}"


ATTENTION.add("sem", SEM)
