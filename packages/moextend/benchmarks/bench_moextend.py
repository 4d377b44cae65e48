"""Benchmark the extended MoE block against the original block and full fine-tuning.

Usage: ``uv run python packages/moextend/benchmarks/bench_moextend.py [--device cpu] [--hidden-size 128]``.
Prints a markdown table of median times, peak memory and ratios, measured in this process.
"""

from __future__ import annotations

import argparse

import torch

from moextend.benchmark import BenchmarkSize, format_results, run_benchmark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="device")
    parser.add_argument("--hidden-size", type=int, default=128, help="LLM hidden size")
    parser.add_argument("--intermediate-size", type=int, default=256, help="expert intermediate size")
    parser.add_argument("--layers", type=int, default=4, help="decoder layers; every second one is extended")
    parser.add_argument("--experts", type=int, default=8, help="pretrained experts per layer")
    parser.add_argument("--batch-size", type=int, default=4, help="sequences per step")
    parser.add_argument("--sequence-length", type=int, default=64, help="tokens per sequence")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="CPU intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    size = BenchmarkSize(
        hidden_size=args.hidden_size,
        intermediate_size=args.intermediate_size,
        num_hidden_layers=args.layers,
        num_experts=args.experts,
        batch_size=args.batch_size,
        sequence_length=args.sequence_length,
    )
    print(f"device: {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(format_results(run_benchmark(device=args.device, size=size, repeats=args.repeats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
