"""Reproduction of SPEM against the plain CIFAR ResNet and SE, for ``qcore-reproduce``."""

from __future__ import annotations

import spenet  # noqa: F401  (registers "spem" in the attention registry)
from qcore.reproduce import ReproductionContext, ReproductionResult, ResultRow
from qcore.vision.reproduction import run_attention_reproduction

__all__ = ["PUBLISHED", "reproduce"]

# Qrange-group/SPEM README, ResNet-164, best test top-1 over epochs (%). The number of seeds is not stated.
PUBLISHED = {
    "cifar10": {"ResNet-164": 93.39, "ResNet-164 + SPEM": 94.80},
    "cifar100": {"ResNet-164": 74.30, "ResNet-164 + SPEM": 76.31},
}

PAPER_DATASET = "cifar100"


def reproduce(context: ReproductionContext) -> ReproductionResult:
    """Train plain, SE and SPEM CIFAR ResNets with the same seeds and recipe and compare them.

    The smoke and default presets use scikit-learn's digits; the paper preset trains ResNet-164 on
    CIFAR-100 with the recipe of the Qrange-group/SPEM README commands (α = 0.1 for SPEM's penalty) and
    lists the published numbers.
    """
    references = []
    if context.preset == "paper":
        references = [
            ResultRow(
                model=f"{name} (published)",
                role="reference",
                metrics={"best_acc": value},
                notes="Qrange-group/SPEM README, best test top-1 over epochs",
            )
            for name, value in PUBLISHED[PAPER_DATASET].items()
        ]
    return run_attention_reproduction(
        context,
        package="spenet",
        variants={"plain": None, "se": "se", "spem": "spem"},
        paper_dataset=PAPER_DATASET,
        references=references,
        notes=(
            "SPEM's loss adds 0.1 × Σ‖p‖² over all blocks (official α), and plain and SE have no auxiliary "
            "loss. At the official initialisation every SPEM gate equals σ(−2)·σ(−1) ≈ 0.032, so each "
            "residual branch starts scaled to about 3 % of its value."
        ),
    )
