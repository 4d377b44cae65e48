"""Benchmark DWSR against an EDSR-baseline network and the matched single-way baseline, in one process.

Prints parameters, GFLOPs and CPU seconds per output megapixel of each network, with ratios to the
EDSR baseline (64 features, 16 residual blocks).

Run: uv run python packages/dwsr/benchmarks/bench_dwsr.py --scale 4 --lr-size 64 --threads 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=4, help="SR scale (default: 4)")
    parser.add_argument(
        "--lr-size", type=int, default=64, help="side of the LR input in pixels (default: 64)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed forward passes (default: 5)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--output", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    import dwsr  # noqa: F401  (makes BasicSR importable before dwsr.bench imports it)
    from dwsr.bench import run_benchmark
    from qcore.report import markdown_table

    rows = run_benchmark(scale=args.scale, lr_size=args.lr_size, repeats=args.repeats)
    print(f"x{args.scale}, {args.lr_size}x{args.lr_size} LR input, {torch.get_num_threads()} CPU threads")
    print(markdown_table(rows))
    if args.output is not None:
        args.output.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
