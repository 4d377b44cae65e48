"""Tests of the SPEM module: equations, initial values, aux loss, gradients, save/load and host libraries."""

from __future__ import annotations

import math

import pytest
import timm
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from qcore.checkpoint import load_model_weights, save_checkpoint
from qcore.testing import assert_all_parameters_get_gradients, assert_only_changed, snapshot_parameters
from qcore.vision.attention import ATTENTION, resolve_attention
from qcore.vision.resnet import attach_attention_torchvision, create_cifar_resnet
from spenet import SPEM, global_min_pool


def _sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


def _randomised(channels: int = 4) -> SPEM:
    torch.manual_seed(0)
    module = SPEM(channels)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_()
    return module


def test_initial_values():
    module = SPEM(8)
    for affine in (module.pool_affine, module.mix_affine):
        assert torch.equal(affine.weight, torch.zeros(1, 8, 1, 1))
        assert torch.equal(affine.bias, torch.full((1, 8, 1, 1), -1.0))
    assert torch.equal(module.mix_weight, torch.tensor([0.5, 0.5]))
    assert sum(p.numel() for p in module.parameters()) == 4 * 8 + 2


def test_gate_at_initialisation_is_constant():
    x = torch.randn(2, 8, 5, 5)
    expected = _sigmoid(-2.0) * _sigmoid(-1.0)
    gate = SPEM(8).gate(x)
    assert gate.shape == (2, 8, 1, 1)
    torch.testing.assert_close(gate, torch.full((2, 8, 1, 1), expected))


def test_hand_computed_gate():
    module = SPEM(2)
    with torch.no_grad():
        module.pool_affine.weight.copy_(torch.tensor([0.5, -1.0]).view(1, 2, 1, 1))
        module.pool_affine.bias.copy_(torch.tensor([0.0, 0.25]).view(1, 2, 1, 1))
        module.mix_affine.weight.copy_(torch.tensor([1.0, 2.0]).view(1, 2, 1, 1))
        module.mix_affine.bias.copy_(torch.tensor([0.0, -0.5]).view(1, 2, 1, 1))
        module.mix_weight.copy_(torch.tensor([1.0, 2.0]))
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[-2.0, 0.0], [5.0, 1.0]]]])
    # p̂ = (1, 4) / 5.
    # Channel 0: M = 4, m = 1, M' = 2, m' = 0.5, mix = 0.2·2 + 0.8·0.5 = 0.8, u = 0.8.
    # Channel 1: M = 5, m = −2, M' = −4.75, m' = 2.25, mix = 0.2·(−4.75) + 0.8·2.25 = 0.85, u = 1.2.
    expected_gate = torch.tensor([_sigmoid(2.5) * _sigmoid(0.8), _sigmoid(-2.5) * _sigmoid(1.2)]).view(
        1, 2, 1, 1
    )
    torch.testing.assert_close(module.mixing_weights(), torch.tensor([0.2, 0.8]))
    torch.testing.assert_close(module.mix(x), torch.tensor([0.8, 0.85]).view(1, 2, 1, 1))
    torch.testing.assert_close(module.gate(x), expected_gate)
    torch.testing.assert_close(module(x), x * expected_gate)


def test_mixing_weights_are_convex():
    torch.manual_seed(0)
    module = SPEM(3)
    for _ in range(20):
        with torch.no_grad():
            module.mix_weight.normal_(std=3.0)
        weights = module.mixing_weights()
        assert torch.all(weights >= 0)
        torch.testing.assert_close(weights.sum(), torch.tensor(1.0))


def test_mixing_weights_zero_vector_is_finite():
    module = SPEM(3)
    with torch.no_grad():
        module.mix_weight.zero_()
    assert torch.isfinite(module.mixing_weights()).all()


def test_mix_equals_affine_of_convex_pooling():
    module = _randomised()
    x = torch.randn(3, 4, 6, 5)
    weights = module.mixing_weights()
    convex = weights[0] * x.amax(dim=(2, 3), keepdim=True) + weights[1] * x.amin(dim=(2, 3), keepdim=True)
    expected = module.pool_affine.weight * convex + module.pool_affine.bias
    torch.testing.assert_close(module.mix(x), expected)


def test_first_gate_factor_is_midrange_gate():
    module = _randomised()
    x = torch.randn(2, 4, 3, 3)
    max_mapped, min_mapped = module.pooled(x)
    total = x.amax(dim=(2, 3), keepdim=True) + x.amin(dim=(2, 3), keepdim=True)
    expected = module.pool_affine.weight * total + 2 * module.pool_affine.bias
    torch.testing.assert_close(max_mapped + min_mapped, expected)


def test_global_min_pool_matches_amin():
    x = torch.randn(2, 5, 7, 3)
    assert torch.equal(global_min_pool(x), x.amin(dim=(2, 3), keepdim=True))


def test_output_shape_and_dtype():
    x = torch.randn(2, 16, 8, 8, dtype=torch.float64)
    out = SPEM(16, dtype=torch.float64)(x)
    assert out.shape == x.shape
    assert out.dtype == torch.float64


def test_aux_loss_value():
    module = SPEM(4)
    torch.testing.assert_close(module.aux_loss(), torch.tensor(0.5))
    with torch.no_grad():
        module.mix_weight.copy_(torch.tensor([3.0, -4.0]))
    torch.testing.assert_close(module.aux_loss(), torch.tensor(25.0))


def test_resnet164_aux_loss_at_init():
    model = create_cifar_resnet("cifar_resnet164", num_classes=100, attn_layer="spem")
    assert len(model.attention_modules()) == 54
    torch.testing.assert_close(model.aux_loss(), torch.tensor(27.0))


def test_gradients_reach_every_parameter():
    module = _randomised()
    x = torch.randn(2, 4, 5, 5)
    assert_all_parameters_get_gradients(module, module(x).square().mean())
    for name, parameter in module.named_parameters():
        assert parameter.grad.abs().sum() > 0, name


def test_gradients_in_network():
    torch.manual_seed(0)
    model = create_cifar_resnet("cifar_resnet_test", attn_layer="spem")
    loss = model(torch.randn(2, 3, 32, 32)).logsumexp(dim=1).mean() + 0.1 * model.aux_loss()
    assert_all_parameters_get_gradients(model, loss)


def test_penalty_step_changes_only_mixing_weights():
    torch.manual_seed(0)
    model = create_cifar_resnet("cifar_resnet_test", attn_layer="spem")
    before = snapshot_parameters(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.aux_loss().backward()
    optimizer.step()
    assert_only_changed(before, model, lambda name: name.endswith("attn.mix_weight"))
    torch.testing.assert_close(model.layer1[0].attn.mix_weight, torch.tensor([0.4, 0.4]))


def test_save_load_identity(tmp_path):
    torch.manual_seed(0)
    model = create_cifar_resnet("cifar_resnet_test", attn_layer="spem")
    for module in model.attention_modules():
        with torch.no_grad():
            for parameter in module.parameters():
                parameter.normal_()
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    save_checkpoint(tmp_path / "ckpt", model=model)
    torch.manual_seed(1)
    restored = create_cifar_resnet("cifar_resnet_test", attn_layer="spem").eval()
    load_model_weights(restored, tmp_path / "ckpt")
    assert torch.equal(model(x), restored(x))


def test_registered_name():
    assert ATTENTION.get("spem") is SPEM
    assert resolve_attention("spem") is SPEM


def test_timm_attn_layer():
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=5, block_args={"attn_layer": SPEM})
    modules = [m for m in model.modules() if isinstance(m, SPEM)]
    assert len(modules) == 8
    assert model.layer4[0].se.channels == 512
    assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 5)


def test_timm_create_attn_passes_factory_keywords():
    from timm.layers import create_attn

    module = create_attn(SPEM, 32, device="cpu", dtype=torch.float64)
    assert isinstance(module, SPEM)
    assert module.mix_weight.dtype == torch.float64


def test_torchvision_resnet():
    torch.manual_seed(0)
    model = attach_attention_torchvision(ResNet(BasicBlock, [1, 1, 1, 1], num_classes=3), "spem")
    assert isinstance(model.layer2[0].bn2[1], SPEM)
    assert model.layer2[0].bn2[1].channels == 128
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)


@pytest.mark.parametrize("channels", [0, -3, 2.5, True, "64"])
def test_bad_channel_count_rejected(channels):
    with pytest.raises(ValueError, match="positive integer channel count"):
        SPEM(channels)


def test_wrong_input_channels_rejected():
    with pytest.raises(ValueError, match=r"built for 8 channels.*got shape \(1, 4, 3, 3\)"):
        SPEM(8)(torch.zeros(1, 4, 3, 3))
    with pytest.raises(ValueError, match="expects a"):
        SPEM(8)(torch.zeros(8, 3, 3))


def test_module_is_nn_module_with_repr():
    module = SPEM(4)
    assert isinstance(module, nn.Module)
    assert "4" in repr(module)
