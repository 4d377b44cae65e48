"""Inference cost the SUR-adapter adds to prompt encoding, measured against the text encoder alone.

Usage:
    uv run python packages/sur-adapter/benchmarks/bench_sur_adapter.py [--size sd15] [--batch-size 2]
        [--repeats 10] [--threads 2] [--output runs/bench_sur_adapter]

``--size sd15`` builds randomly initialised modules with Stable Diffusion 1.5's text-encoder shape
(CLIP ViT-L/14 text tower: 12 layers, width 768, 77 tokens) and the adapter at D = 768, so no weights are
downloaded; ``--size tiny`` uses the test-sized modules. Rows: the text encoder alone (baseline), the
adapter alone, and both in sequence, with parameters, FLOPs and the median latency per batch, plus their
ratios to the text encoder. The batch of 2 matches one prompt under classifier-free guidance. The UNet,
which runs once per denoising step and dominates generation time, is not part of the measurement.
"""

from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Sequence

import torch
from transformers import CLIPTextConfig, CLIPTextModel

from qcore.bench import compare, count_flops, count_parameters, median_time
from qcore.report import markdown_table
from qcore.rundir import RunDir
from sur_adapter.adapter import SURAdapter

SIZES = {
    "sd15": {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "vocab_size": 49408,
        "adapter": {"nhead": 8, "dim_feedforward": 2048},
    },
    "tiny": {
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "vocab_size": 1000,
        "adapter": {"nhead": 4, "dim_feedforward": 64},
    },
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="sd15", choices=sorted(SIZES), help="module sizes")
    parser.add_argument("--batch-size", type=int, default=2, help="prompts per timed call")
    parser.add_argument("--repeats", type=int, default=10, help="timed repetitions (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: PyTorch's setting)")
    parser.add_argument("--output", default=None, help="folder for bench_sur_adapter.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    size = dict(SIZES[args.size])
    adapter_options = size.pop("adapter")
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(max_position_embeddings=77, **size)).eval()
    adapter = SURAdapter(size["hidden_size"], **adapter_options).eval()
    ids = torch.randint(0, size["vocab_size"], (args.batch_size, 77))
    embeds = torch.randn(args.batch_size, 77, size["hidden_size"])

    def encode():
        return text_encoder(ids)[0]

    def adapt():
        return adapter(embeds).embeds

    def encode_and_adapt():
        return adapter(text_encoder(ids)[0]).embeds

    rows = []
    with torch.inference_mode():
        for name, fn, modules in (
            ("text encoder", encode, [text_encoder]),
            ("adapter", adapt, [adapter]),
            ("text encoder + adapter", encode_and_adapt, [text_encoder, adapter]),
        ):
            rows.append(
                {
                    "model": name,
                    "params": sum(count_parameters(module) for module in modules),
                    "flops": _count_flops_without_fastpath(fn),
                    "seconds": median_time(fn, repeats=args.repeats),
                }
            )
    rows = compare(rows, baseline="text encoder", metrics=["params", "flops", "seconds"])
    print(
        f"size={args.size} batch={args.batch_size} threads={torch.get_num_threads()} cpu={platform.processor() or platform.machine()}"
    )
    print(
        markdown_table(
            rows, ["model", "params", "params_ratio", "flops", "flops_ratio", "seconds", "seconds_ratio"]
        )
    )
    if args.output:
        RunDir(args.output).write_json("bench_sur_adapter.json", {"args": vars(args), "rows": rows})
        print(json.dumps({"written": f"{args.output}/bench_sur_adapter.json"}))
    return 0


def _count_flops_without_fastpath(fn) -> int:
    # PyTorch's fused inference path for nn.TransformerEncoderLayer is invisible to the FLOP counter, so
    # count on the unfused path; the timings above keep the fused path.
    enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        return count_flops(fn)
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)


if __name__ == "__main__":
    raise SystemExit(main())
