"""Cost of RAS on a CIFAR ResNet against the plain network and SE, as ratios measured in one process.

Rows: plain ResNet, SE in every stage and RAS in every stage (the official placement). Columns:
parameters, FLOPs per image (torch's flop counter: convolutions and matrix products only, so RAS's
element-wise work does not appear), median forward and training-step latency per batch, and each metric's
ratio to plain and to SE.

    uv run python packages/ras/benchmarks/bench_ras.py --model cifar_resnet164 --batch-size 8
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import ras  # noqa: F401  (registers the attention name)
from qcore.report import markdown_table
from qcore.vision.benchmark import benchmark_attention_variants
from qcore.vision.resnet import CIFAR_RESNETS


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cifar_resnet164", choices=CIFAR_RESNETS.names(), help="backbone")
    parser.add_argument("--num-classes", type=int, default=100, help="classifier outputs")
    parser.add_argument("--input-size", type=int, default=32, help="input side in pixels")
    parser.add_argument("--batch-size", type=int, default=8, help="batch of the latency measurements")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions (the median is reported)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="device to measure on")
    parser.add_argument("--output", default=None, help="JSON file for the rows")
    args = parser.parse_args(argv)

    rows = benchmark_attention_variants(
        {"ras": "ras"},
        model=args.model,
        num_classes=args.num_classes,
        input_size=args.input_size,
        batch_size=args.batch_size,
        device=args.device,
        repeats=args.repeats,
    )
    columns = ["variant", "params", "flops", "forward_ms", "train_step_ms"]
    columns += [
        f"{metric}_vs_{base}"
        for base in ("plain", "se")
        for metric in ("params", "flops", "forward_ms", "train_step_ms")
    ]
    print(f"{args.model}, batch {args.batch_size}, {args.input_size}x{args.input_size}, {args.device}")
    print(markdown_table(rows, columns, floatfmt=".4g"))
    if args.output:
        Path(args.output).write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
