"""Shapes, fusion and gradients of DWSRNet and DWSRRecognitionNet."""

from __future__ import annotations

import pytest
import torch
from basicsr.archs import build_network
from basicsr.utils.registry import ARCH_REGISTRY

from dwsr.archs import DWSRNet, DWSRRecognitionNet, fuse_ways


def _tiny(upscale: int = 2, **overrides) -> DWSRNet:
    kwargs = dict(num_feat=8, num_block=1, upscale=upscale, num_feat_recognition=4, num_block_recognition=1)
    kwargs.update(overrides)
    return DWSRNet(**kwargs)


@pytest.mark.parametrize("upscale", [2, 3, 4])
def test_output_shapes_per_scale(upscale):
    torch.manual_seed(0)
    network = _tiny(upscale)
    x = torch.rand(2, 3, 7, 9)
    outputs = network.forward_ways(x)
    expected = (2, 3, 7 * upscale, 9 * upscale)
    assert outputs.output.shape == expected
    assert outputs.easy.shape == expected
    assert outputs.hard.shape == expected
    assert outputs.mask.shape == (2, 1, 7 * upscale, 9 * upscale)
    assert network(x).shape == expected


@pytest.mark.parametrize("mask_resolution", ["hr", "lr"])
def test_mask_range_and_resolution(mask_resolution):
    torch.manual_seed(0)
    network = _tiny(3, mask_resolution=mask_resolution)
    outputs = network.forward_ways(torch.rand(1, 3, 5, 6))
    assert outputs.mask.shape == (1, 1, 15, 18)
    assert float(outputs.mask.detach().min()) >= 0.0
    assert float(outputs.mask.detach().max()) <= 1.0
    logits_size = (15, 18) if mask_resolution == "hr" else (5, 6)
    assert tuple(outputs.mask_logits.shape[-2:]) == logits_size


def test_lr_mask_is_constant_per_block():
    torch.manual_seed(0)
    network = _tiny(2, mask_resolution="lr")
    mask = network.forward_ways(torch.rand(1, 3, 4, 4)).mask[0, 0]
    blocks = mask.unfold(0, 2, 2).unfold(1, 2, 2)
    assert torch.equal(blocks.amax(dim=(-1, -2)), blocks.amin(dim=(-1, -2)))


def test_fusion_follows_forced_mask():
    torch.manual_seed(0)
    network = _tiny(2).eval()
    x = torch.rand(2, 3, 6, 6)
    zeros = torch.zeros(2, 1, 12, 12)
    ones = torch.ones(2, 1, 12, 12)
    with torch.no_grad():
        on_zero = network.forward_ways(x, mask=zeros)
        on_one = network.forward_ways(x, mask=ones)
    assert torch.equal(on_zero.output, on_zero.easy)
    assert torch.equal(on_one.output, on_one.hard)
    assert not torch.allclose(on_zero.easy, on_zero.hard)


def test_fusion_mixed_mask_picks_per_pixel():
    easy = torch.full((1, 3, 2, 2), 0.25)
    hard = torch.full((1, 3, 2, 2), 0.75)
    mask = torch.tensor([[[[0.0, 1.0], [0.5, 0.0]]]])
    fused = fuse_ways(easy, hard, mask)
    expected = torch.tensor([[0.25, 0.75], [0.5, 0.25]]).expand(1, 3, 2, 2)
    assert torch.equal(fused, expected)


def test_hard_mask_binary_with_gradients():
    torch.manual_seed(0)
    network = _tiny(2, mask_mode="hard")
    x = torch.rand(1, 3, 4, 4)
    network.eval()
    with torch.no_grad():
        mask = network.forward_ways(x).mask
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    network.train()
    network.forward_ways(x).output.sum().backward()
    assert network.recognition.conv_last.weight.grad is not None
    assert network.recognition.conv_last.weight.grad.abs().sum() > 0


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    network = _tiny(2)
    outputs = network.forward_ways(torch.rand(2, 3, 5, 5))
    loss = outputs.output.mean() + outputs.easy.mean() + outputs.hard.mean() + outputs.mask_logits.mean()
    loss.backward()
    missing = [name for name, p in network.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


def test_shared_head_counts_once():
    separate = _tiny(2)
    shared = _tiny(2, shared_head=True)
    head = sum(p.numel() for p in separate.easy_way.conv_first.parameters())
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert count(separate) - count(shared) == head
    assert shared.easy_way.conv_first is shared.hard_way.conv_first


def test_msrresnet_ways_build():
    network = _tiny(4, way_type="MSRResNet")
    assert network(torch.rand(1, 3, 4, 4)).shape == (1, 3, 16, 16)


@pytest.mark.parametrize(
    ("option", "value"),
    [("upscale", 5), ("mask_mode", "binary"), ("mask_resolution", "mid"), ("way_type", "RCAN")],
)
def test_invalid_options_raise(option, value):
    with pytest.raises(ValueError, match=option):
        _tiny(**{option: value})


def test_registered_under_own_names():
    assert ARCH_REGISTRY.get("DWSRNet") is DWSRNet
    assert ARCH_REGISTRY.get("DWSRRecognitionNet") is DWSRRecognitionNet
    network = build_network({"type": "DWSRNet", "num_feat": 4, "num_block": 1, "upscale": 2})
    assert isinstance(network, DWSRNet)


def test_recognition_net_logit_shape():
    network = DWSRRecognitionNet(num_feat=4, num_block=1, upscale=3)
    assert network(torch.rand(2, 3, 5, 4)).shape == (2, 1, 15, 12)


def test_skipped_parts_are_none():
    network = _tiny(2)
    x = torch.rand(1, 3, 4, 4)
    only_mask = network.forward_ways(x, run_ways=False)
    assert only_mask.output is None
    assert only_mask.easy is None
    assert only_mask.mask.shape == (1, 1, 8, 8)
    only_ways = network.forward_ways(x, torch.zeros(1, 1, 8, 8), run_recognition=False)
    assert only_ways.mask is None
    assert torch.equal(only_ways.output, only_ways.easy)
    with pytest.raises(ValueError, match="pass a mask"):
        network.forward_ways(x, run_recognition=False)


def test_forward_return_all_matches_forward_ways():
    torch.manual_seed(0)
    network = _tiny(2).eval()
    x = torch.rand(1, 3, 4, 4)
    with torch.no_grad():
        everything = network(x, return_all=True)
        assert torch.equal(everything.output, network(x))


def test_wrong_mask_size_raises():
    network = _tiny(2)
    with pytest.raises(ValueError, match="output resolution"):
        network.forward_ways(torch.rand(1, 3, 4, 4), torch.zeros(1, 1, 4, 4))
