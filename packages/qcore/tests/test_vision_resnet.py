"""Tests of the CIFAR ResNet backbone and the torchvision helper."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from qcore.bench import count_parameters
from qcore.testing import assert_all_parameters_get_gradients
from qcore.vision.attention import SqueezeExcite
from qcore.vision.resnet import (
    CIFAR_RESNETS,
    CifarResNet,
    attach_attention_torchvision,
    create_cifar_resnet,
)


@pytest.mark.parametrize(("num_classes", "expected"), [(100, 1_727_284), (10, 1_704_154)])
def test_resnet164_parameter_count(num_classes, expected):
    model = create_cifar_resnet("cifar_resnet164", num_classes=num_classes)
    assert count_parameters(model) == expected


@pytest.mark.parametrize(
    ("name", "block", "out_channels"),
    [("cifar_resnet_test", "bottleneck", 256), ("cifar_resnet8", "basic", 64)],
)
def test_output_shape_and_backward(name, block, out_channels):
    torch.manual_seed(0)
    model = create_cifar_resnet(name, num_classes=7, attn_layer="se")
    assert model.block_name == block
    assert model.fc.in_features == out_channels
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 7)
    assert model.forward_features(x).shape == (2, out_channels, 8, 8)
    assert_all_parameters_get_gradients(model, out.logsumexp(dim=1).mean())


@pytest.mark.parametrize(
    "name", [n for n in CIFAR_RESNETS.names() if n not in ("cifar_resnet110", "cifar_resnet164")]
)
def test_named_models_run(name):
    model = create_cifar_resnet(name, num_classes=10)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize(
    ("depth", "block", "blocks"), [(164, "bottleneck", 54), (29, "bottleneck", 9), (56, "basic", 27)]
)
def test_depth_gives_block_count(depth, block, blocks):
    model = CifarResNet(depth, block=block)
    assert len(model.residual_blocks()) == blocks


@pytest.mark.parametrize(
    ("depth", "block"), [(21, "bottleneck"), (29, "basic"), (2, "basic"), (0, "bottleneck")]
)
def test_invalid_depth_lists_examples(depth, block):
    with pytest.raises(ValueError, match="for example"):
        CifarResNet(depth, block=block)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="block"):
        CifarResNet(20, block="preact")
    with pytest.raises(ValueError, match="attn_stages"):
        CifarResNet(20, block="basic", attn_stages=[3])
    with pytest.raises(ValueError, match="not both"):
        CifarResNet(20, block="basic", attn_layer="se", attn_factory=lambda c, s, b: None)


def test_empty_stage_mask_equals_plain():
    torch.manual_seed(0)
    plain = create_cifar_resnet("cifar_resnet_test")
    torch.manual_seed(0)
    masked = create_cifar_resnet("cifar_resnet_test", attn_layer="se", attn_stages=[])
    assert masked.attention_modules() == []
    plain_state, masked_state = plain.state_dict(), masked.state_dict()
    assert plain_state.keys() == masked_state.keys()
    for key in plain_state:
        assert torch.equal(plain_state[key], masked_state[key]), key
    x = torch.randn(2, 3, 32, 32)
    plain.eval()
    masked.eval()
    torch.testing.assert_close(plain(x), masked(x), rtol=0, atol=0)


def test_stage_mask_places_attention():
    model = create_cifar_resnet("cifar_resnet29", attn_layer="se", attn_stages=[2])
    for stage, layer in enumerate((model.layer1, model.layer2, model.layer3)):
        for block in layer:
            assert isinstance(block.attn, SqueezeExcite) == (stage == 2)
    assert [m.channels for m in model.attention_modules()] == [256, 256, 256]


def test_attn_factory_gets_position():
    calls = []

    def factory(channels, stage_index, block_index):
        calls.append((channels, stage_index, block_index))
        return SqueezeExcite(channels) if block_index == 0 else None

    model = CifarResNet(20, block="basic", attn_factory=factory)
    assert calls == [(16 * (2**s), s, b) for s in range(3) for b in range(3)]
    assert len(model.attention_modules()) == 3


def test_attention_sits_before_residual_add():
    class Zero(nn.Module):
        def __init__(self, channels, **kwargs):
            super().__init__()

        def forward(self, x):
            return torch.zeros_like(x)

    model = create_cifar_resnet("cifar_resnet8", attn_layer=Zero).eval()
    block = model.layer1[0]
    x = torch.randn(1, 16, 8, 8)
    # With a zero gate the residual branch vanishes and the block is ReLU(identity shortcut).
    torch.testing.assert_close(block(x), torch.relu(x))


def test_last_norm_factory_replaces_bn():
    model = create_cifar_resnet("cifar_resnet_test", last_norm_factory=lambda c, s, b: nn.Identity())
    assert all(isinstance(block.bn3, nn.Identity) for block in model.residual_blocks())


def test_official_init():
    torch.manual_seed(0)
    model = create_cifar_resnet("cifar_resnet164", attn_layer="se")
    conv = model.layer3[5].conv2
    expected_std = math.sqrt(2.0 / (3 * 3 * conv.out_channels))
    assert abs(conv.weight.std().item() - expected_std) < 0.1 * expected_std
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert torch.all(module.weight == 1)
            assert torch.all(module.bias == 0)
    fc_bound = 1 / math.sqrt(model.fc.in_features)
    assert model.fc.weight.abs().max() <= fc_bound


@pytest.mark.parametrize(("block", "attribute", "count"), [(BasicBlock, "bn2", 4), (Bottleneck, "bn3", 4)])
def test_attach_attention_torchvision(block, attribute, count):
    torch.manual_seed(0)
    model = attach_attention_torchvision(ResNet(block, [1, 1, 1, 1], num_classes=3), "se")
    wrapped = [m for m in model.modules() if isinstance(m, SqueezeExcite)]
    assert len(wrapped) == count
    first_block = model.layer1[0]
    norm = getattr(first_block, attribute)
    assert isinstance(norm, nn.Sequential)
    assert isinstance(norm[0], nn.BatchNorm2d)
    assert norm[1].channels == norm[0].num_features
    assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 3)


def test_attach_attention_torchvision_errors():
    with pytest.raises(ValueError, match="needs an attention spec"):
        attach_attention_torchvision(ResNet(BasicBlock, [1, 1, 1, 1]), None)
    with pytest.raises(ValueError, match="no torchvision BasicBlock"):
        attach_attention_torchvision(nn.Sequential(nn.Conv2d(3, 3, 1)), "se")
