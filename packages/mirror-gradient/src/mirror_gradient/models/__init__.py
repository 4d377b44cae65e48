"""Multimodal recommenders as RecBole ``GeneralRecommender`` classes, each with a YAML of defaults beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mirror_gradient.models.base import MultimodalRecommender
from mirror_gradient.models.bm3 import BM3
from mirror_gradient.models.freedom import FREEDOM
from mirror_gradient.models.lattice import LATTICE
from mirror_gradient.models.vbpr import VBPR
from qcore.registry import Registry

__all__ = ["BM3", "FREEDOM", "LATTICE", "MODELS", "VBPR", "MultimodalRecommender", "model_defaults"]

MODELS = Registry("multimodal recommender")
for _model in (VBPR, BM3, FREEDOM, LATTICE):
    MODELS.add(_model.__name__, _model)

_HERE = Path(__file__).parent


def model_defaults(name: str) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Return a model's default configuration and its search space (the authors' grid) from its YAML."""
    MODELS.get(name)
    values = yaml.safe_load((_HERE / f"{name.lower()}.yaml").read_text())
    search_space = values.pop("search_space", {}) or {}
    return values, search_space
