"""CIFAR ResNets, channel-attention plumbing, data, training and reproduction helpers for vision packages.

Submodules: :mod:`~qcore.vision.attention` (registry, SE, channel affine), :mod:`~qcore.vision.resnet`
(CIFAR ResNet with an attention slot, torchvision helper), :mod:`~qcore.vision.data` (digits, CIFAR,
image folders), :mod:`~qcore.vision.train` (recipe and trainer), :mod:`~qcore.vision.reproduction`,
:mod:`~qcore.vision.cli` and :mod:`~qcore.vision.benchmark`.
"""

from qcore.vision.attention import (
    ATTENTION,
    ChannelAffine,
    SqueezeExcite,
    collect_aux_loss,
    resolve_attention,
)
from qcore.vision.resnet import CifarResNet, attach_attention_torchvision, create_cifar_resnet

__all__ = [
    "ATTENTION",
    "ChannelAffine",
    "CifarResNet",
    "SqueezeExcite",
    "attach_attention_torchvision",
    "collect_aux_loss",
    "create_cifar_resnet",
    "resolve_attention",
]
