"""Attention-bias diagnostic: Grad-CAM maps compared against foreground masks.

"LSAS: Lightweight Sub-attention Strategy for Alleviating Attention Bias Problem" (arXiv 2305.05200) names
two failure modes of attention networks: position bias (the network looks at regions unrelated to the
label) and range bias (it looks at only part of the relevant region). The paper measures them with
Grad-CAM-style maps, but its exact metric is unknown. This module defines two measurable stand-ins on a
Grad-CAM map M ≥ 0 (normalised to a maximum of 1 per image) and a binary foreground mask G:

- ``outside_share`` (position bias, lower is better): Σ M·(1 − G) / Σ M, the share of Grad-CAM mass that
  falls outside the foreground.
- ``mask_coverage`` (range bias, higher is better): |{M ≥ τ} ∩ G| / |G|, the share of foreground pixels
  where the map reaches the threshold τ (default 0.5 of the image's maximum).

Grad-CAM follows Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization" (arXiv 1610.02391). The channel weights are the spatial means of the class score's gradient
with respect to the layer's activation. The map is ReLU of the weighted channel sum, upsampled bilinearly
to the input size. The diagnostic works on any model whose chosen layer outputs a (B, K, h, w) tensor.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "AttentionBiasReport",
    "attention_bias_metrics",
    "boxes_to_masks",
    "collect_masked_images",
    "diagnose_attention_bias",
    "grad_cam",
    "intensity_masks",
    "plot_attention_overlays",
    "resolve_layer",
]

logger = logging.getLogger(__name__)


def resolve_layer(model: nn.Module, layer: str | nn.Module) -> nn.Module:
    """Return the submodule of ``model`` named ``layer`` (a dotted name), or ``layer`` itself if a module."""
    if isinstance(layer, nn.Module):
        return layer
    modules = dict(model.named_modules())
    if layer not in modules:
        candidates = [name for name in modules if name][-8:]
        raise ValueError(
            f"layer {layer!r} not found in {type(model).__name__}; pass a dotted module name such as "
            f"{candidates}"
        )
    return modules[layer]


def grad_cam(
    model: nn.Module,
    images: Tensor,
    layer: str | nn.Module,
    *,
    targets: Tensor | None = None,
    upsample: bool = True,
) -> tuple[Tensor, Tensor]:
    """Compute Grad-CAM maps of ``layer`` for a batch of images.

    Args:
        model: a classifier returning logits of shape (B, classes).
        images: input batch of shape (B, C, H, W).
        layer: the module (or its dotted name) whose output activation A of shape (B, K, h, w) is explained.
        targets: class index per image, shape (B,); the predicted class when None.
        upsample: resize the maps bilinearly to (H, W); otherwise they keep the layer's size (h, w).

    Returns:
        ``(maps, targets)``: maps of shape (B, H, W) (or (B, h, w)), each scaled to a maximum of 1
        (an all-zero map stays zero), and the class index used per image.

    The model's training flag and the gradients of its parameters are left as they were.
    """
    if images.dim() != 4:
        raise ValueError(f"grad_cam expects images of shape (B, C, H, W), got {tuple(images.shape)}")
    module = resolve_layer(model, layer)
    captured: dict[str, Tensor] = {}

    def keep_activation(_module: nn.Module, _inputs: object, output: Tensor) -> None:
        if not isinstance(output, Tensor) or output.dim() != 4:
            raise ValueError(
                f"Grad-CAM layer {type(_module).__name__} must output a (B, K, h, w) tensor, got "
                f"{type(output).__name__} {getattr(output, 'shape', '')}"
            )
        captured["activation"] = output

    was_training = model.training
    model.eval()
    handle = module.register_forward_hook(keep_activation)
    try:
        with torch.enable_grad():
            # An input that requires grad makes even a first-layer activation part of the graph.
            logits = model(images.detach().requires_grad_(True))
            if "activation" not in captured:
                raise ValueError("the Grad-CAM layer was not called during the forward pass")
            if targets is None:
                targets = logits.argmax(dim=1)
            targets = targets.to(device=logits.device, dtype=torch.long)
            score = logits.gather(1, targets[:, None]).sum()
            activation = captured["activation"]
            (gradient,) = torch.autograd.grad(score, activation)
    finally:
        handle.remove()
        model.train(was_training)

    weights = gradient.mean(dim=(2, 3), keepdim=True)
    maps = F.relu((weights * activation.detach()).sum(dim=1, keepdim=True))
    if upsample and maps.shape[-2:] != images.shape[-2:]:
        maps = F.interpolate(maps, size=images.shape[-2:], mode="bilinear", align_corners=False)
        maps = maps.clamp_min(0)
    maps = maps[:, 0]
    peak = maps.flatten(1).amax(dim=1).clamp_min(torch.finfo(maps.dtype).tiny)
    return maps / peak[:, None, None], targets.detach()


def attention_bias_metrics(maps: Tensor, masks: Tensor, *, threshold: float = 0.5) -> dict[str, Tensor]:
    """Compute the per-image position-bias and range-bias measures.

    Args:
        maps: non-negative saliency maps of shape (B, H, W), scaled to a maximum of 1 per image.
        masks: binary foreground masks of shape (B, H, W) (bool or 0/1 values).
        threshold: map value τ from which a foreground pixel counts as covered.

    Returns:
        ``{"outside_share": (B,), "mask_coverage": (B,)}``. ``outside_share`` is NaN for an all-zero map
        and ``mask_coverage`` is NaN for an empty mask.
    """
    if maps.shape != masks.shape or maps.dim() != 3:
        raise ValueError(
            f"maps and masks must both have shape (B, H, W), got {tuple(maps.shape)} and {tuple(masks.shape)}"
        )
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must lie in (0, 1], got {threshold}")
    if (maps < 0).any():
        raise ValueError("maps must be non-negative (apply ReLU first)")
    foreground = masks.to(dtype=maps.dtype)
    if not torch.all((foreground == 0) | (foreground == 1)):
        raise ValueError("masks must be binary (0/1 or bool); threshold soft masks first")

    total_mass = maps.flatten(1).sum(dim=1)
    outside_mass = (maps * (1 - foreground)).flatten(1).sum(dim=1)
    outside_share = torch.where(total_mass > 0, outside_mass / total_mass.clamp_min(1e-12), math.nan)

    mask_area = foreground.flatten(1).sum(dim=1)
    covered = ((maps >= threshold).to(maps.dtype) * foreground).flatten(1).sum(dim=1)
    mask_coverage = torch.where(mask_area > 0, covered / mask_area.clamp_min(1), math.nan)
    return {"outside_share": outside_share, "mask_coverage": mask_coverage}


def intensity_masks(images: Tensor, *, threshold: float = 0.5) -> Tensor:
    """Return foreground masks of shape (B, H, W) from bright strokes on a dark background.

    The channel mean of each image is rescaled to [0, 1] by its own minimum and maximum, so any per-channel
    affine normalisation with positive scale gives the same mask. Pixels above ``threshold`` are foreground.
    This fits the scikit-learn digits images (white strokes on black).
    """
    if images.dim() != 4:
        raise ValueError(f"intensity_masks expects images of shape (B, C, H, W), got {tuple(images.shape)}")
    intensity = images.mean(dim=1)
    low = intensity.flatten(1).amin(dim=1)[:, None, None]
    high = intensity.flatten(1).amax(dim=1)[:, None, None]
    scaled = (intensity - low) / (high - low).clamp_min(1e-12)
    return scaled > threshold


def boxes_to_masks(boxes: Sequence[Tensor | Sequence[Sequence[float]]], height: int, width: int) -> Tensor:
    """Return masks of shape (B, height, width) that are true inside any of each image's boxes.

    Args:
        boxes: one entry per image, each a sequence of (x_min, y_min, x_max, y_max) boxes in pixels;
            x_max and y_max are exclusive. An image may have no boxes.
        height: mask height in pixels.
        width: mask width in pixels.
    """
    masks = torch.zeros(len(boxes), height, width, dtype=torch.bool)
    for index, image_boxes in enumerate(boxes):
        for box in image_boxes:
            x_min, y_min, x_max, y_max = (float(value) for value in box)
            if x_max <= x_min or y_max <= y_min:
                raise ValueError(
                    f"box {tuple(box)} of image {index} is empty; expected x_min < x_max, y_min < y_max"
                )
            left, top = max(0, math.floor(x_min)), max(0, math.floor(y_min))
            right, bottom = min(width, math.ceil(x_max)), min(height, math.ceil(y_max))
            masks[index, top:bottom, left:right] = True
    return masks


def collect_masked_images(
    dataset: Sequence, *, count: int, mask_threshold: float = 0.5
) -> tuple[Tensor, Tensor, Tensor]:
    """Take the first ``count`` items of a dataset and return ``(images, masks, labels)``.

    Items may be ``(image, label)``. Their mask then comes from ``intensity_masks`` with ``mask_threshold``,
    which fits bright foreground on a dark background as in the digits data. Items may also be
    ``(image, label, target)``, where ``target`` is a (H, W) foreground mask or a (K, 4) tensor of
    (x_min, y_min, x_max, y_max) pixel boxes.

    Returns:
        images (N, C, H, W), boolean masks (N, H, W) and integer labels (N,).
    """
    if count < 1:
        raise ValueError(f"count must be positive, got {count}")
    images, masks, labels = [], [], []
    for index in range(min(count, len(dataset))):
        item = dataset[index]
        if len(item) not in (2, 3):
            raise ValueError(
                f"dataset item {index} has {len(item)} fields; expected (image, label) or (image, label, mask_or_boxes)"
            )
        image = torch.as_tensor(item[0])
        height, width = image.shape[-2:]
        if len(item) == 2:
            mask = intensity_masks(image[None], threshold=mask_threshold)[0]
        else:
            target = torch.as_tensor(item[2])
            if target.shape == (height, width):
                mask = target.bool()
            elif target.dim() == 2 and target.shape[1] == 4:
                mask = boxes_to_masks([target], height, width)[0]
            else:
                raise ValueError(
                    f"dataset item {index}: the third field must be a ({height}, {width}) mask or a (K, 4) box "
                    f"tensor, got shape {tuple(target.shape)}"
                )
        images.append(image)
        masks.append(mask)
        labels.append(int(item[1]))
    return torch.stack(images), torch.stack(masks), torch.tensor(labels)


@dataclass
class AttentionBiasReport:
    """Per-image and averaged attention-bias measures of one model on one set of images."""

    outside_share: Tensor
    mask_coverage: Tensor
    targets: Tensor
    maps: Tensor = field(repr=False)
    threshold: float = 0.5

    def summary(self) -> dict[str, float]:
        """Return the means over images (NaN entries are skipped) and the image count."""
        return {
            "outside_share": float(torch.nanmean(self.outside_share)),
            "mask_coverage": float(torch.nanmean(self.mask_coverage)),
            "images": float(self.outside_share.numel()),
        }


def diagnose_attention_bias(
    model: nn.Module,
    images: Tensor,
    masks: Tensor,
    layer: str | nn.Module,
    *,
    targets: Tensor | None = None,
    threshold: float = 0.5,
    batch_size: int = 64,
) -> AttentionBiasReport:
    """Run Grad-CAM on ``layer`` over a set of images and measure it against their foreground masks.

    Args:
        model: a classifier returning logits of shape (B, classes).
        images: inputs of shape (N, C, H, W), already normalised as the model expects.
        masks: binary foreground masks of shape (N, H, W); see ``intensity_masks`` and ``boxes_to_masks``.
        layer: the module or dotted module name to explain.
        targets: class per image (for example the labels); the predicted class when None.
        threshold: coverage threshold τ of ``attention_bias_metrics``.
        batch_size: images per Grad-CAM pass.
    """
    if images.shape[0] != masks.shape[0] or images.shape[-2:] != masks.shape[-2:]:
        raise ValueError(
            f"images {tuple(images.shape)} and masks {tuple(masks.shape)} must have the same count and H, W"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    device = next(model.parameters()).device
    all_maps, all_targets = [], []
    for start in range(0, images.shape[0], batch_size):
        batch = images[start : start + batch_size].to(device)
        batch_targets = None if targets is None else targets[start : start + batch_size].to(device)
        maps, used = grad_cam(model, batch, layer, targets=batch_targets)
        all_maps.append(maps.cpu())
        all_targets.append(used.cpu())
    maps = torch.cat(all_maps)
    metrics = attention_bias_metrics(maps, masks.cpu(), threshold=threshold)
    return AttentionBiasReport(
        outside_share=metrics["outside_share"],
        mask_coverage=metrics["mask_coverage"],
        targets=torch.cat(all_targets),
        maps=maps,
        threshold=threshold,
    )


def plot_attention_overlays(
    images: Tensor,
    maps_by_model: dict[str, Tensor],
    masks: Tensor,
    *,
    path: str | Path,
    max_images: int = 6,
) -> Path:
    """Draw a grid with one row per image: the image with its mask outline, then each model's Grad-CAM map.

    Args:
        images: inputs of shape (N, C, H, W); each is min-max scaled for display.
        maps_by_model: model name -> maps of shape (N, H, W).
        masks: foreground masks of shape (N, H, W), drawn as a contour.
        path: output image file; parent folders are created.
        max_images: number of rows drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = min(max_images, images.shape[0])
    columns = 1 + len(maps_by_model)
    figure, axes = plt.subplots(rows, columns, figsize=(2.0 * columns, 2.0 * rows), squeeze=False)
    for row in range(rows):
        picture = images[row].detach().float().cpu()
        picture = (picture - picture.min()) / (picture.max() - picture.min()).clamp_min(1e-12)
        picture = picture.permute(1, 2, 0).numpy()
        if picture.shape[2] == 1:
            picture = picture[:, :, 0]
        mask = masks[row].float().cpu().numpy()
        axes[row][0].imshow(picture, cmap="gray")
        axes[row][0].contour(mask, levels=[0.5], colors="lime", linewidths=0.8)
        for column, (name, maps) in enumerate(maps_by_model.items(), start=1):
            axes[row][column].imshow(picture, cmap="gray")
            axes[row][column].imshow(
                maps[row].detach().float().cpu().numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1
            )
            axes[row][column].contour(mask, levels=[0.5], colors="white", linewidths=0.6)
            if row == 0:
                axes[row][column].set_title(name, fontsize=9)
        if row == 0:
            axes[row][0].set_title("image + mask", fontsize=9)
    for axis in axes.flat:
        axis.set_axis_off()
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
