"""Channel-attention building blocks shared by the CIFAR attention packages.

Every module here follows timm's ``attn_layer`` contract: ``cls(channels, *, device=None, dtype=None, ...)``,
and ``forward`` maps a feature map F of shape (B, C, H, W) to the gated map a ⊙ F of the same shape.
Modules may also define ``aux_loss()`` (a scalar added to the training loss), ``fold()`` and
``reset_parameters()``; the CIFAR backbone and the trainer in :mod:`qcore.vision` honour them.

Method packages register their modules in :data:`ATTENTION` when they are imported.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from qcore.registry import Registry

__all__ = [
    "ATTENTION",
    "AttentionFactory",
    "ChannelAffine",
    "SqueezeExcite",
    "attention_name",
    "check_channels",
    "collect_aux_loss",
    "resolve_attention",
]

# Called with the channel count first; timm and the torchvision helper also pass device= and dtype=.
AttentionFactory = Callable[..., nn.Module]

ATTENTION = Registry("attention")

# Specs that mean "no attention" in resolve_attention and in the CLIs.
_NO_ATTENTION = ("none", "plain", "")


def check_channels(module_name: str, channels: Any) -> int:
    """Return ``channels`` as an int, or raise ``ValueError`` naming the module and the bad value."""
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(
            f"{module_name} needs a positive integer channel count as its first argument, got {channels!r}; "
            "pass the number of channels C of the (B, C, H, W) feature map it gates"
        )
    return channels


class ChannelAffine(nn.Module):
    """Per-channel affine map w ⊙ x + b with w and b of shape (1, C, 1, 1).

    This is the "IE" operator of the Qrange-group attention papers. It applies no sigmoid; callers do.

    Args:
        channels: Number of channels C.
        weight_init: Initial value of every entry of w.
        bias_init: Initial value of every entry of b.
    """

    def __init__(
        self,
        channels: int,
        *,
        weight_init: float,
        bias_init: float,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.channels = check_channels(type(self).__name__, channels)
        self.weight_init = float(weight_init)
        self.bias_init = float(bias_init)
        self.weight = nn.Parameter(torch.empty(1, channels, 1, 1, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(1, channels, 1, 1, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Set w and b back to their initial constants."""
        with torch.no_grad():
            self.weight.fill_(self.weight_init)
            self.bias.fill_(self.bias_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply w ⊙ x + b to x of shape (B, C, H, W) (H = W = 1 for pooled descriptors)."""
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"ChannelAffine expects a (B, {self.channels}, H, W) tensor, got shape {tuple(x.shape)}"
            )
        return x * self.weight + self.bias

    def extra_repr(self) -> str:
        return f"{self.channels}, weight_init={self.weight_init}, bias_init={self.bias_init}"


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation as in the official CIFAR code of the Qrange-group papers.

    GAP → Linear(C → C/r, bias) → ReLU → Linear(C/r → C, bias) → sigmoid gives the gate a of shape
    (B, C, 1, 1), and ``forward`` returns a ⊙ F. Linear layers keep PyTorch's default initialisation.

    Args:
        channels: Number of channels C.
        reduction: Reduction ratio r. The reduced width is ``max(1, round(C / r))``, which is C/16 for
            every bottleneck stage of the CIFAR ResNet.
        rd_channels: Reduced width; overrides ``reduction`` when given.
    """

    def __init__(
        self,
        channels: int,
        *,
        reduction: int = 16,
        rd_channels: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.channels = check_channels(type(self).__name__, channels)
        if rd_channels is None:
            if isinstance(reduction, bool) or not isinstance(reduction, int) or reduction < 1:
                raise ValueError(f"SqueezeExcite reduction must be a positive integer, got {reduction!r}")
            rd_channels = max(1, round(channels / reduction))
        elif isinstance(rd_channels, bool) or not isinstance(rd_channels, int) or rd_channels < 1:
            raise ValueError(f"SqueezeExcite rd_channels must be a positive integer, got {rd_channels!r}")
        self.rd_channels = rd_channels
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(channels, rd_channels, device=device, dtype=dtype)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(rd_channels, channels, device=device, dtype=dtype)

    def reset_parameters(self) -> None:
        """Re-draw both Linear layers with PyTorch's default initialisation."""
        self.fc1.reset_parameters()
        self.fc2.reset_parameters()

    def excitation_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Return the pre-sigmoid excitation of x (B, C, H, W) as a (B, C, 1, 1) tensor."""
        batch, channels = x.shape[:2]
        squeezed = self.pool(x).view(batch, channels)
        return self.fc2(self.act(self.fc1(squeezed))).view(batch, channels, 1, 1)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Return the gate a = σ(excitation) of shape (B, C, 1, 1)."""
        return torch.sigmoid(self.excitation_logits(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return a ⊙ x for x of shape (B, C, H, W)."""
        return x * self.gate(x)

    def extra_repr(self) -> str:
        return f"{self.channels}, rd_channels={self.rd_channels}"


def resolve_attention(spec: Any, **kwargs: Any) -> AttentionFactory | None:
    """Turn an attention spec into a factory ``(channels) -> nn.Module``, or ``None`` for no attention.

    Args:
        spec: ``None``, ``False`` or ``"none"`` means no attention, and ``True`` means SE (as in timm).
            Otherwise a name registered in :data:`ATTENTION`, a module class, or any callable that
            takes the channel count.
        **kwargs: Keyword arguments bound to the class or callable (for example ``reduction=8``).

    Raises:
        qcore.registry.UnknownNameError: ``spec`` is a string that is not registered.
        TypeError: ``spec`` is none of the accepted kinds.
    """
    if spec is None or spec is False:
        return None
    if isinstance(spec, str) and spec.lower() in _NO_ATTENTION:
        return None
    if spec is True:
        spec = "se"
    if isinstance(spec, str):
        spec = ATTENTION.get(spec)
    if isinstance(spec, nn.Module):
        raise TypeError(
            f"attention spec must be a name, class or factory, not a module instance ({type(spec).__name__}); "
            "pass the class, so every block gets its own module"
        )
    if not callable(spec):
        raise TypeError(
            f"attention spec must be None, a registered name, a class or a callable, got {spec!r}; "
            f"registered names: {', '.join(ATTENTION.names())}"
        )
    if kwargs:
        return functools.partial(spec, **kwargs)
    return spec


def attention_name(spec: Any) -> str:
    """Return a short readable name for an attention spec (for tables and logs)."""
    if resolve_attention(spec) is None:
        return "none"
    if isinstance(spec, str):
        return spec
    if spec is True:
        return "se"
    target = spec.func if isinstance(spec, functools.partial) else spec
    if inspect.isclass(target) or inspect.isfunction(target):
        return target.__name__
    return type(target).__name__


def collect_aux_loss(model: nn.Module) -> torch.Tensor | None:
    """Sum ``aux_loss()`` over every submodule that defines it; ``None`` when no module contributes.

    Modules whose class sets ``aggregates_aux_loss = True`` (such as :class:`qcore.vision.resnet.CifarResNet`)
    are skipped, because their own ``aux_loss`` already sums their children and would count them twice.
    """
    total: torch.Tensor | None = None
    for module in model.modules():
        if getattr(type(module), "aggregates_aux_loss", False):
            continue
        hook = getattr(module, "aux_loss", None)
        if not callable(hook):
            continue
        value = hook()
        if value is None:
            continue
        total = value if total is None else total + value
    return total


ATTENTION.add("se", SqueezeExcite)
