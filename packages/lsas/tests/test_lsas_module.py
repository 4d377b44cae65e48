"""Tests of the LSAS module against the equations of the official code."""

import pytest
import torch

from lsas.module import LSAS


def _random_module(order: int, channels: int = 32) -> LSAS:
    torch.manual_seed(0)
    module = LSAS(channels, order=order)
    # Move w_i, b_i off their shared initial values so each step is distinguishable.
    with torch.no_grad():
        for step in module.sub_attention:
            step.weight.normal_()
            step.bias.normal_()
    return module


def test_initial_values_of_sub_attention():
    module = LSAS(64, order=3)
    assert len(module.sub_attention) == 3
    for step in module.sub_attention:
        assert step.weight.shape == (1, 64, 1, 1)
        assert torch.all(step.weight == 0.5)
        assert torch.all(step.bias == -0.5)


def test_first_sub_logit_at_init():
    torch.manual_seed(1)
    module = LSAS(32, order=1)
    x = torch.randn(4, 32, 5, 5)
    y = module.excitation_logits(x)
    (s1,) = module.sub_logits(y)
    torch.testing.assert_close(torch.sigmoid(s1), torch.sigmoid(0.5 * y - 0.5))


def test_excitation_logits_match_hand_computed_se():
    torch.manual_seed(2)
    module = LSAS(32, order=1)
    x = torch.randn(3, 32, 4, 4)
    linears = [m for m in module.se.modules() if isinstance(m, torch.nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(2, 32), (32, 2)]
    z = x.mean(dim=(2, 3))
    hidden = torch.relu(z @ linears[0].weight.T + linears[0].bias)
    expected = (hidden @ linears[1].weight.T + linears[1].bias)[:, :, None, None]
    torch.testing.assert_close(module.excitation_logits(x), expected)


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
def test_gate_equals_cascade_product(order):
    module = _random_module(order)
    x = torch.randn(2, 32, 3, 3)
    y = module.excitation_logits(x)
    expected = torch.sigmoid(y)
    previous = y
    for step in module.sub_attention:
        current = step.weight * previous + step.bias
        expected = expected * torch.sigmoid(current)
        previous = current
    torch.testing.assert_close(module.gate(x), expected)
    torch.testing.assert_close(module(x), x * expected)


def test_order_zero_equals_plain_se():
    module = LSAS(32, order=0)
    x = torch.randn(2, 32, 3, 3)
    torch.testing.assert_close(module(x), x * torch.sigmoid(module.excitation_logits(x)))
    torch.testing.assert_close(module(x), module.se(x))
    assert len(module.sub_attention) == 0


def test_hand_computed_gate_on_single_channel_values():
    module = LSAS(16, order=2, rd_channels=1)
    with torch.no_grad():
        for parameter in module.se.parameters():
            parameter.zero_()
    # With zeroed SE weights the logits are 0, so s_1 = -0.5 and s_2 = 0.5 * -0.5 - 0.5 = -0.75.
    x = torch.ones(1, 16, 2, 2)
    sigmoid = lambda v: 1 / (1 + torch.exp(-torch.tensor(v)))  # noqa: E731
    expected = 0.5 * sigmoid(-0.5) * sigmoid(-0.75)
    torch.testing.assert_close(module.gate(x), torch.full((1, 16, 1, 1), float(expected)))


def test_gate_shape_and_range():
    module = _random_module(3, channels=24)
    gate = module.gate(torch.randn(5, 24, 7, 7) * 10)
    assert gate.shape == (5, 24, 1, 1)
    assert torch.all(gate > 0)
    assert torch.all(gate < 1)


def test_output_shape_matches_input():
    module = LSAS(64)
    x = torch.randn(2, 64, 8, 8)
    assert module(x).shape == x.shape


def test_gradients_reach_every_parameter():
    module = _random_module(3)
    module(torch.randn(4, 32, 3, 3)).square().sum().backward()
    for name, parameter in module.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


def test_parameter_count_adds_two_c_per_order():
    base = sum(p.numel() for p in LSAS(64, order=0).parameters())
    for order in (1, 2, 5):
        count = sum(p.numel() for p in LSAS(64, order=order).parameters())
        assert count - base == 2 * 64 * order


def test_reset_parameters_restores_initial_values():
    module = _random_module(2)
    module.reset_parameters()
    for step in module.sub_attention:
        assert torch.all(step.weight == 0.5)
        assert torch.all(step.bias == -0.5)


@pytest.mark.parametrize("order", [-1, 1.5, True, "1"])
def test_invalid_order_is_rejected(order):
    with pytest.raises(ValueError, match="order"):
        LSAS(32, order=order)


def test_wrong_channel_count_is_rejected():
    with pytest.raises(ValueError, match=r"\(B, 32, H, W\)"):
        LSAS(32)(torch.randn(1, 16, 4, 4))


def test_device_and_dtype_keywords():
    module = LSAS(32, order=2, device="cpu", dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in module.parameters())
    assert module(torch.randn(1, 32, 2, 2, dtype=torch.float64)).dtype == torch.float64


def test_save_load_gives_identical_outputs(tmp_path):
    module = _random_module(2)
    x = torch.randn(2, 32, 3, 3)
    torch.save(module.state_dict(), tmp_path / "lsas.pt")
    restored = LSAS(32, order=2)
    restored.load_state_dict(torch.load(tmp_path / "lsas.pt"))
    torch.testing.assert_close(restored(x), module(x), rtol=0, atol=0)


@pytest.mark.parametrize("channels", [0, -4, 2.5, "64"])
def test_invalid_channel_count_is_rejected(channels):
    with pytest.raises(ValueError, match="LSAS needs a positive integer channel count"):
        LSAS(channels)
