"""Tests of qcore.vision.attention: SE, channel affine, spec resolution, aux-loss collection."""

from __future__ import annotations

import functools

import pytest
import torch
from timm.models.resnet import Bottleneck, ResNet
from torch import nn

from qcore.registry import UnknownNameError
from qcore.testing import assert_all_parameters_get_gradients
from qcore.vision.attention import (
    ATTENTION,
    ChannelAffine,
    SqueezeExcite,
    attention_name,
    collect_aux_loss,
    resolve_attention,
)
from qcore.vision.resnet import create_cifar_resnet


class _PenaltyAttention(nn.Module):
    """Gate p₀ + p₁ (1 at init) with aux loss ‖p‖², for testing aux-loss collection."""

    def __init__(self, channels: int, *, device=None, dtype=None) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.full((2,), 0.5, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (self.p.sum())

    def aux_loss(self) -> torch.Tensor:
        return (self.p**2).sum()


@pytest.mark.parametrize(("channels", "reduced"), [(64, 4), (128, 8), (256, 16), (16, 1)])
def test_se_reduced_width(channels, reduced):
    assert SqueezeExcite(channels).rd_channels == reduced


def test_se_matches_hand_computation():
    torch.manual_seed(0)
    se = SqueezeExcite(32, reduction=4)
    x = torch.randn(2, 32, 5, 5)
    pooled = x.mean(dim=(2, 3))
    hidden = torch.relu(pooled @ se.fc1.weight.T + se.fc1.bias)
    logits = hidden @ se.fc2.weight.T + se.fc2.bias
    gate = torch.sigmoid(logits).view(2, 32, 1, 1)
    torch.testing.assert_close(se.excitation_logits(x), logits.view(2, 32, 1, 1))
    torch.testing.assert_close(se.gate(x), gate)
    torch.testing.assert_close(se(x), x * gate)
    assert se.gate(x).shape == (2, 32, 1, 1)


def test_se_rejects_bad_arguments():
    with pytest.raises(ValueError, match="positive integer channel count"):
        SqueezeExcite(0)
    with pytest.raises(ValueError, match="reduction"):
        SqueezeExcite(16, reduction=0)
    with pytest.raises(ValueError, match="rd_channels"):
        SqueezeExcite(16, rd_channels=-1)


def test_channel_affine_init_and_values():
    affine = ChannelAffine(3, weight_init=0.5, bias_init=-0.5)
    assert torch.equal(affine.weight, torch.full((1, 3, 1, 1), 0.5))
    assert torch.equal(affine.bias, torch.full((1, 3, 1, 1), -0.5))
    with torch.no_grad():
        affine.weight.copy_(torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1))
    x = torch.ones(1, 3, 2, 2)
    expected = torch.tensor([0.5, 1.5, 2.5]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    torch.testing.assert_close(affine(x), expected)
    affine.reset_parameters()
    assert torch.equal(affine.weight, torch.full((1, 3, 1, 1), 0.5))


def test_channel_affine_rejects_wrong_channels():
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        ChannelAffine(3, weight_init=0.0, bias_init=-1.0)(torch.zeros(1, 4, 1, 1))


def test_resolve_attention_kinds():
    assert resolve_attention(None) is None
    assert resolve_attention(False) is None
    assert resolve_attention("none") is None
    assert resolve_attention("se") is SqueezeExcite
    assert resolve_attention(True) is SqueezeExcite
    assert resolve_attention(SqueezeExcite) is SqueezeExcite
    factory = resolve_attention("se", reduction=4)
    assert isinstance(factory, functools.partial)
    assert factory(64).rd_channels == 16
    assert attention_name(None) == "none"
    assert attention_name(SqueezeExcite) == "SqueezeExcite"
    assert "se" in ATTENTION


def test_resolve_attention_errors():
    with pytest.raises(UnknownNameError, match="Valid names"):
        resolve_attention("sse")
    with pytest.raises(TypeError, match="module instance"):
        resolve_attention(SqueezeExcite(16))
    with pytest.raises(TypeError, match="registered name"):
        resolve_attention(3)


def test_se_as_timm_attn_layer():
    torch.manual_seed(0)
    model = ResNet(
        block=Bottleneck,
        layers=[1, 1, 1, 1],
        num_classes=5,
        zero_init_last=False,
        block_args={"attn_layer": functools.partial(SqueezeExcite, reduction=16)},
    )
    assert isinstance(model.layer1[0].se, SqueezeExcite)
    assert model.layer1[0].se.rd_channels == 16
    out = model.eval()(torch.randn(1, 3, 32, 32))
    assert out.shape == (1, 5)


def test_collect_aux_loss_counts_each_module_once():
    model = create_cifar_resnet("cifar_resnet_test", attn_layer=_PenaltyAttention)
    expected = torch.tensor(3 * 0.5)
    torch.testing.assert_close(model.aux_loss(), expected)
    torch.testing.assert_close(collect_aux_loss(model), expected)
    wrapper = nn.Sequential(model)
    torch.testing.assert_close(collect_aux_loss(wrapper), expected)
    assert collect_aux_loss(create_cifar_resnet("cifar_resnet_test")) is None


def test_se_gradients_reach_parameters():
    se = SqueezeExcite(16, reduction=4)
    x = torch.randn(2, 16, 4, 4)
    assert_all_parameters_get_gradients(se, se(x).square().mean())


def test_se_through_timm_create_attn():
    from timm.layers import create_attn

    module = create_attn(SqueezeExcite, 64, device="cpu", dtype=torch.float64)
    assert isinstance(module, SqueezeExcite)
    assert module.fc1.weight.dtype == torch.float64
    x = torch.randn(2, 64, 4, 4, dtype=torch.float64)
    assert module(x).shape == x.shape
