"""Model builders shared by the ASR tests: one tiny network per backbone family, with or without ASR."""

from collections.abc import Callable

import pytest
import timm
import torch
import torchvision
from torch import nn

from asr import ASRBatchNorm2d, install_asr_batchnorm
from qcore.vision.resnet import attach_attention_torchvision, create_cifar_resnet


def _tiny_timm_resnet(block: str, attention, num_classes: int) -> nn.Module:
    from timm.models.resnet import BasicBlock, Bottleneck, ResNet

    return ResNet(
        block=Bottleneck if block == "bottleneck" else BasicBlock,
        layers=(1, 1, 1, 1),
        channels=(8, 16, 32, 64),
        stem_width=8,
        num_classes=num_classes,
        block_args={"attn_layer": attention} if attention is not None else None,
        zero_init_last=False,
    )


def _tiny_torchvision_resnet(block: str, num_classes: int) -> nn.Module:
    from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

    if block == "bottleneck":
        return ResNet(Bottleneck, [1, 1, 1, 1], num_classes=num_classes, width_per_group=16)
    return ResNet(BasicBlock, [1, 1, 1, 1], num_classes=num_classes)


def build_backbone(family: str, attention=None, *, num_classes: int = 10) -> nn.Module:
    """Build a network of ``family`` with ``attention`` after the last BN of every block (None = plain)."""
    if family == "cifar_bottleneck":
        return create_cifar_resnet("cifar_resnet_test", num_classes=num_classes, attn_layer=attention)
    if family == "cifar_basic":
        return create_cifar_resnet("cifar_resnet8", num_classes=num_classes, attn_layer=attention)
    if family in ("timm_bottleneck", "timm_basic"):
        return _tiny_timm_resnet(family.removeprefix("timm_"), attention, num_classes)
    if family in ("tv_bottleneck", "tv_basic"):
        model = _tiny_torchvision_resnet(family.removeprefix("tv_"), num_classes)
        return attach_attention_torchvision(model, attention) if attention is not None else model
    if family.startswith("timm_"):
        block_args = {"attn_layer": attention} if attention is not None else None
        return timm.create_model(
            family.removeprefix("timm_"), num_classes=num_classes, block_args=block_args, zero_init_last=False
        )
    if family.startswith("tv_"):
        model = getattr(torchvision.models, family.removeprefix("tv_"))(num_classes=num_classes)
        if attention is not None:
            attach_attention_torchvision(model, attention)
        return model
    raise ValueError(f"unknown family {family!r}")


def build_asr_batchnorm_model(family: str, *, num_classes: int = 10) -> nn.Module:
    """Build a network whose blocks' last BN is an ASRBatchNorm2d (the official construction)."""
    if family.startswith("cifar_"):
        name = "cifar_resnet_test" if family == "cifar_bottleneck" else "cifar_resnet8"
        return create_cifar_resnet(
            name,
            num_classes=num_classes,
            last_norm_factory=lambda channels, stage, block: ASRBatchNorm2d(channels),
        )
    return install_asr_batchnorm(build_backbone(family, num_classes=num_classes))


def randomize_(model: nn.Module, *, seed: int = 0, image_size: int = 32) -> nn.Module:
    """Give BN statistics and all parameters non-trivial values, so that folding errors show."""
    generator = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, image_size, image_size, generator=generator))
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


@pytest.fixture
def backbone_builder() -> Callable[..., nn.Module]:
    return build_backbone


@pytest.fixture
def asr_batchnorm_builder() -> Callable[..., nn.Module]:
    return build_asr_batchnorm_model


@pytest.fixture
def randomize() -> Callable[..., nn.Module]:
    return randomize_
