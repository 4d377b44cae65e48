"""LSAS networks: CIFAR ResNets and torchvision ResNets with LSAS in a chosen set of stages.

The official code of "LSAS: Lightweight Sub-attention Strategy for Alleviating Attention Bias Problem"
(arXiv 2305.05200) puts SE + LSAS only in the last CIFAR stage (``layer3``, C = 256 in ResNet-164) and in
``layer3`` and ``layer4`` of the ImageNet ResNets, while its SE baseline uses every stage. Those official
stage sets are the defaults here; ``stages="all"`` gives the like-for-like placement.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from typing import Any

from torch import nn

from lsas.module import LSAS
from qcore.vision.attention import ATTENTION
from qcore.vision.resnet import CifarResNet, attach_attention_torchvision, create_cifar_resnet

__all__ = [
    "ALL_CIFAR_STAGES",
    "ALL_TORCHVISION_LAYERS",
    "LSAS_VARIANTS",
    "OFFICIAL_CIFAR_STAGES",
    "OFFICIAL_TORCHVISION_LAYERS",
    "attach_lsas_torchvision",
    "create_lsas_resnet",
    "resolve_cifar_stages",
    "resolve_torchvision_layers",
]

logger = logging.getLogger(__name__)

# 0-based CIFAR stage indices: the official model uses only the third stage.
OFFICIAL_CIFAR_STAGES = (2,)
ALL_CIFAR_STAGES = (0, 1, 2)
# torchvision ResNet layers (1-based names layer1..layer4): the official ImageNet model uses layer3 and layer4.
OFFICIAL_TORCHVISION_LAYERS = (3, 4)
ALL_TORCHVISION_LAYERS = (1, 2, 3, 4)

# Registered attention names and their sub-attention order; "lsas" is the official default order 1.
LSAS_VARIANTS = {"lsas": 1, "lsas_order2": 2, "lsas_order3": 3, "lsas_order4": 4, "lsas_order5": 5}


def _resolve_indices(
    stages: str | Iterable[int], *, official: tuple[int, ...], everything: tuple[int, ...], what: str
) -> tuple[int, ...]:
    if isinstance(stages, str):
        if stages == "official":
            return official
        if stages == "all":
            return everything
        raise ValueError(
            f"invalid {what} {stages!r}; use 'official', 'all' or a list of indices from {everything}"
        )
    indices = tuple(sorted(set(stages)))
    bad = [index for index in indices if index not in everything]
    if bad:
        raise ValueError(f"invalid {what} {bad}; valid indices are {everything}")
    return indices


def resolve_cifar_stages(stages: str | Iterable[int]) -> tuple[int, ...]:
    """Return the 0-based CIFAR stage indices for ``"official"`` (stage 3 only), ``"all"`` or a list."""
    return _resolve_indices(
        stages, official=OFFICIAL_CIFAR_STAGES, everything=ALL_CIFAR_STAGES, what="CIFAR stages"
    )


def resolve_torchvision_layers(layers: str | Iterable[int]) -> tuple[int, ...]:
    """Return torchvision layer numbers (1 to 4) for ``"official"`` (3 and 4), ``"all"`` or a list."""
    return _resolve_indices(
        layers,
        official=OFFICIAL_TORCHVISION_LAYERS,
        everything=ALL_TORCHVISION_LAYERS,
        what="torchvision layers",
    )


def create_lsas_resnet(
    name: str = "cifar_resnet164",
    *,
    order: int = 1,
    reduction: int = 16,
    stages: str | Iterable[int] = "official",
    **kwargs: Any,
) -> CifarResNet:
    """Build a named CIFAR ResNet with LSAS in the chosen stages.

    Args:
        name: a ``qcore.vision.resnet.create_cifar_resnet`` name, for example ``cifar_resnet164``.
        order: number of sub-attention steps k.
        reduction: SE reduction ratio inside LSAS.
        stages: ``"official"`` (the third stage only, as in the official CIFAR model), ``"all"``, or 0-based
            stage indices.
        **kwargs: passed on to ``CifarResNet`` (for example ``num_classes``).
    """
    attn_layer = functools.partial(LSAS, order=order, reduction=reduction)
    return create_cifar_resnet(
        name, attn_layer=attn_layer, attn_stages=resolve_cifar_stages(stages), **kwargs
    )


def attach_lsas_torchvision(
    model: nn.Module, *, order: int = 1, reduction: int = 16, layers: str | Iterable[int] = "official"
) -> nn.Module:
    """Insert LSAS after the last BN of every residual block in the chosen layers of a torchvision ResNet.

    Args:
        model: a ``torchvision.models.resnet.ResNet``; modified in place and returned.
        order: number of sub-attention steps k.
        reduction: SE reduction ratio inside LSAS.
        layers: ``"official"`` (``layer3`` and ``layer4``), ``"all"``, or layer numbers from 1 to 4.
    """
    for number in resolve_torchvision_layers(layers):
        layer = getattr(model, f"layer{number}", None)
        if layer is None:
            raise ValueError(
                f"{type(model).__name__} has no attribute layer{number}; expected a torchvision ResNet"
            )
        attach_attention_torchvision(layer, LSAS, order=order, reduction=reduction)
    return model


for _name, _order in LSAS_VARIANTS.items():
    ATTENTION.add(_name, LSAS if _order == 1 else functools.partial(LSAS, order=_order))
