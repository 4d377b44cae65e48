"""Y-channel PSNR and SSIM of SR results, over whole images and over their easy and hard regions.

Whole-image numbers use BasicSR's ``calculate_psnr`` and ``calculate_ssim`` with ``test_y_channel=True``
and ``crop_border`` equal to the scale, the usual protocol of SR papers. The regions come from the
PSNR-prior labels of the bicubic upsampling (see :mod:`dwsr.difficulty`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from basicsr.metrics import calculate_psnr, calculate_ssim
from basicsr.metrics.metric_util import to_y_channel
from basicsr.utils import img2tensor, tensor2img
from basicsr.utils.matlab_functions import imresize

from dwsr.data import PairedFolder
from dwsr.difficulty import DifficultySettings
from dwsr.models.dwsr_model import compute_label_mask, compute_psnr_map

__all__ = ["ImageResult", "bicubic_sr", "evaluate_folder", "region_psnr", "ssim_map"]

logger = logging.getLogger(__name__)

_SSIM_RADIUS = 5


@dataclass
class ImageResult:
    """Metrics of one image and, when requested, the arrays that produced them (uint8 RGB, HWC)."""

    name: str
    metrics: dict[str, float]
    sr: np.ndarray | None = None
    gt: np.ndarray | None = None
    hard_mask: np.ndarray | None = None
    predicted_mask: np.ndarray | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)


def ssim_map(img: np.ndarray, img2: np.ndarray) -> np.ndarray:
    """Compute the SSIM map of two one-channel images in [0, 255], in the valid region of the 11x11 window.

    Same constants and Gaussian window (sigma 1.5) as BasicSR's ``calculate_ssim``, whose value is the
    mean of this map. The map is ``(H - 10, W - 10)``.
    """
    img = img.astype(np.float64)
    img2 = img2.astype(np.float64)
    c1 = (0.01 * 255) ** 2
    c2 = (0.03 * 255) ** 2
    kernel = cv2.getGaussianKernel(11, 1.5)
    window = np.outer(kernel, kernel.transpose())
    valid = (slice(_SSIM_RADIUS, -_SSIM_RADIUS), slice(_SSIM_RADIUS, -_SSIM_RADIUS))
    mu1 = cv2.filter2D(img, -1, window)[valid]
    mu2 = cv2.filter2D(img2, -1, window)[valid]
    sigma1_sq = cv2.filter2D(img**2, -1, window)[valid] - mu1**2
    sigma2_sq = cv2.filter2D(img2**2, -1, window)[valid] - mu2**2
    sigma12 = cv2.filter2D(img * img2, -1, window)[valid] - mu1 * mu2
    numerator = (2 * mu1 * mu2 + c1) * (2 * sigma12 + c2)
    denominator = (mu1**2 + mu2**2 + c1) * (sigma1_sq + sigma2_sq + c2)
    return numerator / denominator


def region_psnr(img: np.ndarray, img2: np.ndarray, mask: np.ndarray) -> float:
    """Compute the PSNR (dB, peak 255) over the pixels where ``mask`` is true; NaN for an empty mask."""
    if not mask.any():
        return math.nan
    difference = img.astype(np.float64)[mask] - img2.astype(np.float64)[mask]
    mse = float(np.mean(difference**2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def bicubic_sr(lq: torch.Tensor, scale: int) -> torch.Tensor:
    """Upsample ``lq`` ``(1, C, H, W)`` with BasicSR's MATLAB-style bicubic ``imresize``."""
    return imresize(lq[0], scale).clamp(0.0, 1.0)[None]


def _read(path: Path) -> torch.Tensor:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"could not read image {path}")
    return img2tensor(image.astype(np.float32) / 255.0, bgr2rgb=True, float32=True)[None]


def _image_metrics(sr_bgr: np.ndarray, gt_bgr: np.ndarray, hard: np.ndarray, scale: int) -> dict[str, float]:
    metrics = {
        "psnr": float(calculate_psnr(sr_bgr, gt_bgr, crop_border=scale, test_y_channel=True)),
        "ssim": float(calculate_ssim(sr_bgr, gt_bgr, crop_border=scale, test_y_channel=True)),
    }
    inner = (slice(scale, -scale), slice(scale, -scale))
    sr_y = to_y_channel(sr_bgr[inner])[..., 0]
    gt_y = to_y_channel(gt_bgr[inner])[..., 0]
    hard_inner = hard[inner]
    similarity = ssim_map(sr_y, gt_y)
    hard_ssim_region = hard_inner[_SSIM_RADIUS:-_SSIM_RADIUS, _SSIM_RADIUS:-_SSIM_RADIUS]
    for region, mask, ssim_mask in (
        ("easy", ~hard_inner, ~hard_ssim_region),
        ("hard", hard_inner, hard_ssim_region),
    ):
        metrics[f"psnr_{region}"] = region_psnr(sr_y, gt_y, mask)
        metrics[f"ssim_{region}"] = float(similarity[ssim_mask].mean()) if ssim_mask.any() else math.nan
    metrics["hard_fraction"] = float(hard_inner.mean())
    return metrics


def evaluate_folder(
    upscaler: Callable[[torch.Tensor], torch.Tensor] | None,
    folder: PairedFolder,
    scale: int,
    settings: DifficultySettings,
    *,
    keep_images: bool = False,
    mask_predictor: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[dict[str, float], list[ImageResult]]:
    """Evaluate ``upscaler`` (``None`` for bicubic) on every image pair of ``folder``.

    Args:
        upscaler: Maps LR ``(1, 3, H, W)`` in [0, 1] to SR ``(1, 3, s*H, s*W)``.
        folder: Folder pair to read.
        scale: SR scale, also the border cropped before measuring.
        settings: Label settings with a resolved threshold, which define the easy and hard regions.
        keep_images: Store the SR, GT and mask arrays in the per-image results, for figures.
        mask_predictor: Maps LR to a fusion mask ``(1, 1, s*H, s*W)``, stored with ``keep_images``.

    Returns:
        The mean of each metric over images (regions absent from an image are skipped) and the
        per-image results.
    """
    results = []
    for hr_path, lr_path in folder.pairs():
        lq = _read(lr_path)
        gt = _read(hr_path)
        gt = gt[..., : lq.shape[-2] * scale, : lq.shape[-1] * scale]
        with torch.no_grad():
            sr = bicubic_sr(lq, scale) if upscaler is None else upscaler(lq).clamp(0.0, 1.0)
        hard = compute_label_mask(lq, gt, scale, settings)[0, 0].numpy() > 0.5
        sr_bgr = tensor2img(sr)
        gt_bgr = tensor2img(gt)
        result = ImageResult(hr_path.stem, _image_metrics(sr_bgr, gt_bgr, hard, scale))
        if keep_images:
            result.sr = sr_bgr[:, :, ::-1].copy()
            result.gt = gt_bgr[:, :, ::-1].copy()
            result.hard_mask = hard
            result.extras["psnr_map"] = compute_psnr_map(lq, gt, scale, settings)[0, 0].numpy()
            if mask_predictor is not None:
                with torch.no_grad():
                    result.predicted_mask = mask_predictor(lq)[0, 0].numpy()
        results.append(result)
    if not results:
        raise ValueError(f"no images to evaluate in {folder.gt}")
    means = {}
    for key in results[0].metrics:
        values = [r.metrics[key] for r in results if not math.isnan(r.metrics[key])]
        means[key] = float(np.mean(values)) if values else math.nan
    return means, results
