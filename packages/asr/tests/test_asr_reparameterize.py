"""Tests of ASR re-parameterisation on every backbone family: outputs, size, FLOPs, state dict, export."""

import io
import warnings

import pytest
import torch
from torch import nn

from asr import (
    ASR,
    ASRBatchNorm2d,
    ASRWithAttention,
    count_asr_modules,
    install_asr_batchnorm,
    reparameterize,
)
from qcore.bench import count_flops, count_parameters
from qcore.vision.attention import SqueezeExcite
from qcore.vision.resnet import create_cifar_resnet

# Tiny members of each family run by default; the named ImageNet models run in the slow tests.
TINY_FAMILIES = [
    "cifar_bottleneck",
    "cifar_basic",
    "timm_bottleneck",
    "timm_basic",
    "tv_bottleneck",
    "tv_basic",
]
FULL_FAMILIES = ["timm_resnet18", "timm_resnet50", "tv_resnet18", "tv_resnet50"]
FORMS = ["asr", "asr_se", "asr_batchnorm"]


def _build_pair(form, family, backbone_builder, asr_batchnorm_builder, randomize):
    """Return (randomised ASR model, builder of the deployed backbone it must equal after folding)."""
    if form == "asr":
        model = backbone_builder(family, ASR)
        target = lambda: backbone_builder(family)  # noqa: E731
    elif form == "asr_se":
        model = backbone_builder(family, ASRWithAttention)
        target = lambda: backbone_builder(family, SqueezeExcite)  # noqa: E731
    else:
        model = asr_batchnorm_builder(family)
        target = lambda: backbone_builder(family)  # noqa: E731
    return randomize(model), target


def _check_fold_equals_backbone(family, form, backbone_builder, asr_batchnorm_builder, randomize):
    torch.manual_seed(0)
    model, build_target = _build_pair(form, family, backbone_builder, asr_batchnorm_builder, randomize)
    x = torch.randn(2, 3, 32, 32)
    assert count_asr_modules(model) > 0
    with torch.no_grad():
        before = model(x)

    reparameterize(model)
    assert count_asr_modules(model) == 0
    with torch.no_grad():
        after = model(x)
    torch.testing.assert_close(after, before, atol=1e-5 * before.abs().max().item(), rtol=1e-5)

    target = build_target().eval()
    assert count_parameters(model) == count_parameters(target)
    assert count_flops(model, x) == count_flops(target, x)
    folded_state = model.state_dict()
    target_state = target.state_dict()
    assert sorted(folded_state) == sorted(target_state)
    assert all(folded_state[key].shape == target_state[key].shape for key in target_state)

    target.load_state_dict(folded_state, strict=True)
    with torch.no_grad():
        reloaded = target(x)
    torch.testing.assert_close(reloaded, after, atol=0, rtol=0)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_folded_model_equals_backbone(family, form, backbone_builder, asr_batchnorm_builder, randomize):
    _check_fold_equals_backbone(family, form, backbone_builder, asr_batchnorm_builder, randomize)


@pytest.mark.slow
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("family", FULL_FAMILIES)
def test_named_model_folds_to_backbone(family, form, backbone_builder, asr_batchnorm_builder, randomize):
    _check_fold_equals_backbone(family, form, backbone_builder, asr_batchnorm_builder, randomize)


def test_resnet164_batchnorm_form_fold_count():
    model = create_cifar_resnet(
        "cifar_resnet164",
        num_classes=100,
        last_norm_factory=lambda channels, stage, block: ASRBatchNorm2d(channels),
    )
    plain = create_cifar_resnet("cifar_resnet164", num_classes=100)
    assert count_parameters(plain) == 1_727_284
    assert count_parameters(model) > count_parameters(plain)
    reparameterize(model)
    assert count_parameters(model) == 1_727_284


def test_resnet164_attention_slot_fold_count():
    model = create_cifar_resnet("cifar_resnet164", num_classes=10, attn_layer=ASR)
    reparameterize(model)
    assert count_parameters(model) == 1_704_154


def test_fold_into_convolution_keeps_outputs(backbone_builder, randomize):
    model = randomize(backbone_builder("cifar_bottleneck", ASR))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
    reparameterize(model, fuse_conv=True)
    with torch.no_grad():
        after = model(x)
    torch.testing.assert_close(after, before, atol=1e-5 * before.abs().max().item(), rtol=1e-5)
    block = model.layer1[0]
    assert isinstance(block.bn3, nn.Identity)
    assert block.conv3.bias is not None


def test_check_input_accepts_correct_fold(backbone_builder, randomize):
    model = randomize(backbone_builder("cifar_basic", ASRWithAttention))
    reparameterize(model, check_input=torch.randn(2, 3, 32, 32))
    assert count_asr_modules(model) == 0


def test_asr_without_preceding_batchnorm_is_rejected():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), ASR(8))
    with pytest.raises(ValueError, match="no BatchNorm2d precedes"):
        reparameterize(model)


class _ShiftedBlock(nn.Module):
    """Adds a constant between the BN and ASR, so folding into the BN changes the function."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(8)
        self.asr = ASR(8)

    def forward(self, x):
        return self.asr(self.bn(x) + 1.0)


def test_check_input_detects_wrong_position():
    torch.manual_seed(0)
    model = _ShiftedBlock().eval()
    with pytest.raises(RuntimeError, match="differs from the original"):
        reparameterize(model, check_input=torch.randn(2, 8, 4, 4))


def test_reparameterize_without_asr_leaves_model_unchanged(backbone_builder):
    model = backbone_builder("cifar_basic")
    state = {key: value.clone() for key, value in model.state_dict().items()}
    reparameterize(model)
    assert all(torch.equal(model.state_dict()[key], value) for key, value in state.items())


@pytest.mark.parametrize("family", ["cifar_bottleneck", "timm_bottleneck", "tv_basic"])
def test_folded_model_exports_with_torch_export(family, backbone_builder, randomize):
    model = reparameterize(randomize(backbone_builder(family, ASR)))
    x = torch.randn(2, 3, 32, 32)
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(program.module()(x), expected, atol=1e-5, rtol=1e-5)


def test_folded_model_exports_to_onnx(backbone_builder, randomize):
    onnx = pytest.importorskip("onnx")
    reference = pytest.importorskip("onnx.reference")
    model = reparameterize(randomize(backbone_builder("cifar_bottleneck", ASR)))
    x = torch.randn(2, 3, 32, 32)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (x,), buffer, dynamo=False, input_names=["images"], output_names=["logits"])
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(proto)
    assert not any(node.op_type == "Sigmoid" for node in proto.graph.node)
    (outputs,) = reference.ReferenceEvaluator(proto).run(None, {"images": x.numpy()})
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(torch.from_numpy(outputs), expected, atol=1e-4, rtol=1e-4)


def test_bare_module_is_rejected():
    with pytest.raises(ValueError, match="inside a network"):
        reparameterize(ASR(8))


def test_fold_changes_only_last_batchnorm_affine(backbone_builder, randomize):
    model = randomize(backbone_builder("cifar_bottleneck", ASR))
    before = {key: value.clone() for key, value in model.state_dict().items()}
    reparameterize(model)
    after = model.state_dict()
    changed = sorted(key for key in after if not torch.equal(after[key], before[key]))
    expected = sorted(f"layer{stage}.0.bn3.{name}" for stage in (1, 2, 3) for name in ("weight", "bias"))
    assert changed == expected
    assert all(key in before for key in after)


def test_install_batchnorm_form_needs_resnet_blocks():
    with pytest.raises(ValueError, match="no ResNet block"):
        install_asr_batchnorm(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)))


def test_install_batchnorm_form_keeps_statistics(backbone_builder, randomize):
    model = randomize(backbone_builder("cifar_bottleneck"))
    bn = model.layer2[0].bn3
    install_asr_batchnorm(model)
    wrapped = model.layer2[0].bn3
    assert isinstance(wrapped, ASRBatchNorm2d)
    assert wrapped.bn is bn
