"""Difficulty-aware dual-way super-resolution (DWSR) as a BasicSR plug-in.

Implements "Difficulty-aware Image Super Resolution via Deep Adaptive Dual-Network" (Qin, Xie, Shi, Wen;
arXiv 1904.05802). Importing this package first makes BasicSR 1.4.2 importable on torchvision 0.17 and
newer, then registers ``DWSRNet`` and ``DWSRRecognitionNet`` (ARCH_REGISTRY), ``DWSRModel``
(MODEL_REGISTRY) and ``DWSRMaskBCELoss`` (LOSS_REGISTRY).
"""

from dwsr._compat import ensure_torchvision_functional_tensor

ensure_torchvision_functional_tensor()

from dwsr.archs import DWSRNet, DWSROutput, DWSRRecognitionNet, fuse_ways  # noqa: E402
from dwsr.difficulty import DifficultySettings, difficulty_labels, patch_psnr  # noqa: E402
from dwsr.losses import DWSRMaskBCELoss  # noqa: E402
from dwsr.models import DWSRModel, compute_label_mask  # noqa: E402

__all__ = [
    "DWSRMaskBCELoss",
    "DWSRModel",
    "DWSRNet",
    "DWSROutput",
    "DWSRRecognitionNet",
    "DifficultySettings",
    "compute_label_mask",
    "difficulty_labels",
    "fuse_ways",
    "patch_psnr",
]
