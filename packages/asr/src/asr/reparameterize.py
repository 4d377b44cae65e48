"""Fold ASR scales into the preceding BatchNorm (and optionally the convolution) for deployment.

BN(x) ⊙ v = (γ ⊙ v)(x − μ)/√(σ² + ε) + β ⊙ v, so multiplying γ and β by the constant gate v of an ASR module
and removing the module leaves the function unchanged. After `reparameterize` the network has exactly the
parameters, buffers and state-dict keys of the backbone without ASR.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from asr.asr import ASR, ASRBatchNorm2d, ASRWithAttention

__all__ = ["count_asr_modules", "install_asr_batchnorm", "reparameterize"]

logger = logging.getLogger(__name__)

_NUMBERED_BN = re.compile(r"^bn(\d+)$")


def _parents(model: nn.Module) -> dict[int, tuple[nn.Module, str]]:
    """Map id(child) to (parent, attribute name) for every submodule of ``model``."""
    parents: dict[int, tuple[nn.Module, str]] = {}
    for parent in model.modules():
        for name, child in parent.named_children():
            parents[id(child)] = (parent, name)
    return parents


def _qualified_names(model: nn.Module) -> dict[int, str]:
    return {id(module): name for name, module in model.named_modules()}


def _preceding_module(parent: nn.Module, name: str, kind: type[nn.Module]) -> tuple[str, nn.Module] | None:
    """Return the last direct child of type ``kind`` registered before ``name`` in ``parent``.

    In an ``nn.Sequential`` only the immediately preceding child counts, because that is the one whose
    output the module receives.
    """
    names = list(parent._modules)
    index = names.index(name)
    if isinstance(parent, nn.Sequential):
        if index == 0:
            return None
        previous = parent._modules[names[index - 1]]
        return (names[index - 1], previous) if isinstance(previous, kind) else None
    for candidate in reversed(names[:index]):
        module = parent._modules[candidate]
        if isinstance(module, kind):
            return candidate, module
    return None


def _last_batchnorm_name(block: nn.Module) -> str | None:
    """Return ``bn3`` or ``bn2`` for ResNet bottleneck and basic blocks, None for other modules."""
    for name in ("bn3", "bn2"):
        if isinstance(getattr(block, name, None), nn.BatchNorm2d) and hasattr(block, "conv" + name[-1]):
            return name
    return None


def install_asr_batchnorm(model: nn.Module, **asr_kwargs: Any) -> nn.Module:
    """Replace the last BatchNorm of every ResNet block (``bn3`` or ``bn2``) by an `ASRBatchNorm2d`.

    This is the construction of the official code. It works for blocks that name their layers
    ``conv1``/``bn1``..., as our CIFAR ResNet, timm and torchvision do. The BatchNorm's parameters and
    statistics are kept. Keyword arguments go to `ASRBatchNorm2d`. Returns the model, changed in place.
    """
    replaced = 0
    for block in list(model.modules()):
        name = _last_batchnorm_name(block)
        if name is None:
            continue
        setattr(block, name, ASRBatchNorm2d.from_batchnorm(getattr(block, name), **asr_kwargs))
        replaced += 1
    if replaced == 0:
        raise ValueError(
            f"found no ResNet block with a bn3 or bn2 BatchNorm2d in {type(model).__name__}. "
            f"Use ASR as the block's attention module instead"
        )
    logger.info("replaced the last BatchNorm of %d blocks by ASRBatchNorm2d", replaced)
    return model


def count_asr_modules(model: nn.Module) -> int:
    """Count the ASR scales (in any of the three forms) that `reparameterize` would fold."""
    wrapped = {id(module.asr) for module in model.modules() if isinstance(module, ASRBatchNorm2d)}
    standalone = sum(isinstance(module, ASR) and id(module) not in wrapped for module in model.modules())
    return standalone + sum(isinstance(module, ASRBatchNorm2d) for module in model.modules())


def _scale_batchnorm_(bn: nn.BatchNorm2d, value: Tensor, where: str) -> None:
    if bn.weight is None or bn.bias is None:
        raise ValueError(
            f"the BatchNorm before the ASR module at '{where}' has no affine parameters to fold into"
        )
    with torch.no_grad():
        flat = value.reshape(-1).to(bn.weight.dtype)
        bn.weight.mul_(flat)
        bn.bias.mul_(flat)


def _collapse_sequential(model: nn.Module, sequential: nn.Sequential) -> None:
    """Drop Identity entries and replace a Sequential that keeps one module by that module."""
    remaining = [module for module in sequential if not isinstance(module, nn.Identity)]
    if len(remaining) == len(sequential):
        return
    parents = _parents(model)
    if id(sequential) not in parents:
        return
    parent, name = parents[id(sequential)]
    setattr(parent, name, remaining[0] if len(remaining) == 1 else nn.Sequential(*remaining))


def _fold_attention_slot(
    model: nn.Module, module: ASR | ASRWithAttention, scaled: list[nn.BatchNorm2d]
) -> None:
    names = _qualified_names(model)
    parent, name = _parents(model)[id(module)]
    where = names[id(module)]
    found = _preceding_module(parent, name, nn.BatchNorm2d)
    if found is None:
        raise ValueError(
            f"cannot fold the ASR module at '{where}': no BatchNorm2d precedes it in "
            f"{type(parent).__name__}. ASR must sit right after a block's last BatchNorm"
        )
    bn = found[1]
    assert isinstance(bn, nn.BatchNorm2d)

    asr = module.asr if isinstance(module, ASRWithAttention) else module
    with torch.no_grad():
        _scale_batchnorm_(bn, asr.scale(), where)
    scaled.append(bn)

    replacement = module.attention if isinstance(module, ASRWithAttention) else nn.Identity()
    setattr(parent, name, replacement)
    if isinstance(parent, nn.Sequential):
        _collapse_sequential(model, parent)


def _fuse_into_conv(model: nn.Module, bn: nn.BatchNorm2d) -> None:
    parents = _parents(model)
    parent, name = parents[id(bn)]
    match = _NUMBERED_BN.match(name)
    conv_name = "conv" + match.group(1) if match else None
    if conv_name is not None and isinstance(getattr(parent, conv_name, None), nn.Conv2d):
        conv = getattr(parent, conv_name)
    else:
        found = _preceding_module(parent, name, nn.Conv2d)
        if found is None:
            raise ValueError(
                f"cannot fuse the BatchNorm '{_qualified_names(model)[id(bn)]}' into a convolution: "
                f"none precedes it. Call reparameterize with fuse_conv=False"
            )
        conv_name, conv = found
    conv.eval()
    bn.eval()
    setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
    setattr(parent, name, nn.Identity())


def reparameterize(
    model: nn.Module, *, fuse_conv: bool = False, check_input: Tensor | None = None, atol: float = 1e-4
) -> nn.Module:
    """Fold every ASR scale into the preceding BatchNorm and remove the ASR modules, in place.

    Handles the attention-slot forms `ASR` (replaced by ``nn.Identity``) and `ASRWithAttention`
    (replaced by its input-dependent module), including the ``nn.Sequential(bn, attention)`` wrapping of
    ``qcore.vision.resnet.attach_attention_torchvision`` (collapsed back to the BatchNorm), and
    `ASRBatchNorm2d` (replaced by its folded ``nn.BatchNorm2d``).

    Args:
        model: the network, changed in place.
        fuse_conv: also fuse each scaled BatchNorm into the convolution before it. The convolution gains
            a bias and the BatchNorm becomes ``nn.Identity``, so the parameter count then differs from the
            backbone's. Puts the fused layers in eval mode.
        check_input: optional input batch. When given, the eval-mode outputs before and after folding are
            compared and a RuntimeError is raised if they differ by more than ``atol``. The model stays
            folded in that case.
        atol: tolerance of that comparison.

    Returns:
        The same model object.
    """
    if isinstance(model, ASR | ASRWithAttention | ASRBatchNorm2d):
        raise ValueError(
            f"reparameterize folds ASR modules inside a network, got a bare {type(model).__name__}. "
            f"Use ASRBatchNorm2d.to_batchnorm() or fold the network that contains the module"
        )
    was_training = model.training
    reference = None
    if check_input is not None:
        model.eval()
        with torch.no_grad():
            reference = model(check_input)

    scaled: list[nn.BatchNorm2d] = []
    for module in list(model.modules()):
        if isinstance(module, ASRBatchNorm2d):
            parent, name = _parents(model)[id(module)]
            fused = module.to_batchnorm()
            setattr(parent, name, fused)
            scaled.append(fused)
    top_level = [
        module
        for module in model.modules()
        if isinstance(module, ASRWithAttention)
        or (isinstance(module, ASR) and not isinstance(_parents(model)[id(module)][0], ASRWithAttention))
    ]
    for module in top_level:
        _fold_attention_slot(model, module, scaled)
    if not scaled:
        logger.warning(
            "reparameterize found no ASR module in %s, so the model is unchanged", type(model).__name__
        )

    if fuse_conv:
        for bn in scaled:
            _fuse_into_conv(model, bn)
    logger.info("folded %d ASR scales%s", len(scaled), " into convolutions" if fuse_conv else "")

    if reference is not None:
        with torch.no_grad():
            folded = model(check_input)
        error = (folded - reference).abs().max().item()
        if error > atol:
            raise RuntimeError(
                f"the folded model's output differs from the original by {error:.3g} (> atol={atol}). "
                f"An ASR module probably does not sit right after the BatchNorm it was folded into"
            )
    model.train(was_training and not fuse_conv)  # fused convolutions exist for inference only
    return model
