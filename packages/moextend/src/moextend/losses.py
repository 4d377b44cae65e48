"""Training loss of MoExtend: next-token cross-entropy on answer tokens plus load balancing.

``L = CE + 0.001 * L_aux``. ``L_aux`` is the Switch-Transformer load-balancing term computed per MoE layer
(layers may have different expert counts once some are extended) and averaged over layers:
``L_aux = scale / L * sum_l sum_e f_{l,e} * P_{l,e}``, where ``f_{l,e}`` is the fraction of (unpadded)
tokens that pick expert ``e`` among their top-k and ``P_{l,e}`` the mean router probability of ``e``.
``scale`` is the largest expert count of the model.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

__all__ = ["IGNORE_INDEX", "answer_cross_entropy", "load_balancing_loss"]

IGNORE_INDEX = -100


def answer_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy over the positions whose label is not ``IGNORE_INDEX``.

    Args:
        logits: ``(B, S, V)``.
        labels: ``(B, S)``, the input ids with user, image and padding positions set to ``-100``.
    """
    shifted_logits = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
    shifted_labels = labels[:, 1:].reshape(-1)
    if not bool((shifted_labels != IGNORE_INDEX).any()):
        # No answer token in the batch: a zero that still depends on the logits keeps backward valid.
        return shifted_logits.sum() * 0.0
    return F.cross_entropy(shifted_logits, shifted_labels, ignore_index=IGNORE_INDEX)


def load_balancing_loss(
    router_logits: Mapping[int, torch.Tensor],
    *,
    top_k: int,
    attention_mask: torch.Tensor | None = None,
    scale: int | None = None,
) -> torch.Tensor:
    """Switch-style load-balancing loss averaged over MoE layers.

    Args:
        router_logits: layer index -> logits ``(T, E_l)`` with ``T = B * S``.
        top_k: experts per token.
        attention_mask: ``(B, S)``. ``None`` counts every token (the official code returns 0 instead).
        scale: multiplier of the average; defaults to ``max_l E_l``.
    """
    if not router_logits:
        raise ValueError("load_balancing_loss needs the router logits of at least one layer")
    if scale is None:
        scale = max(logits.shape[-1] for logits in router_logits.values())
    layer_losses = []
    for logits in router_logits.values():
        probabilities = torch.softmax(logits.float(), dim=-1)
        chosen = torch.topk(probabilities, top_k, dim=-1).indices
        expert_mask = F.one_hot(chosen, probabilities.shape[-1]).float()
        if attention_mask is None:
            weights = torch.ones(probabilities.shape[0], device=probabilities.device)
        else:
            weights = attention_mask.reshape(-1).to(probabilities)
            if weights.numel() != probabilities.shape[0]:
                raise ValueError(
                    f"attention mask has {weights.numel()} positions but the router saw {probabilities.shape[0]}"
                )
        denominator = weights.sum().clamp_min(1.0)
        tokens_per_expert = (expert_mask * weights[:, None, None]).sum(dim=0) / denominator
        prob_per_expert = (probabilities * weights[:, None]).sum(dim=0) / denominator
        layer_losses.append((tokens_per_expert * prob_per_expert[None]).sum())
    return torch.stack(layer_losses).sum() * scale / len(layer_losses)
