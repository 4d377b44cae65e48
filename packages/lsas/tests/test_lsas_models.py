"""Tests of LSAS inside CIFAR ResNets, timm ResNets and torchvision ResNets."""

import functools

import pytest
import timm
import torch
import torchvision
from timm.layers import create_attn
from torch import nn

from lsas import LSAS, LSAS_VARIANTS, attach_lsas_torchvision, create_lsas_resnet
from qcore.checkpoint import load_model_weights, save_checkpoint
from qcore.testing import assert_all_parameters_get_gradients
from qcore.vision.attention import ATTENTION
from qcore.vision.resnet import CifarResNet, create_cifar_resnet


def _lsas_blocks(model: CifarResNet) -> list[tuple[int, int]]:
    found = []
    for stage_index in range(3):
        for block_index, block in enumerate(getattr(model, f"layer{stage_index + 1}")):
            if isinstance(block.attn, LSAS):
                found.append((stage_index, block_index))
    return found


def test_default_stages_place_lsas_in_stage_three_only():
    model = create_lsas_resnet("cifar_resnet29")
    assert _lsas_blocks(model) == [(2, 0), (2, 1), (2, 2)]
    for block in [*model.layer1, *model.layer2]:
        assert isinstance(block.attn, nn.Identity)


def test_all_stages_option():
    model = create_lsas_resnet("cifar_resnet29", stages="all", order=2)
    assert len(_lsas_blocks(model)) == 9
    assert all(module.order == 2 for module in model.attention_modules())
    assert [m.channels for m in model.attention_modules()][::3] == [64, 128, 256]


def test_invalid_stages_are_rejected():
    with pytest.raises(ValueError, match="official"):
        create_lsas_resnet("cifar_resnet_test", stages="last")
    with pytest.raises(ValueError, match=r"\[3\]"):
        create_lsas_resnet("cifar_resnet_test", stages=[3])


def test_empty_stage_set_equals_plain_resnet():
    torch.manual_seed(0)
    plain = create_cifar_resnet("cifar_resnet_test")
    torch.manual_seed(0)
    model = create_lsas_resnet("cifar_resnet_test", stages=[])
    assert model.state_dict().keys() == plain.state_dict().keys()
    for name, value in plain.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0)
    x = torch.randn(2, 3, 16, 16)
    plain.eval()
    model.eval()
    torch.testing.assert_close(model(x), plain(x), rtol=0, atol=0)


def test_resnet164_parameter_count():
    # Plain ResNet-164 (100 classes) has 1,727,284 parameters; each of the 18 stage-3 blocks (C = 256) adds
    # SE (256·16 + 16 + 16·256 + 256 = 8,464) and one sub-attention step (2·256 = 512).
    model = create_lsas_resnet("cifar_resnet164", num_classes=100)
    assert sum(p.numel() for p in model.parameters()) == 1_727_284 + 18 * (8_464 + 512)


@pytest.mark.parametrize("name", list(LSAS_VARIANTS))
def test_registered_variant_builds_and_runs(name):
    assert name in ATTENTION
    model = CifarResNet(11, num_classes=3, attn_layer=name)
    modules = model.attention_modules()
    assert len(modules) == 3
    assert all(isinstance(m, LSAS) and m.order == LSAS_VARIANTS[name] for m in modules)
    logits = model(torch.randn(2, 3, 8, 8))
    assert logits.shape == (2, 3)
    logits.sum().backward()


def test_basic_block_network():
    model = create_lsas_resnet("cifar_resnet8", stages="all", num_classes=5)
    assert [m.channels for m in model.attention_modules()] == [16, 32, 64]
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 5)


def test_gradients_reach_every_parameter_of_network():
    torch.manual_seed(0)
    model = create_lsas_resnet("cifar_resnet_test", order=3, stages="all", num_classes=4)
    loss = nn.functional.cross_entropy(model(torch.randn(4, 3, 16, 16)), torch.tensor([0, 1, 2, 3]))
    assert_all_parameters_get_gradients(model, loss)


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = create_lsas_resnet("cifar_resnet_test", order=2, num_classes=4)
    with torch.no_grad():
        for module in model.attention_modules():
            for step in module.sub_attention:
                step.weight.uniform_(-1, 1)
    model.eval()
    save_checkpoint(tmp_path / "ckpt", model=model)
    restored = create_lsas_resnet("cifar_resnet_test", order=2, num_classes=4)
    load_model_weights(restored, tmp_path / "ckpt")
    restored.eval()
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(restored(x), model(x), rtol=0, atol=0)


def test_timm_create_attn():
    module = create_attn(LSAS, 64, device="cpu", dtype=torch.float32)
    assert isinstance(module, LSAS)
    x = torch.randn(2, 64, 4, 4)
    assert module(x).shape == x.shape


@pytest.mark.parametrize("architecture", ["resnet18", "resnet26"])
def test_timm_resnet_attn_layer(architecture):
    model = timm.create_model(
        architecture,
        pretrained=False,
        num_classes=7,
        block_args={"attn_layer": functools.partial(LSAS, order=2)},
        zero_init_last=False,
    )
    modules = [m for m in model.modules() if isinstance(m, LSAS)]
    assert len(modules) == 8
    model.eval()
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 7)


def test_torchvision_official_layers():
    model = torchvision.models.resnet18(num_classes=5)
    attach_lsas_torchvision(model)
    for number, expected in ((1, 0), (2, 0), (3, 2), (4, 2)):
        layer = getattr(model, f"layer{number}")
        assert sum(isinstance(m, LSAS) for m in layer.modules()) == expected
    model.eval()
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 5)


def test_torchvision_all_layers_and_bad_input():
    model = attach_lsas_torchvision(torchvision.models.resnet18(num_classes=2), layers="all", order=3)
    assert sum(isinstance(m, LSAS) for m in model.modules()) == 8
    with pytest.raises(ValueError, match="torchvision layers"):
        attach_lsas_torchvision(torchvision.models.resnet18(), layers=[5])
