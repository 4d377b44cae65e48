"""Seeding and determinism switches for Python, NumPy and PyTorch."""

from __future__ import annotations

import logging
import os
import random

import numpy as np
import torch

__all__ = ["seed_everything"]

logger = logging.getLogger(__name__)


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed Python's, NumPy's and PyTorch's generators (all devices).

    Args:
        seed: Non-negative integer seed.
        deterministic: Also ask PyTorch for deterministic kernels (slower; ops without a deterministic
            implementation then warn instead of raising).
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    logger.debug("seeded with %d (deterministic=%s)", seed, deterministic)
