"""Cost of attention variants on a CIFAR ResNet: parameters, FLOPs and latency, as ratios to the baselines."""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from qcore.bench import count_flops, count_parameters, median_time
from qcore.seeding import seed_everything
from qcore.vision.reproduction import build_variant_model

__all__ = ["benchmark_attention_variants"]

logger = logging.getLogger(__name__)

METRICS = ("params", "flops", "forward_ms", "train_step_ms")


def _forward_fn(network: torch.nn.Module, images: torch.Tensor) -> Callable[[], None]:
    def forward() -> None:
        network.eval()
        with torch.no_grad():
            network(images)

    return forward


def _train_step_fn(
    network: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor
) -> Callable[[], None]:
    def step() -> None:
        network.train()
        network.zero_grad(set_to_none=True)
        F.cross_entropy(network(images), labels).backward()

    return step


def _interleaved_median_ms(
    functions: Mapping[str, Callable[[], None]], warmup: int, repeats: int
) -> dict[str, float]:
    """Return each function's median time in ms, timing the functions in turns.

    Timing in turns (one call of each function per round) spreads slow phases of a shared machine over all
    variants instead of penalising whichever variant ran during them.
    """
    for function in functions.values():
        for _ in range(warmup):
            function()
    samples: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            samples[name].append(median_time(function, warmup=0, repeats=1))
    return {name: 1e3 * statistics.median(values) for name, values in samples.items()}


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
    compared with both. Latencies are medians over ``repeats`` rounds, and each round times every variant
    once.

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
    torch.manual_seed(0)
    images = torch.randn(batch_size, 3, input_size, input_size, device=device)
    labels = torch.randint(0, num_classes, (batch_size,), device=device)

    rows: dict[str, dict[str, Any]] = {}
    networks = {}
    for name, spec in all_variants.items():
        seed_everything(0)
        network = build_variant_model(spec, model, num_classes=num_classes).to(device).eval()
        networks[name] = network
        rows[name] = {
            "variant": name,
            "params": count_parameters(network),
            "flops": count_flops(network, images[:1]),
        }

    forward_ms = _interleaved_median_ms(
        {name: _forward_fn(net, images) for name, net in networks.items()}, warmup, repeats
    )
    for name, value in forward_ms.items():
        rows[name]["forward_ms"] = value
    if train_step:
        step_ms = _interleaved_median_ms(
            {name: _train_step_fn(net, images, labels) for name, net in networks.items()}, warmup, repeats
        )
        for name, value in step_ms.items():
            rows[name]["train_step_ms"] = value
    logger.info("benchmarked %s", list(rows))

    for baseline in ("plain", "se"):
        reference = rows[baseline]
        for row in rows.values():
            for metric in METRICS:
                if metric in row and reference.get(metric):
                    row[f"{metric}_vs_{baseline}"] = row[metric] / reference[metric]
    return list(rows.values())
