"""Reproduction entry point of ``sem``: plain ResNet, SE and SEM trained with the same seeds."""

from __future__ import annotations

from qcore.reproduce import ReproductionContext, ReproductionResult, ResultRow
from qcore.vision.reproduction import run_attention_reproduction

__all__ = ["REFERENCES", "reproduce"]

_README = "Qrange-group/SEM README (ResNet-164, CIFAR-100, best top-1 over epochs)"
REFERENCES = [
    ResultRow(model="ResNet-164 (published)", role="reference", metrics={"best_acc": 74.30}, notes=_README),
    ResultRow(
        model="ResNet-164 + SEM (published)", role="reference", metrics={"best_acc": 76.76}, notes=_README
    ),
]


def reproduce(context: ReproductionContext) -> ReproductionResult:
    """Train plain, SE and SEM CIFAR ResNets on the preset's data and compare them."""
    import sem  # noqa: F401  (registers "sem")

    return run_attention_reproduction(
        context,
        package="sem",
        variants={"plain": None, "se": "se", "sem": "sem"},
        paper_dataset="cifar100",
        references=REFERENCES,
        notes=(
            "The official code ends with a fixed AvgPool2d(8), and our backbone uses an adaptive average pool, "
            "which is identical at 32×32 inputs."
        ),
    )
