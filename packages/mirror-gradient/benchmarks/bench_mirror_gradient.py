"""Benchmark Mirror Gradient's training overhead and evaluation throughput against plain training.

Usage: ``uv run python packages/mirror-gradient/benchmarks/bench_mirror_gradient.py [--model VBPR]
[--beta 3] [--epochs 3] [--synthetic]``. Both variants run in this process on the same data; the output is
ratios (MG / plain). The ideal epoch-time ratio is ``1 + 1/beta``, because a mirror pair adds one forward
pass, one backward pass and one optimiser step every ``beta`` batches.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from mirror_gradient.bench import benchmark_overhead
from mirror_gradient.embedded import EMBEDDED_DATASET, build_ml100k_multimodal
from mirror_gradient.pipeline import prepare_mmrec_dataset
from mirror_gradient.synthetic import write_synthetic_mmrec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="VBPR", help="model to time (default VBPR)")
    parser.add_argument("--beta", type=int, default=3, help="mirror interval in batches (default 3)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per variant (default 3)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument(
        "--synthetic", action="store_true", help="use the tiny synthetic dataset, not ml-100k"
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        if args.synthetic:
            data = prepare_mmrec_dataset(write_synthetic_mmrec(work / "mmrec"), "synthetic", work)
            batch_size = 16
        else:
            data = prepare_mmrec_dataset(build_ml100k_multimodal(), EMBEDDED_DATASET, work)
            batch_size = None
        results = benchmark_overhead(
            data,
            model=args.model,
            beta=args.beta,
            epochs=args.epochs,
            train_batch_size=batch_size,
            device=args.device,
            work_dir=work / "bench",
        )
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
