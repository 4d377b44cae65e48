"""Inference cost of ASR after folding, against the plain and SE CIFAR ResNets, measured in one process."""

from __future__ import annotations

import logging
import statistics
from typing import Any

import torch

from asr.reparameterize import reparameterize
from qcore.bench import count_flops, count_parameters, median_time
from qcore.seeding import seed_everything
from qcore.vision.resnet import create_cifar_resnet

__all__ = ["VARIANTS", "benchmark_folding"]

logger = logging.getLogger(__name__)

# Row name -> (attention spec of the CIFAR ResNet, whether the ASR scales are folded before timing).
VARIANTS: dict[str, tuple[Any, bool]] = {
    "plain": (None, False),
    "se": ("se", False),
    "asr_unfolded": ("asr", False),
    "asr_folded": ("asr", True),
    "asr_se_unfolded": ("asr_se", False),
    "asr_se_folded": ("asr_se", True),
}

METRICS = ("params", "flops", "latency_ms")


def benchmark_folding(
    *,
    model: str = "cifar_resnet164",
    num_classes: int = 100,
    input_size: int = 32,
    batch_size: int = 1,
    warmup: int = 3,
    repeats: int = 20,
    threads: int | None = None,
    variants: dict[str, tuple[Any, bool]] | None = None,
) -> list[dict[str, Any]]:
    """Measure eval-mode CPU latency, parameters and FLOPs of each variant, with ratios to plain and SE.

    Args:
        model: CIFAR ResNet name (``qcore.vision.resnet.create_cifar_resnet``).
        num_classes: classifier outputs.
        input_size: side of the square input, in pixels.
        batch_size: images per timed forward pass.
        warmup: untimed passes before timing.
        repeats: timed passes per variant. The median is reported.
        threads: ``torch.set_num_threads`` for the measurement (None keeps the current setting).
        variants: rows to measure, defaults to `VARIANTS`. Must contain ``"plain"`` and ``"se"``.

    Returns:
        One dict per variant with ``variant``, ``params``, ``flops`` (per image), ``latency_ms`` (median
        per batch) and ``<metric>_vs_plain`` / ``<metric>_vs_se`` ratios.
    """
    variants = dict(VARIANTS if variants is None else variants)
    missing = {"plain", "se"} - set(variants)
    if missing:
        raise ValueError(f"variants must include the baselines {sorted(missing)} that the ratios refer to")
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        images = torch.randn(
            batch_size, 3, input_size, input_size, generator=torch.Generator().manual_seed(0)
        )
        networks = {}
        rows = []
        for name, (attention, folded) in variants.items():
            seed_everything(0)
            network = create_cifar_resnet(model, num_classes=num_classes, attn_layer=attention).eval()
            if folded:
                reparameterize(network)
            networks[name] = network
            rows.append(
                {
                    "variant": name,
                    "params": count_parameters(network),
                    "flops": count_flops(network, images[:1]),
                }
            )

        # Round-robin timing: every round times each variant once, so a change in machine load during the
        # run affects all variants alike instead of whichever ran at that moment.
        timings: dict[str, list[float]] = {name: [] for name in networks}
        with torch.no_grad():
            for network in networks.values():
                for _ in range(warmup):
                    network(images)
            for _ in range(repeats):
                for name, network in networks.items():
                    timings[name].append(median_time(lambda net=network: net(images), warmup=0, repeats=1))
        for row in rows:
            row["latency_ms"] = 1e3 * statistics.median(timings[row["variant"]])
            logger.info("benchmarked %s: %s", row["variant"], row)
    finally:
        torch.set_num_threads(previous_threads)

    for baseline in ("plain", "se"):
        reference = next(row for row in rows if row["variant"] == baseline)
        for row in rows:
            for metric in METRICS:
                row[f"{metric}_vs_{baseline}"] = (
                    row[metric] / reference[metric] if reference[metric] else float("nan")
                )
    return rows
