"""Stage 2 of MoExtend: measure how expert usage shifts on new-modality data and pick the layers to extend.

For every MoE layer ``l`` and expert ``e`` the usage fraction ``P[l, e]`` is how often ``e`` is among a
token's top-k, normalised per layer. With ``P_before`` from the model before router probing and
``P_after`` from the probed model, ``shift[l] = std_e(P_after[l, e] - P_before[l, e])`` with the sample
standard deviation (ddof = 1). The ``floor(L / 2)`` layers with the largest shift are extended, and each
new expert is copied from the expert that layer uses most after probing (``argmax_e P_after[l, e]``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from moextend.extend import ExtensionPlan

__all__ = ["count_expert_usage", "select_layers", "usage_fractions", "usage_shift"]


def count_expert_usage(
    router_logits: Mapping[int, torch.Tensor],
    *,
    top_k: int,
    attention_mask: torch.Tensor | None = None,
    legacy_ascending_argsort: bool = False,
) -> dict[int, torch.Tensor]:
    """Count how often each expert is among each token's top-k, per layer.

    Args:
        router_logits: layer index -> logits ``(T, E)`` with ``T = B * S``.
        top_k: experts per token.
        attention_mask: ``(B, S)``; padded tokens are not counted. ``None`` counts every token.
        legacy_ascending_argsort: take ``argsort(p)[..., :k]`` (the k *least* likely experts), as the
            official ``expert_distribution.py`` does, instead of the k most likely.

    Returns:
        Layer index -> counts ``(E,)`` as float64.
    """
    counts = {}
    for index, logits in router_logits.items():
        probabilities = torch.softmax(logits.detach().float(), dim=-1)
        if legacy_ascending_argsort:
            chosen = torch.argsort(probabilities, dim=-1)[..., :top_k]
        else:
            chosen = torch.topk(probabilities, top_k, dim=-1).indices
        one_hot = torch.nn.functional.one_hot(chosen, probabilities.shape[-1]).sum(dim=1).double()
        if attention_mask is not None:
            one_hot = one_hot * attention_mask.reshape(-1, 1).to(one_hot)
        counts[index] = one_hot.sum(dim=0)
    return counts


def usage_fractions(counts: torch.Tensor) -> torch.Tensor:
    """Normalise counts ``(L, E)`` per layer to fractions that sum to one."""
    totals = counts.sum(dim=-1, keepdim=True)
    if bool((totals <= 0).any()):
        raise ValueError("every layer needs at least one counted token to compute usage fractions")
    return counts / totals


def usage_shift(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Return ``std_e(P_after - P_before)`` per layer (ddof = 1) for counts of shape ``(L, E)``."""
    if before.shape != after.shape:
        raise ValueError(
            f"usage counts differ in shape: before {tuple(before.shape)}, after {tuple(after.shape)}"
        )
    return (usage_fractions(after) - usage_fractions(before)).std(dim=-1, correction=1)


def select_layers(
    before: torch.Tensor,
    after: torch.Tensor,
    *,
    layer_indices: Sequence[int] | None = None,
    num_layers: int | None = None,
    num_new_experts: int = 1,
) -> ExtensionPlan:
    """Choose the layers to extend and the source expert(s) of each new expert.

    Args:
        before: usage counts ``(L, E)`` of the model before router probing.
        after: usage counts ``(L, E)`` of the probed model.
        layer_indices: decoder-layer index of each row; defaults to ``0 .. L-1``.
        num_layers: layers to extend; defaults to ``floor(L / 2)``.
        num_new_experts: new experts per layer; they copy the most used experts after probing, in
            descending order of usage.

    Returns:
        The plan, with layers in ascending order. Equal shifts keep the lower layer index first.
    """
    shift = usage_shift(before, after)
    total = before.shape[0]
    indices = list(range(total)) if layer_indices is None else [int(i) for i in layer_indices]
    if len(indices) != total:
        raise ValueError(f"got {len(indices)} layer indices for {total} rows of usage counts")
    count = total // 2 if num_layers is None else num_layers
    if not 1 <= count <= total:
        raise ValueError(f"num_layers={count} must be between 1 and the number of MoE layers ({total})")
    if not 1 <= num_new_experts <= before.shape[1]:
        raise ValueError(f"num_new_experts={num_new_experts} must be between 1 and {before.shape[1]}")
    order = sorted(range(total), key=lambda row: (-float(shift[row]), row))[:count]
    rows = sorted(order)
    after_fractions = usage_fractions(after)
    sources = []
    for row in rows:
        ranked = sorted(range(after.shape[1]), key=lambda e: (-float(after_fractions[row, e]), e))
        sources.append(ranked[:num_new_experts])
    return ExtensionPlan(layers=[indices[row] for row in rows], source_experts=sources)
