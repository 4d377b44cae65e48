"""The extended sparse-MoE block of MoExtend ("MoExtend: Tuning New Experts for Modality and Task Extension",
Zhong et al., arXiv 2408.03511).

One block replaces a pretrained MoE feed-forward layer. It keeps the pretrained router and experts as they
are (same modules, same state-dict names) and adds ``num_new_experts`` SwiGLU experts, one router row per new
expert and a small calibration MLP. For one token ``x``:

1. logits ``l = [W_old x ; W_new x]`` over ``E + n`` experts, probabilities ``p = softmax(l)``;
2. the top-k of ``p`` (uncalibrated) chooses the experts that run;
3. ``p' = p + calibration(p)`` and the mixing weights are ``w_i = p'_i / sum_{j in top-k} p'_j``
   (no normalisation for families configured with ``norm_topk_prob=False``);
4. ``y = sum_{i in top-k} w_i expert_i(x)``.

The calibration's last layer starts at zero, so at initialisation ``p' = p`` exactly.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from moextend.experts import ExpertsView, read_experts, router_weight

__all__ = ["ExtendedSparseMoeBlock", "RoutingCalibration"]


class RoutingCalibration(nn.Module):
    """Residual correction of routing probabilities: Linear(E, h) -> GELU -> Linear(h, E), no biases.

    Args:
        num_experts: experts after extension, ``E_old + n_new``.
        hidden_features: width of the hidden layer (16 in the official code).
        initializer_range: standard deviation of the normal init of the first layer. The second layer
            starts at zero, so the module outputs exactly zero until it is trained.
    """

    def __init__(
        self, num_experts: int, *, hidden_features: int = 16, initializer_range: float = 0.02
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(num_experts, hidden_features, bias=False)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, num_experts, bias=False)
        self.initializer_range = initializer_range
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw the first layer from N(0, initializer_range^2) and zero the second."""
        nn.init.normal_(self.fc1.weight, mean=0.0, std=self.initializer_range)
        nn.init.zeros_(self.fc2.weight)

    def forward(self, probabilities: torch.Tensor) -> torch.Tensor:
        """Map probabilities ``(T, E)`` to additive corrections ``(T, E)``."""
        return self.fc2(self.act(self.fc1(probabilities)))


class ExtendedSparseMoeBlock(nn.Module):
    """A pretrained sparse-MoE block plus new experts, new router rows and routing calibration.

    The pretrained ``gate`` and ``experts`` modules are kept as submodules under their original names, so
    their parameters keep their state-dict keys and can be checked against the base checkpoint.

    Args:
        gate: the pretrained router (5.x ``*TopKRouter`` or 4.x ``nn.Linear``), weight ``(E, H)``.
        experts: the pretrained experts in either layout (see :mod:`moextend.experts`).
        top_k: experts per token.
        normalize_top_k: divide the selected weights by their sum (always true for Mixtral; the
            ``norm_topk_prob`` setting for Qwen-MoE and OLMoE).
        num_new_experts: experts added to this layer.
        calibration_hidden: hidden width of :class:`RoutingCalibration`.
        initializer_range: standard deviation for the calibration's first layer.
    """

    def __init__(
        self,
        gate: Any,
        experts: Any,
        *,
        top_k: int,
        normalize_top_k: bool = True,
        num_new_experts: int = 1,
        calibration_hidden: int = 16,
        initializer_range: float = 0.02,
    ) -> None:
        super().__init__()
        weight = router_weight(gate)
        num_old, hidden_size = weight.shape
        view = read_experts(experts, hidden_size)

        if view.num_experts != num_old:
            raise ValueError(f"router has {num_old} rows but the block has {view.num_experts} experts")
        if num_new_experts < 1:
            raise ValueError(f"num_new_experts must be at least 1, got {num_new_experts}")
        if not 1 <= top_k <= num_old + num_new_experts:
            raise ValueError(f"top_k={top_k} must be between 1 and {num_old + num_new_experts}")

        self.gate = gate
        self.experts = experts
        self.top_k = top_k
        self.normalize_top_k = normalize_top_k
        self.num_old_experts = num_old
        self.num_new_experts = num_new_experts
        self.hidden_size = hidden_size
        self.intermediate_size = view.intermediate_size
        self.act_fn = view.act_fn

        # Placeholders with the right shapes. :meth:`initialize_from` copies the source experts into them.
        dtype, device = weight.dtype, weight.device
        self.new_router = nn.Parameter(torch.zeros(num_new_experts, hidden_size, dtype=dtype, device=device))
        self.new_gate_up_proj = nn.Parameter(
            torch.zeros(num_new_experts, 2 * view.intermediate_size, hidden_size, dtype=dtype, device=device)
        )
        self.new_down_proj = nn.Parameter(
            torch.zeros(num_new_experts, hidden_size, view.intermediate_size, dtype=dtype, device=device)
        )
        self.calibration = RoutingCalibration(
            num_old + num_new_experts, hidden_features=calibration_hidden, initializer_range=initializer_range
        ).to(dtype=dtype, device=device)
        # Forward hooks on this identity read the full router logits (T, E + n) for the auxiliary loss.
        self.router_logits_tap = nn.Identity()
        self.source_experts: list[int] = []

    @property
    def num_experts(self) -> int:
        """Experts after extension, ``E_old + n_new``."""
        return self.num_old_experts + self.num_new_experts

    def experts_view(self) -> ExpertsView:
        """Return a read-only view of the pretrained experts."""
        return read_experts(self.experts, self.hidden_size)

    @torch.no_grad()
    def initialize_from(self, source_experts: list[int]) -> None:
        """Copy expert ``source_experts[j]`` and its router row into new expert ``j``; reset the calibration.

        Raises:
            ValueError: wrong number of sources, or an index outside ``[0, E_old)``.
        """
        if len(source_experts) != self.num_new_experts:
            raise ValueError(
                f"got {len(source_experts)} source experts for {self.num_new_experts} new experts; pass one "
                "source index per new expert"
            )
        view = self.experts_view()
        weight = router_weight(self.gate)
        for new_index, source in enumerate(source_experts):
            if not 0 <= source < self.num_old_experts:
                raise ValueError(f"source expert {source} is outside [0, {self.num_old_experts})")
            gate_up, down = view.fused_weights(source)
            self.new_gate_up_proj[new_index].copy_(gate_up)
            self.new_down_proj[new_index].copy_(down)
            self.new_router[new_index].copy_(weight[source])
        self.calibration.reset_parameters()
        self.source_experts = [int(s) for s in source_experts]

    def new_parameters(self) -> list[nn.Parameter]:
        """Return the parameters MoExtend trains in this block: new experts, new router rows, calibration."""
        return [self.new_router, self.new_gate_up_proj, self.new_down_proj, *self.calibration.parameters()]

    def route(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Compute routing for tokens ``(T, H)``.

        Returns:
            ``(router_logits (T, E + n), top_k_weights (T, k) float32, top_k_index (T, k))``.
        """
        logits = torch.cat(
            [F.linear(hidden_states, router_weight(self.gate)), F.linear(hidden_states, self.new_router)],
            dim=-1,
        )
        probabilities = torch.softmax(logits.float(), dim=-1)
        _, top_k_index = torch.topk(probabilities, self.top_k, dim=-1)
        calibrated = (
            probabilities + self.calibration(probabilities.to(self.calibration.fc1.weight.dtype)).float()
        )
        top_k_weights = calibrated.gather(-1, top_k_index)
        if self.normalize_top_k:
            top_k_weights = top_k_weights / top_k_weights.sum(dim=-1, keepdim=True)
        return logits, top_k_weights, top_k_index

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Mix the selected experts for ``hidden_states`` of shape ``(B, S, H)``; returns ``(B, S, H)``."""
        batch_size, sequence_length, hidden_size = hidden_states.shape
        tokens = hidden_states.reshape(-1, hidden_size)
        logits, top_k_weights, top_k_index = self.route(tokens)
        self.router_logits_tap(logits)

        view = self.experts_view()
        output = torch.zeros_like(tokens)
        with torch.no_grad():
            used_experts = torch.unique(top_k_index).tolist()
        # Experts in index order, old ones first, as the transformers eager loop does.
        for expert in used_experts:
            token_index, slot = torch.where(top_k_index == expert)
            selected = tokens[token_index]
            if expert < self.num_old_experts:
                expert_out = view.expert_output(expert, selected)
            else:
                new_index = expert - self.num_old_experts
                gate, up = F.linear(selected, self.new_gate_up_proj[new_index]).chunk(2, dim=-1)
                expert_out = F.linear(self.act_fn(gate) * up, self.new_down_proj[new_index])
            expert_out = expert_out * top_k_weights[token_index, slot, None]
            output.index_add_(0, token_index, expert_out.to(output.dtype))
        return output.reshape(batch_size, sequence_length, hidden_size)

    def extra_repr(self) -> str:
        return (
            f"old_experts={self.num_old_experts}, new_experts={self.num_new_experts}, top_k={self.top_k}, "
            f"normalize_top_k={self.normalize_top_k}, source_experts={self.source_experts}"
        )
