"""Evaluate an ASR network before and after folding, as done at the end of every reproduction run."""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from asr.reparameterize import reparameterize
from qcore.bench import count_parameters
from qcore.vision.data import build_datasets
from qcore.vision.train import TrainConfig, evaluate_classifier

__all__ = ["evaluate_before_and_after_folding"]

logger = logging.getLogger(__name__)


def evaluate_before_and_after_folding(model: nn.Module, config: TrainConfig) -> dict[str, float]:
    """Return test accuracy of ``model`` and of a folded copy, the folded parameter count and the logit gap.

    The model itself is left unchanged. Metrics: ``unfolded_acc`` and ``folded_acc`` (percent),
    ``folded_params`` and ``max_logit_difference`` (largest absolute logit difference on the first test
    batch, a check that folding kept the function).
    """
    _, test_set, _ = build_datasets(
        config.dataset, root=config.data_root, image_size=config.image_size, augment=False
    )
    loader = DataLoader(test_set, batch_size=config.test_batch_size)
    model = model.cpu().eval()
    folded = reparameterize(copy.deepcopy(model)).eval()

    before = evaluate_classifier(model, loader)
    after = evaluate_classifier(folded, loader)
    images, _ = next(iter(loader))
    with torch.no_grad():
        gap = (model(images) - folded(images)).abs().max().item()
    metrics: dict[str, Any] = {
        "unfolded_acc": float(before["accuracy"]),
        "folded_acc": float(after["accuracy"]),
        "folded_params": float(count_parameters(folded)),
        "max_logit_difference": float(gap),
    }
    logger.info("accuracy before folding %.2f, after %.2f", metrics["unfolded_acc"], metrics["folded_acc"])
    return metrics
