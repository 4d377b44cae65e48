"""CPU inference cost of ASR after folding against plain ResNet and SE-ResNet, measured in one process.

Usage:
    uv run python packages/asr/benchmarks/bench_asr.py [--model cifar_resnet164] [--batch-size 1]
        [--repeats 20] [--threads 2] [--output runs/bench_asr]

Prints a table with parameters, FLOPs per image and the median eval-mode latency per batch of every variant,
with ratios to plain and SE. ``asr_folded`` and ``asr_se_folded`` are the networks after
``asr.reparameterize``. Ratios from one run on a shared machine vary by a few percent.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Sequence

import torch

import asr  # noqa: F401  (registers "asr" and "asr_se")
from asr.benchmark import benchmark_folding
from qcore.report import markdown_table
from qcore.rundir import RunDir


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cifar_resnet164", help="CIFAR ResNet name")
    parser.add_argument("--num-classes", type=int, default=100, help="classifier outputs")
    parser.add_argument("--batch-size", type=int, default=1, help="images per timed forward pass")
    parser.add_argument("--repeats", type=int, default=20, help="timed repetitions (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: PyTorch's setting)")
    parser.add_argument("--output", default=None, help="folder for bench_asr.json")
    args = parser.parse_args(argv)

    rows = benchmark_folding(
        model=args.model,
        num_classes=args.num_classes,
        batch_size=args.batch_size,
        repeats=args.repeats,
        threads=args.threads,
    )
    hardware = {
        "processor": platform.processor() or platform.machine(),
        "threads": args.threads or torch.get_num_threads(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
    }
    columns = ["variant", "params", "flops", "latency_ms", "latency_ms_vs_plain", "latency_ms_vs_se"]
    print(markdown_table(rows, columns))
    print(json.dumps(hardware))
    if args.output:
        RunDir(args.output).write_json(
            "bench_asr.json", {"rows": rows, "hardware": hardware, "args": vars(args)}
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
