"""Reproduction of LSAS: plain ResNet, SE in every stage and SE + LSAS in the official stages, same seeds.

Besides accuracy, the run measures attention bias with Grad-CAM (see ``lsas.attention_bias``) on test
images whose foreground masks come from the digit strokes. The CIFAR datasets ship no foreground masks or
boxes, so the paper preset reports accuracy only.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from lsas.attention_bias import collect_masked_images, diagnose_attention_bias, plot_attention_overlays
from lsas.models import OFFICIAL_CIFAR_STAGES
from qcore.report import markdown_table
from qcore.reproduce import ReproductionContext, ReproductionResult, ResultRow
from qcore.vision.data import build_datasets
from qcore.vision.reproduction import Variant, run_attention_reproduction
from qcore.vision.train import TrainConfig

__all__ = ["PUBLISHED", "reproduce"]

logger = logging.getLogger(__name__)

# Qrange-group/LSAS README, ResNet-164, best test top-1 over epochs (%), number of runs not stated.
PUBLISHED = {
    "cifar10": {"se": 94.57, "lsas": 95.01},
    "cifar100": {"se": 75.30, "lsas": 76.47},
}

# Grad-CAM layer of the CIFAR ResNet: the output of the last stage.
DIAGNOSTIC_LAYER = "layer3"
DIAGNOSTIC_IMAGES = {"smoke": 16, "default": 128, "paper": 0}
FIGURE_IMAGES = 6


class _BiasDiagnostic:
    """Runs the attention-bias diagnostic on each trained model and keeps the first seed's maps."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.maps: dict[str, torch.Tensor] = {}
        self.images: torch.Tensor | None = None
        self.masks: torch.Tensor | None = None
        self.per_seed: dict[str, list[dict[str, float]]] = {}

    def hook(self, name: str):
        def after_training(model: nn.Module, config: TrainConfig) -> dict[str, float]:
            _, test_set, _ = build_datasets(
                config.dataset, root=config.data_root, image_size=config.image_size, augment=False
            )
            images, masks, labels = collect_masked_images(test_set, count=self.count)
            report = diagnose_attention_bias(model, images, masks, DIAGNOSTIC_LAYER, targets=labels)
            summary = report.summary()
            self.per_seed.setdefault(name, []).append(summary)
            if name not in self.maps:
                self.maps[name] = report.maps[:FIGURE_IMAGES]
                self.images = images[:FIGURE_IMAGES]
                self.masks = masks[:FIGURE_IMAGES]
            return {"outside_share": summary["outside_share"], "mask_coverage": summary["mask_coverage"]}

        return after_training


def _variants(diagnostic: _BiasDiagnostic | None) -> dict[str, Any]:
    def hook(name: str):
        return None if diagnostic is None else diagnostic.hook(name)

    # NOTE: the Grad-CAM maps need the trained models, and after_training makes the plain and SE runs
    # uncacheable. This package therefore trains its own baselines instead of sharing the cached runs.
    return {
        "plain": Variant(attn_layer=None, role="baseline", after_training=hook("plain")),
        "se": Variant(attn_layer="se", role="baseline", after_training=hook("se")),
        "lsas": Variant(attn_layer="lsas", attn_stages=OFFICIAL_CIFAR_STAGES, after_training=hook("lsas")),
    }


def _references(dataset: str) -> list[ResultRow]:
    published = PUBLISHED.get(dataset)
    if published is None:
        return []
    return [
        ResultRow(
            model=f"ResNet-164 + {name.upper()} (published)",
            role="reference",
            metrics={"best_acc": value},
            notes="Qrange-group/LSAS README; SE in all stages, LSAS in stage 3 only",
        )
        for name, value in published.items()
    ]


def _diagnostic_section(context: ReproductionContext, diagnostic: _BiasDiagnostic) -> tuple[str, list]:
    rows = []
    for name, summaries in diagnostic.per_seed.items():
        rows.append(
            {
                "model": name,
                "outside_share (lower is better)": sum(s["outside_share"] for s in summaries)
                / len(summaries),
                "mask_coverage (higher is better)": sum(s["mask_coverage"] for s in summaries)
                / len(summaries),
                "images": summaries[0]["images"],
            }
        )
    figure = plot_attention_overlays(
        diagnostic.images,
        diagnostic.maps,
        diagnostic.masks,
        path=context.run_dir.figure_path("attention_bias.png"),
        max_images=FIGURE_IMAGES,
    )
    text = [
        "#### Attention bias (Grad-CAM on `layer3`, digit strokes as foreground)",
        "",
        "outside_share is the share of Grad-CAM mass outside the stroke mask (position bias); mask_coverage "
        "is the share of stroke pixels where the map reaches half its maximum (range bias). The paper's own "
        "metric is unknown, so these are our definitions. Maps explain the true class of each test image, "
        "with the models' final weights; values are means over images and seeds.",
        "",
        markdown_table(rows),
        "",
        f"![attention bias]({figure.relative_to(context.run_dir.path).as_posix()})",
    ]
    return "\n".join(text), [figure]


def reproduce(context: ReproductionContext) -> ReproductionResult:
    """Train plain, SE and LSAS CIFAR ResNets with the context's preset and seeds and compare them."""
    count = DIAGNOSTIC_IMAGES[context.preset]
    diagnostic = _BiasDiagnostic(count) if count > 0 else None
    paper_dataset = "cifar100"
    result = run_attention_reproduction(
        context,
        package="lsas",
        variants=_variants(diagnostic),
        paper_dataset=paper_dataset,
        references=_references(paper_dataset),
        notes=(
            "LSAS (order 1) sits in the third stage only and SE in all three stages, as in the official "
            "code; the LSAS model therefore has fewer attention modules than the SE baseline."
        ),
    )
    if diagnostic is not None and diagnostic.per_seed:
        section, figures = _diagnostic_section(context, diagnostic)
        result.report_markdown = f"{result.report_markdown}\n\n{section}"
        result.figures.extend(figures)
        context.run_dir.write_report(result.report_markdown)
    return result
