"""Training losses of SUR-adapter: the diffusion loss and two knowledge-distillation terms.

The total loss of "SUR-adapter" (arXiv 2305.05189) is

    L = L_noise + llm_weight * L_llm + prompt_weight * L_prompt

Here ``L_noise`` is the usual noise-prediction loss of the UNet conditioned on the adapted embeddings.
``L_llm = KD(P v_llm, h)`` compares the LLM teacher vector (projected by ``P``) with every token of the
adapter's transformer output ``h``. ``L_prompt = KD(c, y)`` compares the complex-prompt embedding ``c``
with the adapted simple-prompt embedding ``y``. Both weights default to 1e-5.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from diffusers.training_utils import compute_snr

__all__ = ["SURLosses", "combine_losses", "kd_loss", "noise_prediction_loss"]


class SURLosses(NamedTuple):
    """The total loss and its three terms (unweighted), each a scalar tensor."""

    total: torch.Tensor
    noise: torch.Tensor
    llm: torch.Tensor
    prompt: torch.Tensor


def kd_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Compute ``KL(softmax(teacher) || softmax(student))`` over the last dimension, summed, divided by B.

    This equals ``F.kl_div(log_softmax(student), softmax(teacher), reduction="batchmean")`` at temperature
    1: the KL divergence of every token's feature distribution is summed over tokens and features and
    divided by the batch size.

    Args:
        student: (B, L_s, D) logits; an ``L_s`` of 1 is broadcast against every token of ``teacher``.
        teacher: (B, L, D) logits.

    Returns:
        Scalar tensor.
    """
    if (
        student.dim() != teacher.dim()
        or student.shape[0] != teacher.shape[0]
        or student.shape[-1] != teacher.shape[-1]
    ):
        raise ValueError(
            f"kd_loss needs tensors with the same batch size and feature size, got student "
            f"{tuple(student.shape)} and teacher {tuple(teacher.shape)}."
        )
    shape = torch.broadcast_shapes(student.shape, teacher.shape)
    log_student = F.log_softmax(student, dim=-1).expand(shape)
    teacher_probs = F.softmax(teacher, dim=-1).expand(shape)
    return F.kl_div(log_student, teacher_probs, reduction="batchmean")


def noise_prediction_loss(
    model_pred: torch.Tensor,
    target: torch.Tensor,
    *,
    timesteps: torch.Tensor | None = None,
    noise_scheduler=None,
    snr_gamma: float | None = None,
) -> torch.Tensor:
    """Compute the mean squared error of the UNet prediction, optionally with min-SNR-gamma weighting.

    Args:
        model_pred: (B, C, H, W) UNet output.
        target: (B, C, H, W) noise (epsilon prediction) or velocity (v-prediction).
        timesteps: (B,) timesteps; needed with ``snr_gamma``.
        noise_scheduler: The training scheduler; needed with ``snr_gamma``.
        snr_gamma: Gamma of min-SNR weighting (Hang et al., arXiv 2303.09556); ``None`` for plain MSE.
    """
    if snr_gamma is None:
        return F.mse_loss(model_pred.float(), target.float(), reduction="mean")
    if timesteps is None or noise_scheduler is None:
        raise ValueError("noise_prediction_loss with snr_gamma needs timesteps and noise_scheduler.")
    snr = compute_snr(noise_scheduler, timesteps)
    clipped = torch.minimum(snr, torch.full_like(snr, snr_gamma))
    if noise_scheduler.config.prediction_type == "v_prediction":
        weights = clipped / (snr + 1)
    else:
        weights = clipped / snr
    per_sample = F.mse_loss(model_pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    return (per_sample * weights).mean()


def combine_losses(
    noise: torch.Tensor,
    llm: torch.Tensor,
    prompt: torch.Tensor,
    *,
    llm_weight: float,
    prompt_weight: float,
) -> SURLosses:
    """Return ``L_noise + llm_weight * L_llm + prompt_weight * L_prompt`` with its unweighted terms."""
    total = noise + llm_weight * llm + prompt_weight * prompt
    return SURLosses(total=total, noise=noise, llm=llm, prompt=prompt)
