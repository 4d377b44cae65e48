"""Tests of RAS inside CIFAR ResNets, timm ResNets and torchvision ResNets."""

import pytest
import timm
import torch
import torchvision
from timm.layers import create_attn
from torch import nn

from qcore.checkpoint import load_model_weights, save_checkpoint
from qcore.testing import assert_all_parameters_get_gradients
from qcore.vision.attention import ATTENTION
from qcore.vision.resnet import CifarResNet, create_cifar_resnet
from ras import RAS, attach_ras_torchvision, create_ras_resnet


def test_registered_name_builds_in_every_block():
    assert "ras" in ATTENTION
    model = CifarResNet(20, block="bottleneck", num_classes=3, attn_layer="ras")
    modules = model.attention_modules()
    assert len(modules) == 6
    assert all(isinstance(m, RAS) and m.steps == 2 for m in modules)
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 3)


def test_official_init_survives_network_init():
    model = create_ras_resnet("cifar_resnet_test")
    for module in model.attention_modules():
        assert torch.all(module.affine.weight == 0)
        assert torch.all(module.affine.bias == -1)
        assert torch.all(module.norms[0].weight == 1)
        assert torch.all(module.norms[0].bias == 0)


def test_resnet164_parameter_count():
    # Plain ResNet-164 (100 classes) has 1,727,284 parameters; each block adds w, b and BN's γ, β: 4·C.
    model = create_ras_resnet("cifar_resnet164", num_classes=100)
    extra = 18 * 4 * (64 + 128 + 256)
    assert sum(p.numel() for p in model.parameters()) == 1_727_284 + extra


def test_empty_stage_set_equals_plain_resnet():
    torch.manual_seed(0)
    plain = create_cifar_resnet("cifar_resnet_test")
    torch.manual_seed(0)
    model = create_ras_resnet("cifar_resnet_test", stages=[])
    plain.eval()
    model.eval()
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(model(x), plain(x), rtol=0, atol=0)


def test_gradients_reach_every_parameter_with_live_weight():
    torch.manual_seed(0)
    model = create_ras_resnet("cifar_resnet_test", num_classes=4, weight_init=0.1, steps=3)
    loss = nn.functional.cross_entropy(model(torch.randn(4, 3, 16, 16)), torch.tensor([0, 1, 2, 3]))
    assert_all_parameters_get_gradients(model, loss)


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = create_ras_resnet("cifar_resnet_test", num_classes=4, weight_init=0.3)
    model.train()
    model(torch.randn(4, 3, 16, 16))
    model.eval()
    save_checkpoint(tmp_path / "ckpt", model=model)
    restored = create_ras_resnet("cifar_resnet_test", num_classes=4)
    load_model_weights(restored, tmp_path / "ckpt")
    restored.eval()
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(restored(x), model(x), rtol=0, atol=0)


def test_timm_create_attn_and_resnet():
    module = create_attn(RAS, 64, device="cpu", dtype=torch.float32)
    assert isinstance(module, RAS)
    model = timm.create_model(
        "resnet26", pretrained=False, num_classes=5, block_args={"attn_layer": RAS}, zero_init_last=False
    )
    assert sum(isinstance(m, RAS) for m in model.modules()) == 8
    model.eval()
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 5)


def test_torchvision_resnet():
    model = attach_ras_torchvision(torchvision.models.resnet18(num_classes=3))
    assert sum(isinstance(m, RAS) for m in model.modules()) == 8
    model.eval()
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)


@pytest.mark.parametrize("steps", [1, 3])
def test_other_step_counts_build(steps):
    model = create_ras_resnet("cifar_resnet_test", steps=steps, num_classes=2)
    assert all(len(m.norms) == steps - 1 for m in model.attention_modules())
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 2)
