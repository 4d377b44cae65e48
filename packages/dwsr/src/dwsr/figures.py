"""Figures of DWSR: an image with its difficulty map and predicted mask, and side-by-side SR crops."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["plot_crops", "plot_difficulty", "select_crop"]


def plot_difficulty(
    image: np.ndarray,
    psnr_map: np.ndarray,
    label_mask: np.ndarray,
    predicted_mask: np.ndarray | None,
    *,
    path: Path,
    title: str = "",
) -> Path:
    """Draw an HR image (H, W, 3 uint8 RGB), its patch PSNR map (dB), its labels and the predicted mask.

    White in the label and mask panels means hard. The predicted-mask panel is left out when
    ``predicted_mask`` is None.
    """
    panels = 3 if predicted_mask is None else 4
    figure, axes = plt.subplots(1, panels, figsize=(3.2 * panels, 3.4))
    axes[0].imshow(image)
    axes[0].set_title("HR image")
    psnr_image = axes[1].imshow(psnr_map, cmap="viridis")
    axes[1].set_title("bicubic PSNR per patch (dB)")
    figure.colorbar(psnr_image, ax=axes[1], fraction=0.046)
    axes[2].imshow(label_mask, cmap="gray", vmin=0, vmax=1)
    axes[2].set_title(f"labels (hard {label_mask.mean():.0%})")
    if predicted_mask is not None:
        axes[3].imshow(predicted_mask, cmap="gray", vmin=0, vmax=1)
        axes[3].set_title("predicted mask")
    for axis in axes:
        axis.set_axis_off()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def select_crop(hard_mask: np.ndarray, size: int) -> tuple[int, int]:
    """Return the top-left corner of the ``size`` square whose hard fraction is closest to one half.

    Such a crop shows easy and hard regions side by side. Candidates lie on a grid of stride ``size // 2``.
    """
    height, width = hard_mask.shape
    size = min(size, height, width)
    step = max(size // 2, 1)
    best, corner = math.inf, (0, 0)
    for top in range(0, height - size + 1, step):
        for left in range(0, width - size + 1, step):
            distance = abs(float(hard_mask[top : top + size, left : left + size].mean()) - 0.5)
            if distance < best:
                best, corner = distance, (top, left)
    return corner


def plot_crops(
    panels: Mapping[str, np.ndarray], corner: tuple[int, int], size: int, *, path: Path, title: str = ""
) -> Path:
    """Draw the same ``size`` square crop of each image (H, W, 3 uint8 RGB, or H, W in [0, 1]) side by side."""
    top, left = corner
    figure, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.9))
    axes = np.atleast_1d(axes)
    for axis, (label, image) in zip(axes, panels.items(), strict=True):
        crop = image[top : top + size, left : left + size]
        if crop.ndim == 2:
            axis.imshow(crop, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        else:
            axis.imshow(crop, interpolation="nearest")
        axis.set_title(label, fontsize=9)
        axis.set_axis_off()
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
