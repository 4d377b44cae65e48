"""CIFAR ResNets and torchvision ResNets with RAS in every residual block.

The official code of "RAS: Deepening Neural Networks Implicitly and Locally via Recurrent Attention
Strategy" (arXiv 2210.15676) puts RAS after ``bn3`` of every bottleneck in all three stages of ResNet-164.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from typing import Any

from torch import nn

from qcore.vision.attention import ATTENTION
from qcore.vision.resnet import CifarResNet, attach_attention_torchvision, create_cifar_resnet
from ras.module import RAS, RAS_BIAS_INIT, RAS_WEIGHT_INIT

__all__ = ["attach_ras_torchvision", "create_ras_resnet"]

logger = logging.getLogger(__name__)


def create_ras_resnet(
    name: str = "cifar_resnet164",
    *,
    steps: int = 2,
    weight_init: float = RAS_WEIGHT_INIT,
    bias_init: float = RAS_BIAS_INIT,
    stages: Iterable[int] | None = None,
    **kwargs: Any,
) -> CifarResNet:
    """Build a named CIFAR ResNet with RAS after the last BN of every block.

    Args:
        name: a ``qcore.vision.resnet.create_cifar_resnet`` name, for example ``cifar_resnet164``.
        steps: recurrence steps T (official value 2).
        weight_init: initial w (official value 0).
        bias_init: initial b (official value −1).
        stages: 0-based stage indices that get RAS; ``None`` means all three, as in the official code.
        **kwargs: passed on to ``CifarResNet`` (for example ``num_classes``).
    """
    attn_layer = functools.partial(RAS, steps=steps, weight_init=weight_init, bias_init=bias_init)
    return create_cifar_resnet(name, attn_layer=attn_layer, attn_stages=stages, **kwargs)


def attach_ras_torchvision(
    model: nn.Module, *, steps: int = 2, weight_init: float = RAS_WEIGHT_INIT
) -> nn.Module:
    """Insert RAS after the last BN of every residual block of a torchvision ResNet, in place, and return it."""
    return attach_attention_torchvision(model, RAS, steps=steps, weight_init=weight_init)


ATTENTION.add("ras", RAS)
