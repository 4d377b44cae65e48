"""Step time and memory of the extended MoE block against the original block and full fine-tuning.

Measured in one process on one randomly initialised Mixtral-style model:

- forward time of one MoE layer, original vs extended (one new expert);
- one training step (forward, backward, AdamW update) of the whole LLM with MoExtend's trainable set
  (new experts, router rows and calibration in half of the layers) vs full fine-tuning of every weight.

Memory on CUDA is the peak allocation of one call. On the CPU the resident-set growth misses memory the
allocator keeps cached from the warm-up calls, so no peak is reported there. The bytes of gradients and
AdamW state follow from the trainable-parameter count and are reported exactly, as are the bytes autograd
saves for backward.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch

from moextend.extend import ExtensionPlan, extend_model, extended_blocks
from moextend.tiny import tiny_moe_model
from qcore.bench import compare, median_time, peak_memory
from qcore.report import markdown_table

__all__ = ["BenchmarkSize", "format_results", "run_benchmark"]


@dataclasses.dataclass(frozen=True)
class BenchmarkSize:
    """Model and batch shape of the benchmark."""

    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 4
    num_experts: int = 8
    batch_size: int = 4
    sequence_length: int = 64
    vocab_size: int = 1000


def _train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, ids: torch.Tensor) -> None:
    loss = model(input_ids=ids, labels=ids, use_cache=False).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def saved_activation_bytes(model: torch.nn.Module, ids: torch.Tensor) -> int:
    """Bytes of the tensors autograd saves for backward in one forward pass (activation memory).

    Parameters saved by reference are counted too, so this is an upper bound on the new allocations.
    """
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
    del loss
    return total


def _peak(fn, device: str) -> int | None:
    return peak_memory(fn, device=device) if device.startswith("cuda") else None


def run_benchmark(
    *, device: str = "cpu", size: BenchmarkSize | None = None, repeats: int = 5
) -> list[dict[str, Any]]:
    """Measure the rows described in the module docstring; return them with ratio columns."""
    size = size or BenchmarkSize()
    torch.manual_seed(0)
    original = tiny_moe_model(
        "mixtral",
        vocab_size=size.vocab_size,
        hidden_size=size.hidden_size,
        intermediate_size=size.intermediate_size,
        num_hidden_layers=size.num_hidden_layers,
        num_experts=size.num_experts,
    ).to(device)
    extended = copy.deepcopy(original)
    layers = list(range(0, size.num_hidden_layers, 2))
    extend_model(extended, ExtensionPlan(layers=layers, source_experts=[[0]] * len(layers)))
    ids = torch.randint(0, size.vocab_size, (size.batch_size, size.sequence_length), device=device)
    hidden = torch.randn(size.batch_size, size.sequence_length, size.hidden_size, device=device)

    rows: list[dict[str, Any]] = []
    original_block, extended_block = original.model.layers[0].mlp, extended.model.layers[0].mlp
    with torch.no_grad():
        for name, block in (
            ("original block forward", original_block),
            ("extended block forward", extended_block),
        ):
            rows.append(
                {
                    "model": name,
                    "seconds": median_time(lambda block=block: block(hidden), repeats=repeats),
                    "peak_bytes": _peak(lambda block=block: block(hidden), device),
                    "trainable": None,
                }
            )

    original.train()
    extended.train()
    for param in extended.parameters():
        param.requires_grad_(False)
    new_params = [p for block in extended_blocks(extended).values() for p in block.new_parameters()]
    for param in new_params:
        param.requires_grad_(True)
    setups = (
        ("full fine-tuning step", original, list(original.parameters())),
        ("MoExtend step", extended, new_params),
    )
    for name, model, params in setups:
        optimizer = torch.optim.AdamW(params, lr=1e-4)
        trainable = sum(p.numel() for p in params)
        rows.append(
            {
                "model": name,
                "seconds": median_time(lambda m=model, o=optimizer: _train_step(m, o, ids), repeats=repeats),
                "peak_bytes": _peak(lambda m=model, o=optimizer: _train_step(m, o, ids), device),
                "trainable": trainable,
                "saved_activation_bytes": saved_activation_bytes(model, ids),
                # fp32 gradient plus AdamW's two moments per trainable parameter.
                "grad_and_optimizer_bytes": 3 * 4 * trainable,
            }
        )
    block_rows = compare(rows[:2], baseline="original block forward", metrics=["seconds", "peak_bytes"])
    step_rows = compare(
        rows[2:],
        baseline="full fine-tuning step",
        metrics=["seconds", "peak_bytes", "trainable", "saved_activation_bytes", "grad_and_optimizer_bytes"],
    )
    return block_rows + step_rows


def format_results(rows: list[dict[str, Any]]) -> str:
    """Render benchmark rows as a markdown table."""
    columns = [
        "model",
        "seconds",
        "seconds_ratio",
        "peak_bytes",
        "peak_bytes_ratio",
        "trainable",
        "trainable_ratio",
        "saved_activation_bytes_ratio",
        "grad_and_optimizer_bytes_ratio",
    ]
    return markdown_table(rows, columns)
