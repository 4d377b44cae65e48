"""Read access to the expert weights of a Hugging Face sparse-MoE block in either transformers layout.

transformers 5.x stores the experts of Mixtral, Qwen3-MoE and OLMoE fused in 3-D tensors (``gate_up_proj``
of shape ``(E, 2I, H)`` and ``down_proj`` of shape ``(E, H, I)``). transformers 4.x keeps an
``nn.ModuleList`` of SwiGLU experts whose linear layers are named ``w1`` / ``w3`` / ``w2`` (Mixtral) or
``gate_proj`` / ``up_proj`` / ``down_proj`` (Qwen-MoE, OLMoE). The views defined here run one expert and
read its weights without copying the pretrained tensors, so the extended block can keep the original
modules (and their state-dict names) unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ExpertsView", "FusedExpertsView", "ModuleListExpertsView", "read_experts", "router_weight"]

# Names of the (gate, up, down) projections of one SwiGLU expert, as transformers 4.x spells them.
_MODULE_LIST_NAMES = (("w1", "w3", "w2"), ("gate_proj", "up_proj", "down_proj"))


class ExpertsView:
    """Uniform, read-only access to the experts of one MoE block."""

    num_experts: int
    hidden_size: int
    intermediate_size: int
    act_fn: Callable[[torch.Tensor], torch.Tensor]

    def expert_output(self, index: int, hidden_states: torch.Tensor) -> torch.Tensor:
        """Run expert ``index`` on ``hidden_states`` of shape ``(T, H)`` and return ``(T, H)``."""
        raise NotImplementedError

    def fused_weights(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return expert ``index`` as ``(gate_up (2I, H), down (H, I))``, the 5.x fused layout."""
        raise NotImplementedError


class FusedExpertsView(ExpertsView):
    """Experts fused into ``gate_up_proj (E, 2I, H)`` and ``down_proj (E, H, I)`` (transformers 5.x)."""

    def __init__(self, experts: Any, hidden_size: int) -> None:
        gate_up, down = experts.gate_up_proj, experts.down_proj
        if gate_up.dim() != 3 or down.dim() != 3 or gate_up.shape[2] != hidden_size:
            raise ValueError(
                f"unsupported fused expert layout: gate_up_proj {tuple(gate_up.shape)}, down_proj "
                f"{tuple(down.shape)}; expected (E, 2I, H={hidden_size}) and (E, H, I), untransposed and "
                "without biases"
            )
        if getattr(experts, "gate_up_proj_bias", None) is not None or getattr(experts, "has_bias", False):
            raise ValueError("fused experts with biases are not supported by the extended MoE block")
        self.experts: Any = experts
        self.num_experts = int(gate_up.shape[0])
        self.hidden_size = hidden_size
        self.intermediate_size = int(down.shape[2])
        self.act_fn = experts.act_fn

    def expert_output(self, index: int, hidden_states: torch.Tensor) -> torch.Tensor:
        # Same operation order as the 5.x eager expert loop, so outputs match it bit for bit.
        gate, up = F.linear(hidden_states, self.experts.gate_up_proj[index]).chunk(2, dim=-1)
        return F.linear(self.act_fn(gate) * up, self.experts.down_proj[index])

    def fused_weights(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.experts.gate_up_proj[index], self.experts.down_proj[index]


class ModuleListExpertsView(ExpertsView):
    """Experts as an ``nn.ModuleList`` of SwiGLU MLPs (transformers 4.x)."""

    def __init__(self, experts: Any, hidden_size: int) -> None:
        first = experts[0]
        for names in _MODULE_LIST_NAMES:
            if all(isinstance(getattr(first, name, None), nn.Linear) for name in names):
                self.names = names
                break
        else:
            found = sorted(name for name, _ in first.named_children())
            raise ValueError(
                f"unsupported expert module {type(first).__name__} with children {found}; expected linear "
                "layers named (w1, w3, w2) or (gate_proj, up_proj, down_proj)"
            )
        gate_name, _, down_name = self.names
        self.experts: Any = experts
        self.num_experts = len(experts)
        self.hidden_size = hidden_size
        self.intermediate_size = getattr(first, gate_name).out_features
        self.act_fn = first.act_fn
        if getattr(first, down_name).out_features != hidden_size:
            raise ValueError(
                f"expert output width {getattr(first, down_name).out_features} differs from the hidden size "
                f"{hidden_size}"
            )

    def expert_output(self, index: int, hidden_states: torch.Tensor) -> torch.Tensor:
        gate_name, up_name, down_name = self.names
        expert = self.experts[index]
        hidden = self.act_fn(getattr(expert, gate_name)(hidden_states)) * getattr(expert, up_name)(
            hidden_states
        )
        return getattr(expert, down_name)(hidden)

    def fused_weights(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        gate_name, up_name, down_name = self.names
        expert = self.experts[index]
        gate_up = torch.cat([getattr(expert, gate_name).weight, getattr(expert, up_name).weight], dim=0)
        return gate_up, getattr(expert, down_name).weight


def read_experts(experts: Any, hidden_size: int) -> ExpertsView:
    """Return a view of ``experts`` in whichever layout (5.x fused or 4.x module list) it uses.

    Raises:
        ValueError: the module is neither layout.
    """
    if isinstance(getattr(experts, "gate_up_proj", None), torch.Tensor):
        return FusedExpertsView(experts, hidden_size)
    if isinstance(experts, nn.ModuleList) and len(experts) > 0:
        return ModuleListExpertsView(experts, hidden_size)
    raise ValueError(
        f"cannot read experts of type {type(experts).__name__}: expected a fused module with gate_up_proj "
        "and down_proj (transformers 5.x) or an nn.ModuleList of SwiGLU experts (transformers 4.x)"
    )


def router_weight(gate: Any) -> torch.Tensor:
    """Return the router weight ``(E, H)`` of a 5.x ``*TopKRouter`` or a 4.x bias-free ``nn.Linear`` gate."""
    weight = getattr(gate, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise ValueError(
            f"router {type(gate).__name__} has no 2-D weight of shape (num_experts, hidden_size)"
        )
    if getattr(gate, "bias", None) is not None:
        raise ValueError(
            f"router {type(gate).__name__} has a bias, which the extended MoE block does not model"
        )
    return weight
