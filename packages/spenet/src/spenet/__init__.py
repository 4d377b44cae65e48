"""SPEM: Self-adaptive Pooling Enhanced Attention Module for image recognition (arXiv 2208.10322).

Importing the package registers the module as ``"spem"`` in :data:`qcore.vision.attention.ATTENTION`.
"""

from spenet.spem import SPEM, global_min_pool

__all__ = ["SPEM", "global_min_pool"]
