"""SEM: Switchable Self-attention Module (arXiv 2209.05680) for CIFAR ResNets and timm models.

Importing the package registers ``"sem"`` in ``qcore.vision.attention.ATTENTION``.
"""

from sem.module import IE_BIAS_INIT, IE_WEIGHT_INIT, OPERATORS, SEM, eca_kernel_size

__all__ = ["IE_BIAS_INIT", "IE_WEIGHT_INIT", "OPERATORS", "SEM", "eca_kernel_size"]
