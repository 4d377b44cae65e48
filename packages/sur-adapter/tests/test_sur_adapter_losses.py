"""Distillation and diffusion loss terms against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDPMScheduler

from sur_adapter.losses import combine_losses, kd_loss, noise_prediction_loss


def manual_kd(student: torch.Tensor, teacher: torch.Tensor) -> float:
    """Sum of KL(softmax(teacher_t) || softmax(student_t)) over tokens, divided by the batch size."""
    total = 0.0
    batch, tokens, _ = teacher.shape
    for b in range(batch):
        for t in range(tokens):
            s = student[b, min(t, student.shape[1] - 1)].tolist()
            q = teacher[b, t].tolist()
            log_zs = math.log(sum(math.exp(v) for v in s))
            log_zq = math.log(sum(math.exp(v) for v in q))
            for s_i, q_i in zip(s, q, strict=True):
                log_p_teacher = q_i - log_zq
                log_p_student = s_i - log_zs
                total += math.exp(log_p_teacher) * (log_p_teacher - log_p_student)
    return total / batch


def test_kd_matches_manual_same_shape():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 5, 7), torch.randn(2, 5, 7)
    assert kd_loss(student, teacher).item() == pytest.approx(manual_kd(student, teacher), rel=1e-5)


def test_kd_broadcasts_single_token_student():
    torch.manual_seed(1)
    student, teacher = torch.randn(3, 1, 6), torch.randn(3, 77, 6)
    assert kd_loss(student, teacher).item() == pytest.approx(manual_kd(student, teacher), rel=1e-5)


def test_kd_zero_for_identical_inputs():
    logits = torch.randn(2, 4, 5)
    assert kd_loss(logits, logits).item() == pytest.approx(0.0, abs=1e-6)


def test_kd_rejects_mismatched_features():
    with pytest.raises(ValueError, match="same batch size and feature size"):
        kd_loss(torch.randn(2, 1, 4), torch.randn(2, 3, 5))


def test_combine_losses_weights():
    losses = combine_losses(
        torch.tensor(0.5), torch.tensor(40.0), torch.tensor(10.0), llm_weight=1e-5, prompt_weight=1e-5
    )
    assert losses.total.item() == pytest.approx(0.5 + 40.0e-5 + 10.0e-5)
    assert losses.llm.item() == 40.0
    assert losses.prompt.item() == 10.0


def test_plain_noise_loss_is_mse():
    prediction, target = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    expected = ((prediction - target) ** 2).mean().item()
    assert noise_prediction_loss(prediction, target).item() == pytest.approx(expected, rel=1e-6)


def test_min_snr_weighting_matches_manual():
    scheduler = DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012
    )
    prediction, target = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    timesteps = torch.tensor([10, 900])
    alphas = scheduler.alphas_cumprod[timesteps]
    snr = alphas / (1 - alphas)
    weights = torch.minimum(snr, torch.tensor(5.0)) / snr
    per_sample = ((prediction - target) ** 2).mean(dim=(1, 2, 3))
    expected = (per_sample * weights).mean().item()
    result = noise_prediction_loss(
        prediction, target, timesteps=timesteps, noise_scheduler=scheduler, snr_gamma=5.0
    )
    assert result.item() == pytest.approx(expected, rel=1e-5)


def test_min_snr_needs_scheduler():
    with pytest.raises(ValueError, match="needs timesteps and noise_scheduler"):
        noise_prediction_loss(torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 2, 2), snr_gamma=5.0)
