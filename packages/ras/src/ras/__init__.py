"""RAS: Recurrent Attention Strategy for channel attention in CNNs.

Reproduces "RAS: Deepening Neural Networks Implicitly and Locally via Recurrent Attention Strategy" (Zhong,
Wen, Qin, Huang; arXiv 2210.15676). Importing the package registers the attention name ``ras`` in
``qcore.vision.attention.ATTENTION``.
"""

from ras.models import attach_ras_torchvision, create_ras_resnet
from ras.module import RAS, RAS_BIAS_INIT, RAS_WEIGHT_INIT

__all__ = ["RAS", "RAS_BIAS_INIT", "RAS_WEIGHT_INIT", "attach_ras_torchvision", "create_ras_resnet"]
