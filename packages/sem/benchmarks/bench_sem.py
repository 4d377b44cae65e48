"""Cost of SEM against plain ResNet and SE-ResNet: parameters, FLOPs and CPU latency, measured in one process.

Usage:
    uv run python packages/sem/benchmarks/bench_sem.py [--model cifar_resnet164] [--batch-size 8]
        [--repeats 5] [--threads 1] [--output runs/bench_sem]

Prints one row per variant (plain, se, sem and sem with each operator switched off) with ratios to plain
and SE. Ratios from one run on a shared machine vary by a few percent.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import sys
from collections.abc import Sequence

import torch

from qcore.report import markdown_table
from qcore.rundir import RunDir
from qcore.vision.benchmark import benchmark_attention_variants
from sem import SEM


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cifar_resnet164", help="CIFAR ResNet name")
    parser.add_argument("--num-classes", type=int, default=100, help="classifier outputs")
    parser.add_argument("--batch-size", type=int, default=8, help="images per timed pass")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: PyTorch's setting)")
    parser.add_argument("--no-train-step", action="store_true", help="time the forward pass only")
    parser.add_argument("--output", default=None, help="folder for bench_sem.json")
    args = parser.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    variants = {
        "sem": "sem",
        "sem_without_se": functools.partial(SEM, use_se=False),
        "sem_without_eca": functools.partial(SEM, use_eca=False),
        "sem_without_ie": functools.partial(SEM, use_ie=False),
    }
    rows = benchmark_attention_variants(
        variants,
        model=args.model,
        num_classes=args.num_classes,
        batch_size=args.batch_size,
        repeats=args.repeats,
        train_step=not args.no_train_step,
    )
    hardware = {
        "processor": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
    }
    columns = ["variant", "params", "flops", "forward_ms", "params_vs_plain", "params_vs_se"]
    columns += ["forward_ms_vs_plain", "forward_ms_vs_se"]
    if not args.no_train_step:
        columns += ["train_step_ms", "train_step_ms_vs_plain", "train_step_ms_vs_se"]
    print(markdown_table(rows, columns))
    print(json.dumps(hardware))
    if args.output:
        RunDir(args.output).write_json(
            "bench_sem.json", {"rows": rows, "hardware": hardware, "args": vars(args)}
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
