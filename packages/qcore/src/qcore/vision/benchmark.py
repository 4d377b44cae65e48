"""Cost of attention variants on a CIFAR ResNet: parameters, FLOPs and latency, as ratios to the baselines."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from qcore.bench import count_flops, count_parameters, median_time
from qcore.seeding import seed_everything
from qcore.vision.reproduction import build_variant_model

__all__ = ["benchmark_attention_variants"]

logger = logging.getLogger(__name__)

METRICS = ("params", "flops", "forward_ms", "train_step_ms")


def _measure(
    network: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    warmup: int,
    repeats: int,
    train_step: bool,
) -> dict[str, Any]:
    network.eval()
    row: dict[str, Any] = {"params": count_parameters(network), "flops": count_flops(network, images[:1])}
    with torch.no_grad():
        row["forward_ms"] = 1e3 * median_time(lambda: network(images), warmup=warmup, repeats=repeats)
    if train_step:
        network.train()

        def step() -> None:
            network.zero_grad(set_to_none=True)
            F.cross_entropy(network(images), labels).backward()

        row["train_step_ms"] = 1e3 * median_time(step, warmup=warmup, repeats=repeats)
    return row


def benchmark_attention_variants(
    variants: Mapping[str, Any],
    *,
    model: str = "cifar_resnet164",
    num_classes: int = 100,
    input_size: int = 32,
    batch_size: int = 8,
    device: str = "cpu",
    warmup: int = 2,
    repeats: int = 5,
    train_step: bool = True,
) -> list[dict[str, Any]]:
    """Measure every variant in this process and return one row per variant.

    ``"plain"`` (no attention) and ``"se"`` are added when ``variants`` lacks them, because every row is
    compared with both.

    Args:
        variants: Row name -> attention spec or :class:`qcore.vision.reproduction.Variant`.
        model: Name from :data:`qcore.vision.resnet.CIFAR_RESNETS`.
        input_size: Side of the square input, in pixels.
        batch_size: Batch of the latency measurements.
        device: ``"cpu"`` or ``"cuda"``.
        train_step: Also time a forward and backward pass.

    Returns:
        Rows with ``variant``, ``params``, ``flops`` (per image, torch's flop counter: convolutions and
        matrix products only), ``forward_ms`` and ``train_step_ms`` (median per batch), and for each metric
        ``<metric>_vs_plain`` and ``<metric>_vs_se`` ratios.
    """
    all_variants: dict[str, Any] = {"plain": None, "se": "se"}
    all_variants.update(variants)
    rows = []
    for name, spec in all_variants.items():
        seed_everything(0)
        network = build_variant_model(spec, model, num_classes=num_classes).to(device)
        images = torch.randn(batch_size, 3, input_size, input_size, device=device)
        labels = torch.randint(0, num_classes, (batch_size,), device=device)
        row: dict[str, Any] = {
            "variant": name,
            **_measure(network, images, labels, warmup, repeats, train_step),
        }
        logger.info("benchmarked %s: %s", name, row)
        rows.append(row)

    for baseline in ("plain", "se"):
        reference = next(r for r in rows if r["variant"] == baseline)
        for row in rows:
            for metric in METRICS:
                if metric in row and reference.get(metric):
                    row[f"{metric}_vs_{baseline}"] = row[metric] / reference[metric]
    return rows
