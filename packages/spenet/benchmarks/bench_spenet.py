"""Cost of SPEM against the plain CIFAR ResNet and SE: parameters, FLOPs, latency, as ratios.

Usage::

    uv run python packages/spenet/benchmarks/bench_spenet.py [--model cifar_resnet164] [--batch-size 8]

All variants run in this process on the same inputs. FLOPs come from torch's flop counter, which counts
convolutions and matrix products only. SPEM's pooling and element-wise work (an estimated +6.2 M MACs
per 32×32 image on ResNet-164) therefore does not show in the FLOP ratio, but the latency ratios include it.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Sequence

import torch

import spenet  # noqa: F401  (registers "spem")
from qcore.report import markdown_table
from qcore.vision.benchmark import benchmark_attention_variants
from qcore.vision.resnet import CIFAR_RESNETS

COLUMNS = [
    "variant",
    "params",
    "flops",
    "forward_ms",
    "train_step_ms",
    "params_vs_plain",
    "forward_ms_vs_plain",
    "train_step_ms_vs_plain",
    "params_vs_se",
    "forward_ms_vs_se",
    "train_step_ms_vs_se",
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cifar_resnet164", choices=CIFAR_RESNETS.names(), help="backbone")
    parser.add_argument("--num-classes", type=int, default=100, help="classifier outputs")
    parser.add_argument("--batch-size", type=int, default=8, help="batch of the latency measurements")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions (median reported)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="device to measure on")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)

    rows = benchmark_attention_variants(
        {"spem": "spem"},
        model=args.model,
        num_classes=args.num_classes,
        batch_size=args.batch_size,
        device=args.device,
        repeats=args.repeats,
    )
    print(
        f"{args.model}, batch {args.batch_size}, 32×32, {args.device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    print(markdown_table(rows, COLUMNS))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as stream:
            json.dump(rows, stream, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
