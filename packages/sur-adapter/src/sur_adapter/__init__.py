"""SUR-adapter: a semantic understanding and reasoning adapter for text-to-image diffusion.

Implements "SUR-adapter: Enhancing Text-to-Image Pre-trained Diffusion Models with Large Language
Models" (Zhong, Huang et al., ACM MM 2023, arXiv 2305.05189) on diffusers. The adapter module imports
only torch; the pipeline, trainer and teacher classes are imported on first access because they load
diffusers and transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

from .adapter import SURAdapter, SURAdapterOutput

__all__ = [
    "SURAdapter",
    "SURAdapterOutput",
    "SURStableDiffusionPipeline",
    "SURTrainer",
    "TrainConfig",
    "encode_prompt_with_adapter",
]

_LAZY = {
    "SURStableDiffusionPipeline": "sur_adapter.pipeline",
    "encode_prompt_with_adapter": "sur_adapter.pipeline",
    "SURTrainer": "sur_adapter.trainer",
    "TrainConfig": "sur_adapter.config",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sur_adapter' has no attribute {name!r}")
