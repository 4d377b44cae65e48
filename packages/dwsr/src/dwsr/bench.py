"""Size and CPU speed of DWSR against an EDSR-baseline network and the matched single-way baseline.

All three networks run in one process on the same input. Latency is the median wall-clock time of one
forward pass without gradients, divided by the output size in megapixels. Ratios are relative to the
EDSR baseline (64 features, 16 residual blocks, as in BasicSR's EDSR options).
"""

from __future__ import annotations

import logging

import torch
from basicsr.archs.edsr_arch import EDSR

from dwsr.archs import DWSRNet
from dwsr.baseline import matched_single_way_options
from dwsr.recipes import dwsr_network_options
from qcore.bench import compare, count_flops, count_parameters, median_time

__all__ = ["BENCH_METRICS", "run_benchmark"]

logger = logging.getLogger(__name__)

BENCH_METRICS = ("params", "gflops", "seconds_per_megapixel")
EDSR_BASELINE = "EDSR baseline (64x16)"


def run_benchmark(
    *, scale: int = 4, lr_size: int = 64, warmup: int = 1, repeats: int = 5, network: dict | None = None
) -> list[dict]:
    """Measure parameters, GFLOPs and CPU seconds per output megapixel of the three networks.

    Args:
        scale: SR scale of all networks.
        lr_size: Side of the square low-resolution input in pixels.
        warmup: Untimed forward passes before timing.
        repeats: Timed forward passes; the median is reported.
        network: Overrides of the DWSR ``network_g`` options (default: EDSR-baseline-size ways).

    Returns:
        One dict per network with ``model``, the metrics and ``<metric>_ratio`` columns.
    """
    dwsr_options = dwsr_network_options(scale, **(network or {}))
    single_way = {
        key: value for key, value in matched_single_way_options(dwsr_options).items() if key != "type"
    }
    networks = {
        EDSR_BASELINE: EDSR(3, 3, num_feat=64, num_block=16, upscale=scale),
        "DWSR": DWSRNet(**{key: value for key, value in dwsr_options.items() if key != "type"}),
        f"single way (EDSR {single_way['num_feat']}x{single_way['num_block']})": EDSR(**single_way),
    }
    inputs = torch.rand(1, 3, lr_size, lr_size)
    megapixels = (lr_size * scale) ** 2 / 1e6
    rows = []
    for name, module in networks.items():
        module.eval()
        with torch.no_grad():
            seconds = median_time(lambda module=module: module(inputs), warmup=warmup, repeats=repeats)
            flops = count_flops(module, inputs)
        rows.append(
            {
                "model": name,
                "params": count_parameters(module),
                "gflops": flops / 1e9,
                "seconds_per_megapixel": seconds / megapixels,
            }
        )
        logger.info("%s: %.4f s per forward pass", name, seconds)
    return compare(rows, baseline=EDSR_BASELINE, metrics=BENCH_METRICS)
