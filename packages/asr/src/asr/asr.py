"""ASR: an attention module fed a learnable constant, so its gate folds into the preceding BatchNorm.

Paper: "Stripe Observation Guided Inference Cost-free Attention Mechanism" (Huang, Zhong, Wen, Qin, Lin),
ECCV 2024, arXiv 2304.06345 (v1 title: "ASR: Attention-alike Structural Re-parameterization").

During training an inner attention module A (SE by default) maps a learnable constant ψ of shape
(1, C, 1, 1), initialised to 0.1, to a gate v = A(ψ) in (0, 1). The module multiplies its input, the output
of a block's last BatchNorm, by v. Because v does not depend on the input, the product folds into the
BatchNorm's affine parameters (γ' = γ ⊙ v, β' = β ⊙ v) and costs nothing at inference.

Three forms are provided:

- `ASR`: the timm ``attn_layer`` form, placed right after the last BatchNorm of a block.
- `ASRWithAttention`: ASR followed by an ordinary input-dependent module ("ASR + SE"). Only the ASR part
  folds away.
- `ASRBatchNorm2d`: the form of the official code, a BatchNorm whose output is scaled by v, with
  ``fold(delete=True)`` producing a plain `nn.BatchNorm2d`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "ASR",
    "DEFAULT_INIT_VALUE",
    "ASRBatchNorm2d",
    "ASRWithAttention",
    "build_attention",
    "gate_method",
]

logger = logging.getLogger(__name__)

DEFAULT_INIT_VALUE = 0.1
"""Initial value of every element of ψ in the official code."""


def build_attention(
    spec: Any, channels: int, *, device: Any = None, dtype: Any = None, **kwargs: Any
) -> nn.Module:
    """Build an attention module from a registered name, a class or a callable taking the channel count.

    Names are looked up in ``qcore.vision.attention.ATTENTION``. Modules are built as
    ``factory(channels, device=..., dtype=..., **kwargs)``, the timm ``attn_layer`` contract.

    Raises:
        ValueError: ``spec`` means "no attention" (None, False, "none").
        TypeError: ``spec`` is a module instance or not callable.
        qcore.registry.UnknownNameError: ``spec`` is an unknown name.
    """
    from qcore.vision.attention import resolve_attention

    factory = resolve_attention(spec)
    if factory is None:
        raise ValueError(f"ASR needs an attention module to compute its scale, got {spec!r}")
    return factory(channels, device=device, dtype=dtype, **kwargs)


def gate_method(module: nn.Module) -> Callable[[Tensor], Tensor] | None:
    """Return the module's ``gate(x)`` method, or None.

    timm's SE-like modules store their activation layer under the attribute ``gate``, which is a
    submodule, not a method returning the gate. For those modules this returns None.
    """
    method = getattr(module, "gate", None)
    return method if inspect.ismethod(method) else None


def _check_feature_map(x: Tensor, channels: int, owner: str) -> None:
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(
            f"{owner} expects a (B, {channels}, H, W) feature map, got shape {tuple(x.shape)}. "
            f"Build it with the channel count of the preceding BatchNorm"
        )


class ASR(nn.Module):
    """Constant attention scale v = A(ψ) applied to a (B, C, H, W) feature map.

    Args:
        channels: number of channels C of the feature map.
        attention: inner attention module that turns ψ into the gate. A registered name, a class or a
            callable. The built module must define ``gate(x)`` returning a (1, C, 1, 1) tensor.
        init_value: initial value of every element of ψ.
        attention_kwargs: extra keyword arguments for the inner module (for example ``reduction``).
        device: device of the parameters.
        dtype: dtype of the parameters.

    Attributes:
        psi: the learnable constant ψ, shape (1, C, 1, 1). The official code names it ``vector``.
        attention: the inner attention module A.
    """

    def __init__(
        self,
        channels: int,
        *,
        attention: Any = "se",
        init_value: float = DEFAULT_INIT_VALUE,
        attention_kwargs: dict[str, Any] | None = None,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive integer, got {channels!r}")
        self.channels = channels
        self.init_value = float(init_value)
        self.psi = nn.Parameter(torch.empty(1, channels, 1, 1, device=device, dtype=dtype))
        self.attention = build_attention(
            attention, channels, device=device, dtype=dtype, **(attention_kwargs or {})
        )
        if gate_method(self.attention) is None:
            raise TypeError(
                f"the inner attention module {type(self.attention).__name__} has no gate(x) method, but ASR "
                f"needs the gate a of shape (1, C, 1, 1) that the module computes for the input ψ"
            )
        self.folded_scale: Tensor | None
        self.register_buffer("folded_scale", None, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Set ψ to the initial value. The inner module keeps its own initialisation."""
        with torch.no_grad():
            self.psi.fill_(self.init_value)

    @property
    def is_folded(self) -> bool:
        """Whether forward uses the cached scale from `fold` instead of recomputing A(ψ)."""
        return self.folded_scale is not None

    def scale(self) -> Tensor:
        """Compute v = A(ψ), shape (1, C, 1, 1), differentiable with respect to ψ and A's parameters."""
        gate = gate_method(self.attention)
        assert gate is not None  # checked in __init__
        value = gate(self.psi)
        if value.shape != self.psi.shape:
            raise ValueError(
                f"the inner attention module {type(self.attention).__name__} returned a gate of shape "
                f"{tuple(value.shape)} for ψ of shape {tuple(self.psi.shape)}, but it must keep the shape"
            )
        return value

    def fold(self) -> None:
        """Cache v for evaluation. `unfold` returns to the training form."""
        with torch.no_grad():
            self.folded_scale = self.scale().detach().clone()

    def unfold(self) -> None:
        """Drop the cached scale so that forward recomputes A(ψ) and gradients reach ψ and A."""
        self.folded_scale = None

    def forward(self, x: Tensor) -> Tensor:
        """Scale a (B, C, H, W) map by the constant gate v, returning v ⊙ x."""
        _check_feature_map(x, self.channels, type(self).__name__)
        if self.folded_scale is not None:
            return x * self.folded_scale
        return x * self.scale()

    def extra_repr(self) -> str:
        return f"{self.channels}, init_value={self.init_value}, folded={self.is_folded}"


class ASRWithAttention(nn.Module):
    """ASR followed by an ordinary input-dependent attention module (the paper's "ASR + SE" rows).

    Re-parameterisation folds the ASR part into the preceding BatchNorm and keeps ``attention``, so the
    folded network equals the backbone with that module alone.

    Args:
        channels: number of channels C.
        asr_attention: inner module of the ASR part (see `ASR`).
        attention: the input-dependent module applied after the ASR scale.
        init_value: initial value of ψ.
        attention_kwargs: extra keyword arguments for both attention modules.
        device: device of the parameters.
        dtype: dtype of the parameters.
    """

    def __init__(
        self,
        channels: int,
        *,
        asr_attention: Any = "se",
        attention: Any = "se",
        init_value: float = DEFAULT_INIT_VALUE,
        attention_kwargs: dict[str, Any] | None = None,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        self.asr = ASR(
            channels,
            attention=asr_attention,
            init_value=init_value,
            attention_kwargs=attention_kwargs,
            device=device,
            dtype=dtype,
        )
        self.attention = build_attention(
            attention, channels, device=device, dtype=dtype, **(attention_kwargs or {})
        )

    def fold(self) -> None:
        """Cache the ASR scale for evaluation."""
        self.asr.fold()

    def unfold(self) -> None:
        """Return the ASR part to its training form."""
        self.asr.unfold()

    def forward(self, x: Tensor) -> Tensor:
        """Apply the constant ASR scale, then the input-dependent module, to a (B, C, H, W) map."""
        return self.attention(self.asr(x))


class ASRBatchNorm2d(nn.Module):
    """BatchNorm followed by the ASR scale, the form of the official code that replaces ``bn3``.

    ``fold()`` builds ``fused_bn`` with γ' = γ ⊙ v and β' = β ⊙ v. It shares the running mean, running
    variance and batch counter tensors with ``bn``. ``unfold()`` drops it again.
    ``fold(delete=True)`` also removes ``bn`` and ``asr``, after which only `to_batchnorm` and
    evaluation remain possible.

    Args:
        channels: number of channels C.
        attention: inner attention module of the ASR scale.
        init_value: initial value of ψ.
        attention_kwargs: extra keyword arguments for the inner module.
        eps: BatchNorm epsilon.
        momentum: BatchNorm momentum.
        device: device of the parameters.
        dtype: dtype of the parameters.
    """

    def __init__(
        self,
        channels: int,
        *,
        attention: Any = "se",
        init_value: float = DEFAULT_INIT_VALUE,
        attention_kwargs: dict[str, Any] | None = None,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.bn: nn.BatchNorm2d | None = nn.BatchNorm2d(
            channels, eps=eps, momentum=momentum, device=device, dtype=dtype
        )
        self.asr: ASR | None = ASR(
            channels,
            attention=attention,
            init_value=init_value,
            attention_kwargs=attention_kwargs,
            device=device,
            dtype=dtype,
        )
        self.fused_bn: nn.BatchNorm2d | None = None

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d, **kwargs: Any) -> ASRBatchNorm2d:
        """Wrap an existing BatchNorm, keeping its parameters and running statistics."""
        if not isinstance(bn, nn.BatchNorm2d) or not bn.affine or not bn.track_running_stats:
            raise ValueError(
                f"ASRBatchNorm2d wraps an affine BatchNorm2d with running statistics, got {bn!r}"
            )
        module = cls(
            bn.num_features,
            eps=bn.eps,
            momentum=bn.momentum,
            device=bn.weight.device,
            dtype=bn.weight.dtype,
            **kwargs,
        )
        module.bn = bn
        return module

    @property
    def is_folded(self) -> bool:
        """Whether forward uses ``fused_bn``."""
        return self.fused_bn is not None

    @property
    def is_deleted(self) -> bool:
        """Whether ``fold(delete=True)`` removed the training form."""
        return self.bn is None

    def fold(self, delete: bool = False) -> None:
        """Build ``fused_bn`` from ``bn`` and v. With ``delete=True``, also remove ``bn`` and ``asr``."""
        if self.is_deleted:
            return
        assert self.bn is not None and self.asr is not None
        self.fused_bn = _scaled_batchnorm(self.bn, self.asr)
        if delete:
            self.bn = None
            self.asr = None

    def unfold(self) -> None:
        """Return to the training form, which is impossible after ``fold(delete=True)``."""
        if self.is_deleted:
            raise RuntimeError(
                "this ASRBatchNorm2d was folded with delete=True, so its training form is gone. "
                "Rebuild the model and load a checkpoint saved before folding to train again"
            )
        self.fused_bn = None

    def to_batchnorm(self) -> nn.BatchNorm2d:
        """Return a plain BatchNorm2d that computes the folded BN(x) ⊙ v."""
        if self.fused_bn is None:
            self.fold()
        assert self.fused_bn is not None
        return self.fused_bn

    def forward(self, x: Tensor) -> Tensor:
        """Normalise a (B, C, H, W) map and scale it by v."""
        _check_feature_map(x, self.channels, type(self).__name__)
        if self.fused_bn is not None:
            return self.fused_bn(x)
        assert self.bn is not None and self.asr is not None
        return self.asr(self.bn(x))


def _scaled_batchnorm(bn: nn.BatchNorm2d, asr: ASR) -> nn.BatchNorm2d:
    """Return a BatchNorm with γ ⊙ v and β ⊙ v that shares ``bn``'s running statistics."""
    with torch.no_grad():
        value = asr.scale().reshape(-1)
        fused = nn.BatchNorm2d(
            bn.num_features,
            eps=bn.eps,
            momentum=bn.momentum,
            affine=True,
            track_running_stats=bn.track_running_stats,
            device=bn.weight.device,
            dtype=bn.weight.dtype,
        )
        fused.weight.copy_(bn.weight * value)
        fused.bias.copy_(bn.bias * value)
    # The same tensor objects, so updates of the running statistics are visible through both modules.
    fused.running_mean = bn.running_mean
    fused.running_var = bn.running_var
    fused.num_batches_tracked = bn.num_batches_tracked
    fused.train(bn.training)
    return fused
