"""CIFAR ResNets with an attention slot in every residual block.

The layout is the fb.resnet.torch CIFAR ResNet used by the official code of LSAS, ASR, RAS, SEM and SPEM,
which are all forked from bearpaw's pytorch-classification. It has a 3×3 stem with 16 channels, three stages with 16, 32
and 64 planes, post-activation blocks, global average pooling and a linear classifier. Attention acts on
the output F of the block's last BN (``bn3`` in a bottleneck, ``bn2`` in a basic block), before the
residual add: out = ReLU(shortcut + a ⊙ F).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from qcore.registry import Registry
from qcore.vision.attention import collect_aux_loss, resolve_attention

__all__ = [
    "CIFAR_RESNETS",
    "BasicBlock",
    "Bottleneck",
    "CifarResNet",
    "attach_attention_torchvision",
    "create_cifar_resnet",
    "official_init_",
]

logger = logging.getLogger(__name__)

STAGE_PLANES = (16, 32, 64)
NUM_STAGES = 3


class Bottleneck(nn.Module):
    """Post-activation bottleneck: 1×1 → 3×3 (stride) → 1×1 (4·planes), attention after ``bn3``."""

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        *,
        stride: int = 1,
        attn: nn.Module | None = None,
        last_norm: nn.Module | None = None,
    ) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, kernel_size=1, bias=False)
        self.bn3 = last_norm if last_norm is not None else nn.BatchNorm2d(out_channels)
        self.attn = attn if attn is not None else nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.attn(self.bn3(self.conv3(out)))
        return self.relu(out + shortcut)


class BasicBlock(nn.Module):
    """Post-activation basic block: two 3×3 convolutions, attention after ``bn2``."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        planes: int,
        *,
        stride: int = 1,
        attn: nn.Module | None = None,
        last_norm: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1, bias=False)
        self.bn2 = last_norm if last_norm is not None else nn.BatchNorm2d(planes)
        self.attn = attn if attn is not None else nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.attn(self.bn2(self.conv2(out)))
        return self.relu(out + shortcut)


BLOCKS: dict[str, type[Bottleneck] | type[BasicBlock]] = {"bottleneck": Bottleneck, "basic": BasicBlock}


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    # A projection whenever the shape changes, including the first bottleneck of stage 1 (16 -> 64).
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


def official_init_(model: nn.Module) -> nn.Module:
    """Apply the official initialisation in place and return ``model``.

    Every ``Conv2d`` gets N(0, std = sqrt(2 / (k·k·out_channels))) and every ``BatchNorm2d`` γ = 1, β = 0,
    including those inside attention modules. Linear and Conv1d layers and the attention modules' own
    parameters keep the values their constructors gave them.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
            nn.init.normal_(module.weight, mean=0.0, std=math.sqrt(2.0 / fan_out))
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return model


def _blocks_per_stage(depth: int, block: str) -> int:
    if block == "bottleneck":
        layers_per_block, examples = 9, "11, 20, 29, 47, 56, 110, 164"
    else:
        layers_per_block, examples = 6, "8, 14, 20, 32, 44, 56, 110"
    step = layers_per_block // 3
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 2 + layers_per_block:
        valid = False
    else:
        valid = (depth - 2) % layers_per_block == 0
    if not valid:
        raise ValueError(
            f"invalid depth={depth!r} for block={block!r}: a {block} CIFAR ResNet has depth "
            f"{layers_per_block}n + 2 with n >= 1 ({step} layers per block, 3 stages), for example {examples}"
        )
    return (depth - 2) // layers_per_block


def _check_stages(attn_stages: Iterable[int] | None) -> frozenset[int]:
    if attn_stages is None:
        return frozenset(range(NUM_STAGES))
    stages = frozenset(attn_stages)
    bad = sorted(
        s for s in stages if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < NUM_STAGES
    )
    if bad:
        raise ValueError(f"invalid attn_stages entries {bad}: stage indices are 0, 1 and 2 (0-based)")
    return stages


class CifarResNet(nn.Module):
    """CIFAR ResNet (fb.resnet.torch layout) with an attention module in every selected block.

    Args:
        depth: 9n + 2 for bottleneck blocks (ResNet-164 has n = 18), 6n + 2 for basic blocks.
        num_classes: Size of the classifier output.
        block: ``"bottleneck"`` or ``"basic"``.
        attn_layer: timm-style attention spec (registered name, class or callable of the channel count),
            built in every block of the selected stages. Block output channels are 64, 128, 256 for
            bottlenecks and 16, 32, 64 for basic blocks.
        attn_factory: Called as ``attn_factory(channels, stage_index, block_index)`` for every block of the
            selected stages; returns a module or ``None``. Use it instead of ``attn_layer`` when the module
            depends on its position.
        attn_stages: 0-based indices of the stages that get attention; ``None`` means all three. An empty
            collection gives the plain ResNet.
        last_norm_factory: Optional ``(channels, stage_index, block_index) -> module or None`` that replaces
            the block's last BN (``bn3`` / ``bn2``), for methods that re-parameterise it.
        in_chans: Input channels.
        official_init: Apply :func:`official_init_` after building.
    """

    # collect_aux_loss skips this class because aux_loss() below already sums the children.
    aggregates_aux_loss = True

    def __init__(
        self,
        depth: int,
        *,
        num_classes: int = 10,
        block: str = "bottleneck",
        attn_layer: Any = None,
        attn_factory: Callable[[int, int, int], nn.Module | None] | None = None,
        attn_stages: Iterable[int] | None = None,
        last_norm_factory: Callable[[int, int, int], nn.Module | None] | None = None,
        in_chans: int = 3,
        official_init: bool = True,
    ) -> None:
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"invalid block={block!r}; valid values: {', '.join(map(repr, BLOCKS))}")
        if attn_layer is not None and attn_factory is not None:
            raise ValueError("pass either attn_layer or attn_factory to CifarResNet, not both")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"invalid num_classes={num_classes!r}: must be a positive integer")
        blocks_per_stage = _blocks_per_stage(depth, block)
        stages = _check_stages(attn_stages)
        layer_attn = resolve_attention(attn_layer)

        self.depth = depth
        self.block_name = block
        self.num_classes = num_classes
        self.attn_stages = tuple(sorted(stages))
        block_cls = BLOCKS[block]

        self.conv1 = nn.Conv2d(in_chans, 16, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)

        in_channels = 16
        stage_layers: list[nn.Sequential] = []
        for stage_index, planes in enumerate(STAGE_PLANES):
            out_channels = planes * block_cls.expansion
            blocks = []
            for block_index in range(blocks_per_stage):
                attn = None
                if stage_index in stages:
                    if attn_factory is not None:
                        attn = attn_factory(out_channels, stage_index, block_index)
                    elif layer_attn is not None:
                        attn = layer_attn(out_channels)
                last_norm = None
                if last_norm_factory is not None:
                    last_norm = last_norm_factory(out_channels, stage_index, block_index)
                stride = 2 if stage_index > 0 and block_index == 0 else 1
                blocks.append(block_cls(in_channels, planes, stride=stride, attn=attn, last_norm=last_norm))
                in_channels = out_channels
            stage_layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stage_layers

        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)
        self.num_features = in_channels
        if official_init:
            official_init_(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the last stage's feature map (B, C_last, H/4, W/4) for an input of shape (B, C_in, H, W)."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        x = self.layer2(x)
        return self.layer3(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits (B, num_classes) for images (B, C_in, H, W)."""
        features = self.avgpool(self.forward_features(x)).flatten(1)
        return self.fc(features)

    def residual_blocks(self) -> list[Bottleneck | BasicBlock]:
        """Return the residual blocks in order (stage 1 first)."""
        return [block for layer in (self.layer1, self.layer2, self.layer3) for block in layer]  # type: ignore[misc]

    def attention_modules(self) -> list[nn.Module]:
        """Return the attention modules of the blocks that have one, in block order."""
        return [block.attn for block in self.residual_blocks() if not isinstance(block.attn, nn.Identity)]

    def aux_loss(self) -> torch.Tensor | None:
        """Return the sum of the submodules' ``aux_loss()`` values, or ``None`` when none defines one."""
        return collect_aux_loss(self)


CIFAR_RESNETS = Registry("CIFAR ResNet")

for _depth in (20, 32, 44, 56, 110):
    CIFAR_RESNETS.add(f"cifar_resnet{_depth}", {"depth": _depth, "block": "basic"})
for _depth in (29, 164):
    CIFAR_RESNETS.add(f"cifar_resnet{_depth}", {"depth": _depth, "block": "bottleneck"})
# Tiny variants for tests and smoke runs: one block per stage.
CIFAR_RESNETS.add("cifar_resnet_test", {"depth": 11, "block": "bottleneck"})
CIFAR_RESNETS.add("cifar_resnet8", {"depth": 8, "block": "basic"})


def create_cifar_resnet(name: str, **kwargs: Any) -> CifarResNet:
    """Build a named CIFAR ResNet; ``kwargs`` go to :class:`CifarResNet` (for example ``attn_layer``).

    Names: ``cifar_resnet20/32/44/56/110`` and ``cifar_resnet8`` (basic blocks), ``cifar_resnet29``,
    ``cifar_resnet164`` and ``cifar_resnet_test`` (bottlenecks; the test variant has depth 11).
    """
    architecture = dict(CIFAR_RESNETS.get(name))
    overlap = sorted(set(architecture) & set(kwargs))
    if overlap:
        raise ValueError(f"{name} fixes {', '.join(overlap)}; build CifarResNet directly to choose them")
    return CifarResNet(**architecture, **kwargs)


def attach_attention_torchvision(model: nn.Module, attn_layer: Any, **attn_kwargs: Any) -> nn.Module:
    """Insert attention after the last BN of every residual block of a torchvision ResNet, in place.

    Each ``torchvision.models.resnet.BasicBlock`` gets ``bn2 = Sequential(bn2, attn)`` and each
    ``Bottleneck`` gets ``bn3 = Sequential(bn3, attn)``, so the module gates F before the residual add,
    the same position as in :class:`CifarResNet` and timm's ResNet. The modules are created on the BN's
    device and dtype.

    Returns:
        ``model``, modified in place.

    Raises:
        ValueError: ``attn_layer`` means no attention, or the model has no torchvision residual block.
    """
    from torchvision.models.resnet import BasicBlock as TvBasicBlock
    from torchvision.models.resnet import Bottleneck as TvBottleneck

    factory = resolve_attention(attn_layer, **attn_kwargs)
    if factory is None:
        raise ValueError("attach_attention_torchvision needs an attention spec, got none")
    count = 0
    for module in model.modules():
        if isinstance(module, TvBottleneck):
            attribute = "bn3"
        elif isinstance(module, TvBasicBlock):
            attribute = "bn2"
        else:
            continue
        norm = getattr(module, attribute)
        attn = factory(norm.num_features, device=norm.weight.device, dtype=norm.weight.dtype)
        setattr(module, attribute, nn.Sequential(norm, attn))
        count += 1
    if count == 0:
        raise ValueError(
            f"{type(model).__name__} contains no torchvision BasicBlock or Bottleneck; "
            "attach_attention_torchvision works on torchvision.models.resnet models"
        )
    logger.debug("attached attention to %d torchvision residual blocks", count)
    return model
