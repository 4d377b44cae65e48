"""Reproduction of RAS: plain ResNet, SE and RAS in every stage, trained with the same seeds.

The RAS row also records the shared scale w after training (max |w|, mean |w| and the share of entries
still exactly zero), which shows whether the official initialisation w = 0 left w stuck near zero.
"""

from __future__ import annotations

import logging

from torch import nn

from qcore.reproduce import ReproductionContext, ReproductionResult, ResultRow
from qcore.vision.reproduction import Variant, run_attention_reproduction
from qcore.vision.train import TrainConfig
from ras.diagnostics import shared_scale_summary

__all__ = ["PUBLISHED", "reproduce"]

logger = logging.getLogger(__name__)

# Qrange-group/RAS README, ResNet-164, mean ± std over an unstated number of runs (%).
PUBLISHED = {
    "cifar10": {"ResNet-164": (93.45, 0.20), "ResNet-164 + RAS": (94.84, 0.14)},
    "cifar100": {"ResNet-164": (74.40, 0.34), "ResNet-164 + RAS": (76.74, 0.24)},
}


def _record_shared_scale(model: nn.Module, config: TrainConfig) -> dict[str, float]:
    return shared_scale_summary(model)


def _references(dataset: str) -> list[ResultRow]:
    return [
        ResultRow(
            model=f"{name} (published)",
            role="reference",
            metrics={"best_acc": mean, "best_acc_std": std},
            notes="Qrange-group/RAS README",
        )
        for name, (mean, std) in PUBLISHED.get(dataset, {}).items()
    ]


def reproduce(context: ReproductionContext) -> ReproductionResult:
    """Train plain, SE and RAS CIFAR ResNets with the context's preset and seeds and compare them."""
    paper_dataset = "cifar100"
    return run_attention_reproduction(
        context,
        package="ras",
        variants={
            "plain": None,
            "se": "se",
            "ras": Variant(attn_layer="ras", after_training=_record_shared_scale),
        },
        paper_dataset=paper_dataset,
        references=_references(paper_dataset),
        notes=(
            "RAS uses the official initialisation w = 0, b = −1 and two recurrence steps. w_abs_max, "
            "w_abs_mean and w_zero_share describe the shared scale w of all RAS modules after training; at "
            "initialisation its gradient is exactly zero (see the package README)."
        ),
    )
