"""Tests of the RAS module against the equations of the official code."""

import pytest
import torch
from torch import nn

from ras import RAS


def _perturbed(steps: int = 2, channels: int = 16) -> RAS:
    torch.manual_seed(0)
    module = RAS(channels, steps=steps)
    with torch.no_grad():
        module.affine.weight.normal_()
        module.affine.bias.normal_()
        for norm in module.norms:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.normal_()
    return module


def test_initial_values():
    module = RAS(64)
    assert torch.all(module.affine.weight == 0)
    assert torch.all(module.affine.bias == -1)
    assert len(module.norms) == 1
    assert torch.all(module.norms[0].weight == 1)
    assert torch.all(module.norms[0].bias == 0)


def test_one_shared_weight_and_bias():
    module = RAS(32, steps=4)
    affine_parameters = [name for name, _ in module.named_parameters() if name.startswith("affine.")]
    assert affine_parameters == ["affine.weight", "affine.bias"]
    assert sum(p.numel() for p in module.affine.parameters()) == 2 * 32
    assert len(module.norms) == 3


def test_gate_matches_hand_computation_in_training_mode():
    module = _perturbed()
    module.train()
    x = torch.randn(6, 16, 5, 5)
    w, b = module.affine.weight, module.affine.bias
    norm = module.norms[0]
    g = x.mean(dim=(2, 3), keepdim=True)
    z1 = w * g + b
    mean = z1.mean(dim=0, keepdim=True)
    variance = z1.var(dim=0, unbiased=False, keepdim=True)
    normalised = norm.weight.view(1, -1, 1, 1) * (z1 - mean) / torch.sqrt(
        variance + norm.eps
    ) + norm.bias.view(1, -1, 1, 1)
    expected = torch.sigmoid(w * normalised + b)
    torch.testing.assert_close(module.gate(x), expected)
    torch.testing.assert_close(module(x), x * expected)


def test_gate_uses_running_statistics_in_eval_mode():
    module = _perturbed()
    with torch.no_grad():
        module.norms[0].running_mean.normal_()
        module.norms[0].running_var.uniform_(0.5, 2.0)
    module.eval()
    x = torch.randn(3, 16, 4, 4)
    w, b = module.affine.weight, module.affine.bias
    norm = module.norms[0]
    z1 = w * x.mean(dim=(2, 3), keepdim=True) + b
    running_mean = norm.running_mean.view(1, -1, 1, 1)
    running_var = norm.running_var.view(1, -1, 1, 1)
    normalised = (z1 - running_mean) / torch.sqrt(running_var + norm.eps) * norm.weight.view(
        1, -1, 1, 1
    ) + norm.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(module.gate(x), torch.sigmoid(w * normalised + b))


def test_three_steps_chain_with_own_norms():
    module = _perturbed(steps=3)
    module.eval()
    x = torch.randn(2, 16, 3, 3)
    w, b = module.affine.weight, module.affine.bias
    z = w * x.mean(dim=(2, 3), keepdim=True) + b
    for norm in module.norms:
        z = w * norm(z) + b
    torch.testing.assert_close(module.gate(x), torch.sigmoid(z))


def test_single_step_has_no_norm():
    module = _perturbed(steps=1)
    x = torch.randn(2, 16, 3, 3)
    assert len(module.norms) == 0
    expected = torch.sigmoid(module.affine.weight * x.mean(dim=(2, 3), keepdim=True) + module.affine.bias)
    torch.testing.assert_close(module.gate(x), expected)


def test_norm_output_is_beta_when_weight_is_zero():
    module = RAS(32)
    with torch.no_grad():
        module.norms[0].bias.uniform_(-1, 1)
    module.train()
    z1 = module.step_logits(torch.randn(8, 32, 4, 4))[0]
    assert torch.all(z1 == -1)
    normalised = module.norms[0](z1)
    # The batch variance is 0, so BN scales by γ / sqrt(eps) ≈ 316 and float32 rounding of that scale and of
    # the shift leaves an error of about 316 · 2^-24 · |z_1| ≈ 2e-5.
    torch.testing.assert_close(
        normalised, module.norms[0].bias.view(1, -1, 1, 1).expand_as(normalised), rtol=0, atol=1e-4
    )


def test_norm_output_is_exactly_zero_at_official_init():
    module = RAS(32)
    module.train()
    z1 = module.step_logits(torch.randn(8, 32, 4, 4))[0]
    assert torch.all(module.norms[0](z1) == 0)


def test_gate_shape_and_range():
    gate = _perturbed().gate(torch.randn(4, 16, 6, 6) * 5)
    assert gate.shape == (4, 16, 1, 1)
    assert torch.all(gate > 0)
    assert torch.all(gate < 1)


def test_gradients_reach_every_parameter_after_perturbation():
    module = _perturbed(steps=3)
    module(torch.randn(4, 16, 3, 3)).square().sum().backward()
    for name, parameter in module.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


def test_reset_parameters_restores_initial_values():
    module = _perturbed()
    module.reset_parameters()
    assert torch.all(module.affine.weight == 0)
    assert torch.all(module.affine.bias == -1)
    assert torch.all(module.norms[0].weight == 1)
    assert torch.all(module.norms[0].running_var == 1)


@pytest.mark.parametrize("steps", [0, -2, 1.0, True])
def test_invalid_steps_are_rejected(steps):
    with pytest.raises(ValueError, match="steps"):
        RAS(8, steps=steps)


def test_wrong_channel_count_is_rejected():
    with pytest.raises(ValueError, match=r"\(B, 8, H, W\)"):
        RAS(8)(torch.randn(2, 4, 3, 3))


def test_device_and_dtype_keywords():
    module = RAS(8, device="cpu", dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in module.parameters())
    assert module(torch.randn(2, 8, 2, 2, dtype=torch.float64)).dtype == torch.float64


def test_save_load_gives_identical_outputs(tmp_path):
    module = _perturbed()
    module.train()
    module(torch.randn(4, 16, 3, 3))
    module.eval()
    torch.save(module.state_dict(), tmp_path / "ras.pt")
    restored = RAS(16)
    restored.load_state_dict(torch.load(tmp_path / "ras.pt"))
    restored.eval()
    x = torch.randn(2, 16, 3, 3)
    torch.testing.assert_close(restored(x), module(x), rtol=0, atol=0)
    assert isinstance(restored.norms[0], nn.BatchNorm2d)


@pytest.mark.parametrize("channels", [0, 3.0, None])
def test_invalid_channel_count_is_rejected(channels):
    with pytest.raises(ValueError, match="RAS needs a positive integer channel count"):
        RAS(channels)
