"""Mirror Gradient training for multimodal recommenders on RecBole (arXiv 2402.11262).

``MirrorGradient`` needs only torch. The RecBole parts (``MirrorGradientTrainer``, the models, the data
pipeline) load on first access, and loading them applies the RecBole compatibility fixes of
``mirror_gradient.compat``.
"""

from __future__ import annotations

import importlib
from typing import Any

from mirror_gradient.mirror import MirrorGradient, MirrorStepResult

__all__ = ["MODELS", "MirrorGradient", "MirrorGradientTrainer", "MirrorStepResult"]

_LAZY = {
    "MirrorGradientTrainer": "mirror_gradient.trainer",
    "MODELS": "mirror_gradient.models",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mirror_gradient' has no attribute {name!r}")
