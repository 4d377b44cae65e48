"""Find the sparse-MoE layers of a Hugging Face causal LM and swap extended blocks into them.

The swap replaces the module at ``model.model.layers[i].mlp`` (transformers 5.x, and 4.x Qwen-MoE / OLMoE)
or ``.block_sparse_moe`` (transformers 4.x Mixtral) with an :class:`ExtendedSparseMoeBlock` that wraps the
original router and experts. No modelling file is copied or patched: the decoder layer calls the new module
exactly where it called the old one.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from moextend.block import ExtendedSparseMoeBlock
from moextend.experts import read_experts, router_weight

__all__ = [
    "ExtensionPlan",
    "MoeLayer",
    "extend_model",
    "extended_blocks",
    "find_moe_layers",
    "record_router_logits",
    "restore_routers",
    "router_state",
]

logger = logging.getLogger(__name__)

_BLOCK_ATTRIBUTES = ("block_sparse_moe", "mlp")


@dataclasses.dataclass(frozen=True)
class MoeLayer:
    """One sparse-MoE feed-forward layer: its decoder-layer index, parent module and attribute name."""

    index: int
    parent: nn.Module
    attribute: str

    @property
    def block(self) -> Any:
        """The MoE block currently installed (original or extended)."""
        return getattr(self.parent, self.attribute)

    @property
    def prefix(self) -> str:
        """Dotted path of the block relative to the decoder-layer list, e.g. ``"3.mlp"``."""
        return f"{self.index}.{self.attribute}"


@dataclasses.dataclass
class ExtensionPlan:
    """Decoder layers that get new experts, and the pretrained expert each new one is copied from.

    Attributes:
        layers: decoder-layer indices, ascending.
        source_experts: for each layer, one source index per new expert.
    """

    layers: list[int]
    source_experts: list[list[int]]

    def __post_init__(self) -> None:
        if len(self.layers) != len(self.source_experts):
            raise ValueError(
                f"plan lists {len(self.layers)} layers but {len(self.source_experts)} source-expert lists"
            )
        if len(set(self.layers)) != len(self.layers):
            raise ValueError(f"plan lists a layer twice: {self.layers}")
        counts = {len(sources) for sources in self.source_experts}
        if len(counts) > 1:
            raise ValueError(f"every layer needs the same number of new experts, got {self.source_experts}")

    @property
    def num_new_experts(self) -> int:
        """New experts per extended layer."""
        return len(self.source_experts[0]) if self.source_experts else 0

    def to_dict(self) -> dict[str, Any]:
        return {"layers": list(self.layers), "source_experts": [list(s) for s in self.source_experts]}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ExtensionPlan:
        return cls(
            layers=[int(i) for i in values["layers"]],
            source_experts=[[int(e) for e in s] for s in values["source_experts"]],
        )


def _decoder_layers(model: nn.Module) -> nn.ModuleList:
    for candidate in (getattr(getattr(model, "model", None), "layers", None), getattr(model, "layers", None)):
        if isinstance(candidate, nn.ModuleList):
            return candidate
    raise ValueError(
        f"cannot find the decoder layers of {type(model).__name__}: expected model.model.layers or model.layers"
    )


def find_moe_layers(model: nn.Module) -> list[MoeLayer]:
    """List the sparse-MoE layers of a causal LM, original or already extended.

    Raises:
        ValueError: no MoE layer found, or a family with a shared expert (Qwen2-MoE), which the extended
            block does not model.
    """
    found = []
    for index, layer in enumerate(_decoder_layers(model)):
        for attribute in _BLOCK_ATTRIBUTES:
            block = getattr(layer, attribute, None)
            if block is None or not hasattr(block, "gate") or not hasattr(block, "experts"):
                continue
            if hasattr(block, "shared_expert"):
                raise ValueError(
                    f"layer {index} has a shared expert ({type(block).__name__}); supported families are "
                    "Mixtral, Qwen3-MoE and OLMoE"
                )
            found.append(MoeLayer(index, layer, attribute))
            break
    if not found:
        raise ValueError(f"{type(model).__name__} has no sparse-MoE layer with a gate and experts")
    return found


def _routing_settings(model: Any) -> tuple[int, bool]:
    config = model.config
    top_k = int(config.num_experts_per_tok)
    # Mixtral always renormalises the top-k weights; Qwen-MoE and OLMoE follow norm_topk_prob.
    normalize = bool(getattr(config, "norm_topk_prob", True))
    if getattr(config, "router_jitter_noise", 0.0):
        warnings.warn(
            "router_jitter_noise is set but extended blocks route without jitter", UserWarning, stacklevel=3
        )
    return top_k, normalize


def extend_model(
    model: Any,
    plan: ExtensionPlan,
    *,
    calibration_hidden: int = 16,
    initializer_range: float | None = None,
    initialize: bool = True,
) -> dict[int, ExtendedSparseMoeBlock]:
    """Swap extended blocks into the layers of ``plan`` and initialise them by copy.

    Args:
        model: a causal LM (``MixtralForCausalLM``, ``Qwen3MoeForCausalLM``, ``OlmoeForCausalLM``, ...).
        plan: layers and source experts.
        calibration_hidden: hidden width of the calibration MLP.
        initializer_range: std of the calibration's first layer; defaults to ``config.initializer_range``.
        initialize: copy the source experts and router rows. Pass ``False`` when the new tensors are
            loaded from a checkpoint right after.

    Returns:
        The new blocks by decoder-layer index.
    """
    layers = {layer.index: layer for layer in find_moe_layers(model)}
    top_k, normalize = _routing_settings(model)
    if initializer_range is None:
        initializer_range = float(getattr(model.config, "initializer_range", 0.02))
    blocks = {}
    for index, sources in zip(plan.layers, plan.source_experts, strict=True):
        if index not in layers:
            raise ValueError(f"layer {index} is not a sparse-MoE layer; MoE layers are {sorted(layers)}")
        layer = layers[index]
        if isinstance(layer.block, ExtendedSparseMoeBlock):
            raise ValueError(f"layer {index} is already extended")
        block = ExtendedSparseMoeBlock(
            layer.block.gate,
            layer.block.experts,
            top_k=top_k,
            normalize_top_k=normalize,
            num_new_experts=len(sources),
            calibration_hidden=calibration_hidden,
            initializer_range=initializer_range,
        )
        if initialize:
            block.initialize_from(list(sources))
        else:
            block.source_experts = [int(s) for s in sources]
        setattr(layer.parent, layer.attribute, block)
        blocks[index] = block
    logger.info("extended layers %s with sources %s", plan.layers, plan.source_experts)
    return blocks


def extended_blocks(model: nn.Module) -> dict[int, ExtendedSparseMoeBlock]:
    """Return the extended blocks of ``model`` by decoder-layer index."""
    return {
        layer.index: layer.block
        for layer in find_moe_layers(model)
        if isinstance(layer.block, ExtendedSparseMoeBlock)
    }


def router_state(model: nn.Module) -> dict[int, torch.Tensor]:
    """Return a copy of the pretrained router weight ``(E_old, H)`` of every MoE layer."""
    return {layer.index: router_weight(layer.block.gate).detach().clone() for layer in find_moe_layers(model)}


@torch.no_grad()
def restore_routers(model: nn.Module, state: Mapping[int, torch.Tensor]) -> None:
    """Copy saved router weights back into the MoE layers of ``model``."""
    for layer in find_moe_layers(model):
        if layer.index in state:
            router_weight(layer.block.gate).copy_(state[layer.index])


def expert_count(block: Any) -> int:
    """Experts of an original or extended block."""
    if isinstance(block, ExtendedSparseMoeBlock):
        return block.num_experts
    return router_weight(block.gate).shape[0]


def expert_parameter_count(block: Any) -> int:
    """Parameters of one pretrained expert, ``3 * H * I``."""
    view = read_experts(block.experts, router_weight(block.gate).shape[1])
    return 3 * view.hidden_size * view.intermediate_size


@contextmanager
def record_router_logits(model: nn.Module) -> Iterator[dict[int, torch.Tensor]]:
    """Record the router logits ``(T, E_l)`` of every MoE layer during the forward passes in the block.

    The yielded dict maps decoder-layer index to the logits of the most recent forward pass. Extended
    blocks report all ``E_old + n_new`` logits, original blocks their ``E_old``.
    """
    recorded: dict[int, torch.Tensor] = {}
    handles = []

    def make_hook(index: int):
        def hook(module: nn.Module, inputs: Sequence[Any], output: Any) -> None:
            recorded[index] = output[0] if isinstance(output, tuple) else output

        return hook

    for layer in find_moe_layers(model):
        block = layer.block
        source: Any = block.router_logits_tap if isinstance(block, ExtendedSparseMoeBlock) else block.gate
        handles.append(source.register_forward_hook(make_hook(layer.index)))
    try:
        yield recorded
    finally:
        for handle in handles:
            handle.remove()
