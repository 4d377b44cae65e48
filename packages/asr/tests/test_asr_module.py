"""Tests of the ASR modules: equations, initial values, fold/unfold, gradients and timm integration."""

import pytest
import timm
import torch
from timm.layers import SEModule, create_attn
from torch import nn

from asr import ASR, DEFAULT_INIT_VALUE, ASRBatchNorm2d, ASRWithAttention
from qcore.testing import assert_all_parameters_get_gradients
from qcore.vision.attention import ATTENTION, SqueezeExcite


def _perturb(module: nn.Module, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator))


def test_psi_starts_at_one_tenth():
    module = ASR(64)
    assert DEFAULT_INIT_VALUE == 0.1
    assert module.psi.shape == (1, 64, 1, 1)
    assert torch.all(module.psi == 0.1)


def test_scale_equals_hand_computed_se_of_psi():
    torch.manual_seed(0)
    module = ASR(32)
    _perturb(module)
    se = module.attention
    psi = module.psi.reshape(1, 32)
    hidden = torch.relu(psi @ se.fc1.weight.T + se.fc1.bias)
    expected = torch.sigmoid(hidden @ se.fc2.weight.T + se.fc2.bias).reshape(1, 32, 1, 1)
    torch.testing.assert_close(module.scale(), expected)
    x = torch.randn(3, 32, 5, 4)
    torch.testing.assert_close(module(x), x * expected)


def test_inner_se_has_official_width():
    assert ASR(64).attention.rd_channels == 4
    assert ASR(256).attention.rd_channels == 16


def test_scale_is_same_for_every_input():
    module = ASR(16)
    x = torch.randn(4, 16, 3, 3)
    output = module(x)
    ratio = output / x
    torch.testing.assert_close(ratio, ratio[:1].expand_as(ratio))


def test_gradients_reach_psi_and_inner_se():
    module = ASR(16)
    loss = module(torch.randn(2, 16, 4, 4)).square().sum()
    assert_all_parameters_get_gradients(module, loss)


def test_fold_caches_scale_and_unfold_restores():
    torch.manual_seed(0)
    module = ASR(16)
    _perturb(module)
    x = torch.randn(2, 16, 3, 3)
    before = module(x)
    module.fold()
    assert module.is_folded
    torch.testing.assert_close(module(x), before)
    assert module.folded_scale.grad_fn is None
    module.unfold()
    assert not module.is_folded
    module(x).sum().backward()
    assert module.psi.grad is not None


def test_chain_applies_asr_then_se():
    torch.manual_seed(0)
    module = ASRWithAttention(32)
    _perturb(module)
    x = torch.randn(2, 32, 4, 4)
    scaled = x * module.asr.scale()
    expected = scaled * module.attention.gate(scaled)
    torch.testing.assert_close(module(x), expected)
    assert_all_parameters_get_gradients(module, module(x).square().sum())


def test_any_registered_module_with_gate_can_be_inner():
    module = ASR(16, attention=SqueezeExcite, attention_kwargs={"rd_channels": 2})
    assert module.attention.rd_channels == 2
    assert isinstance(ASR(16, attention="se").attention, SqueezeExcite)


def test_inner_module_without_gate_is_rejected():
    with pytest.raises(TypeError, match="no gate"):
        ASR(16, attention=lambda channels, **kwargs: nn.Identity())


def test_unknown_inner_name_lists_valid_names():
    with pytest.raises(ValueError, match="se"):
        ASR(16, attention="squeeze")


def test_no_attention_is_rejected():
    with pytest.raises(ValueError, match="needs an attention module"):
        ASR(16, attention=None)


def test_bad_channels_are_rejected():
    with pytest.raises(ValueError, match="positive integer"):
        ASR(0)


def test_wrong_input_shape_is_rejected():
    with pytest.raises(ValueError, match=r"\(B, 16, H, W\)"):
        ASR(16)(torch.randn(2, 8, 3, 3))


def test_registered_names():
    assert ATTENTION.get("asr") is ASR
    assert ATTENTION.get("asr_se") is ASRWithAttention


def test_batchnorm_form_fold_scales_affine():
    torch.manual_seed(0)
    module = ASRBatchNorm2d(16)
    _perturb(module)
    module.train()
    module(torch.randn(8, 16, 4, 4))
    module.fold()
    value = module.asr.scale().reshape(-1)
    torch.testing.assert_close(module.fused_bn.weight, module.bn.weight * value)
    torch.testing.assert_close(module.fused_bn.bias, module.bn.bias * value)
    assert module.fused_bn.running_mean is module.bn.running_mean
    assert module.fused_bn.running_var is module.bn.running_var
    assert module.fused_bn.eps == module.bn.eps


def test_batchnorm_form_eval_outputs_match_after_fold():
    torch.manual_seed(0)
    module = ASRBatchNorm2d(16)
    _perturb(module)
    module.train()
    module(torch.randn(8, 16, 4, 4))
    module.eval()
    x = torch.randn(3, 16, 4, 4)
    before = module(x)
    module.fold()
    torch.testing.assert_close(module(x), before, atol=1e-5, rtol=1e-5)


def test_batchnorm_form_unfold_restores_training_outputs():
    torch.manual_seed(0)
    module = ASRBatchNorm2d(16)
    _perturb(module)
    x = torch.randn(4, 16, 3, 3)
    module.train()
    before = module(x)
    module.fold()
    module.unfold()
    assert module.fused_bn is None
    torch.testing.assert_close(module(x), before, atol=0, rtol=0)


def test_batchnorm_form_has_no_fused_parameters_before_fold():
    module = ASRBatchNorm2d(16)
    names = {name for name, _ in module.named_parameters()}
    assert not any(name.startswith("fused_bn") for name in names)


def test_batchnorm_form_delete_removes_training_parts():
    module = ASRBatchNorm2d(16)
    module.fold(delete=True)
    assert module.bn is None
    assert module.asr is None
    assert sum(p.numel() for p in module.parameters()) == 32
    with pytest.raises(RuntimeError, match="delete=True"):
        module.unfold()


def test_timm_create_attn_builds_asr():
    module = create_attn(ASR, 64, device="cpu", dtype=torch.float32)
    assert isinstance(module, ASR)
    assert module(torch.randn(2, 64, 3, 3)).shape == (2, 64, 3, 3)


@pytest.mark.parametrize("attn_layer", [ASR, ASRWithAttention])
def test_timm_bottleneck_runs_with_asr(attn_layer):
    model = timm.create_model(
        "resnet50", num_classes=5, block_args={"attn_layer": attn_layer}, zero_init_last=False
    )
    assert isinstance(model.layer1[0].se, attn_layer)
    output = model(torch.randn(2, 3, 32, 32))
    assert output.shape == (2, 5)
    assert torch.isfinite(output).all()


def test_state_dict_round_trip_gives_identical_outputs():
    torch.manual_seed(0)
    module = ASRWithAttention(16)
    _perturb(module)
    copy = ASRWithAttention(16)
    copy.load_state_dict(module.state_dict())
    x = torch.randn(2, 16, 3, 3)
    torch.testing.assert_close(copy(x), module(x), atol=0, rtol=0)


def test_timm_se_module_is_rejected_as_inner():
    # timm's SEModule keeps its sigmoid layer under the name ``gate``; that is not a gate(x) method.
    with pytest.raises(TypeError, match="no gate"):
        ASR(16, attention=SEModule)
