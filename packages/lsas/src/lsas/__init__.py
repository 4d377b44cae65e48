"""LSAS: Lightweight Sub-attention Strategy for channel attention in CNNs.

Reproduces "LSAS: Lightweight Sub-attention Strategy for Alleviating Attention Bias Problem" (Zhong, Wen,
Qin, Chen, Huang; ICME 2023, arXiv 2305.05200). Importing the package registers the attention names
``lsas`` (order 1) and ``lsas_order2`` to ``lsas_order5`` in ``qcore.vision.attention.ATTENTION``.
"""

from lsas.attention_bias import (
    AttentionBiasReport,
    attention_bias_metrics,
    boxes_to_masks,
    diagnose_attention_bias,
    grad_cam,
    intensity_masks,
    plot_attention_overlays,
)
from lsas.models import (
    LSAS_VARIANTS,
    OFFICIAL_CIFAR_STAGES,
    OFFICIAL_TORCHVISION_LAYERS,
    attach_lsas_torchvision,
    create_lsas_resnet,
)
from lsas.module import LSAS

__all__ = [
    "LSAS",
    "LSAS_VARIANTS",
    "OFFICIAL_CIFAR_STAGES",
    "OFFICIAL_TORCHVISION_LAYERS",
    "AttentionBiasReport",
    "attach_lsas_torchvision",
    "attention_bias_metrics",
    "boxes_to_masks",
    "create_lsas_resnet",
    "diagnose_attention_bias",
    "grad_cam",
    "intensity_masks",
    "plot_attention_overlays",
]
