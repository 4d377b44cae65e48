"""Test-time perturbation of item features, to measure how much a trained recommender relies on clean content.

Two perturbations model the risks that Mirror Gradient targets (arXiv 2402.11262):

* inherent noise: Gaussian noise with standard deviation ``level * std`` is added to every feature, where
  ``std`` is the per-dimension standard deviation over items;
* information adjustment: a share of items get the features of another, randomly chosen item, as if
  sellers had replaced their images and descriptions.

Both modalities are perturbed together, and the padding row 0 stays zero. Models rebuild their feature
graphs (FREEDOM's frozen item-item graph, LATTICE's raw-feature graphs) from the perturbed features, because
a seller's edit changes them too. This choice is ours, since the paper's protocol is not public.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["DEFAULT_PERTURBATIONS", "Perturbation", "evaluate_under_perturbations", "perturb_features"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Perturbation:
    """A test-time perturbation.

    Attributes:
        kind: ``"gaussian"`` (noise of ``level`` times the per-dimension std) or ``"swap"`` (a share ``level``
            of items take another item's features).
        level: noise scale (gaussian, > 0) or share of items (swap, in (0, 1]).
    """

    kind: str
    level: float

    def __post_init__(self) -> None:
        if self.kind not in ("gaussian", "swap"):
            raise ValueError(f"Perturbation kind must be 'gaussian' or 'swap', got {self.kind!r}.")
        if self.kind == "gaussian" and not self.level > 0:
            raise ValueError(f"Gaussian noise level must be > 0, got {self.level}.")
        if self.kind == "swap" and not 0 < self.level <= 1:
            raise ValueError(f"Swap share must be in (0, 1], got {self.level}.")

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.level:g}"


DEFAULT_PERTURBATIONS = (
    Perturbation("gaussian", 0.1),
    Perturbation("gaussian", 0.5),
    Perturbation("gaussian", 1.0),
    Perturbation("swap", 0.1),
    Perturbation("swap", 0.3),
)


def perturb_features(
    features: dict[str, torch.Tensor], perturbation: Perturbation, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """Return perturbed copies of item features.

    Args:
        features: ``{modality: (n_items, dim)}``; row 0 is RecBole's padding item.
        perturbation: what to apply.
        generator: CPU random generator, so that runs with and without MG see the same perturbation.

    Returns:
        ``{modality: (n_items, dim)}`` on the input device; row 0 is unchanged.
    """
    n_items = next(iter(features.values())).shape[0]
    if perturbation.kind == "swap":
        count = max(1, round(perturbation.level * (n_items - 1)))
        chosen = torch.randperm(n_items - 1, generator=generator)[:count] + 1
        # A random other item: shift by 1 .. n_items - 2 within the items 1 .. n_items - 1.
        offsets = torch.randint(1, max(n_items - 1, 2), (count,), generator=generator)
        donors = (chosen - 1 + offsets) % (n_items - 1) + 1
    perturbed = {}
    for name, feature in features.items():
        values = feature.clone()
        if perturbation.kind == "gaussian":
            std = feature[1:].std(dim=0, keepdim=True)
            noise = torch.randn(feature[1:].shape, generator=generator).to(feature.device)
            values[1:] = feature[1:] + perturbation.level * std * noise
        else:
            values[chosen.to(feature.device)] = feature[donors.to(feature.device)]
        perturbed[name] = values
    return perturbed


def evaluate_under_perturbations(
    trainer: Any,
    test_data: Any,
    perturbations: tuple[Perturbation, ...] = DEFAULT_PERTURBATIONS,
    *,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Evaluate a trained model on clean and perturbed features.

    Args:
        trainer: a RecBole trainer whose model is a :class:`~mirror_gradient.models.MultimodalRecommender`
            with the weights to evaluate already loaded.
        test_data: the test data loader.
        perturbations: perturbations to apply, one at a time.
        seed: seed of the perturbation generator.

    Returns:
        ``{"clean": metrics, perturbation.name: metrics, ...}``; the model's clean features are restored.
    """
    model = trainer.model
    clean = {name: feature.clone() for name, feature in model.modality_features().items()}
    results = {"clean": _evaluate(trainer, test_data)}
    try:
        for perturbation in perturbations:
            generator = torch.Generator().manual_seed(seed)
            perturbed = perturb_features(clean, perturbation, generator)
            model.set_item_features(image=perturbed.get("image"), text=perturbed.get("text"))
            results[perturbation.name] = _evaluate(trainer, test_data)
    finally:
        model.set_item_features(image=clean.get("image"), text=clean.get("text"))
    return results


def _evaluate(trainer: Any, test_data: Any) -> dict[str, float]:
    result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    return {key: float(value) for key, value in result.items()}


def relative_drop(clean: float, perturbed: float) -> float:
    """Return ``(clean - perturbed) / clean``, the share of the clean metric lost; 0 when clean is 0."""
    return 0.0 if clean == 0 else (clean - perturbed) / clean
