"""PSNR-prior difficulty labels of DWSR.

"Difficulty-aware Image Super Resolution via Deep Adaptive Dual-Network" (arXiv 1904.05802) labels regions
as easy or hard with a PSNR prior. Our reading splits the high-resolution image into square patches and
computes, in each patch, the PSNR of the bicubic upsampling of the low-resolution image. A patch is hard
(label 1) when its PSNR is below a threshold. Patch size, threshold
rule, colour channel, PSNR cap and bicubic kernel are options because the paper does not state them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from basicsr.utils.color_util import rgb2ycbcr_pt
from basicsr.utils.matlab_functions import imresize

__all__ = [
    "PSNR_CHANNELS",
    "THRESHOLD_RULES",
    "UPSAMPLERS",
    "DifficultySettings",
    "bicubic_upsample",
    "dataset_patch_psnrs",
    "difficulty_labels",
    "expand_patch_map",
    "median_db",
    "patch_psnr",
    "psnr_threshold",
]

logger = logging.getLogger(__name__)

THRESHOLD_RULES = ("fixed", "image_mean", "dataset_median")
UPSAMPLERS = ("matlab", "torch")
PSNR_CHANNELS = ("y", "rgb")


@dataclass(frozen=True)
class DifficultySettings:
    """Settings of the patch labels. Every default is our choice because the paper leaves them open.

    Attributes:
        patch_size: Side of the square label patches, in high-resolution pixels.
        rule: ``"fixed"`` (hard below ``threshold_db``), ``"image_mean"`` (hard below the mean patch PSNR of
            the same image) or ``"dataset_median"`` (hard below the median patch PSNR of the training set).
        threshold_db: The threshold of the ``"fixed"`` rule, or a precomputed dataset median for
            ``"dataset_median"``; ``None`` with ``"dataset_median"`` means "compute it from the data".
        channel: ``"y"`` measures PSNR on the BT.601 luma channel, ``"rgb"`` on all three channels.
        max_psnr: Cap in dB for patches where the bicubic upsampling is exact (the MSE is 0).
        upsampler: ``"matlab"`` uses BasicSR's MATLAB-style ``imresize``; ``"torch"`` uses
            ``F.interpolate(mode="bicubic")`` (a different kernel, faster).
    """

    patch_size: int = 8
    rule: str = "dataset_median"
    threshold_db: float | None = None
    channel: str = "y"
    max_psnr: float = 60.0
    upsampler: str = "matlab"

    def __post_init__(self) -> None:
        if not isinstance(self.patch_size, int) or self.patch_size < 1:
            raise ValueError(f"patch_size must be a positive integer, got {self.patch_size!r}")
        if self.rule not in THRESHOLD_RULES:
            raise ValueError(f"rule must be one of {THRESHOLD_RULES}, got {self.rule!r}")
        if self.rule == "fixed" and self.threshold_db is None:
            raise ValueError("rule 'fixed' needs threshold_db (in dB), got None")
        if self.channel not in PSNR_CHANNELS:
            raise ValueError(f"channel must be one of {PSNR_CHANNELS}, got {self.channel!r}")
        if self.upsampler not in UPSAMPLERS:
            raise ValueError(f"upsampler must be one of {UPSAMPLERS}, got {self.upsampler!r}")
        if not self.max_psnr > 0:
            raise ValueError(f"max_psnr must be positive (dB), got {self.max_psnr!r}")

    @classmethod
    def from_options(cls, options: dict | None) -> DifficultySettings:
        """Build settings from the ``train: difficulty:`` section of a BasicSR options dict."""
        options = dict(options or {})
        unknown = sorted(set(options) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(
                f"unknown difficulty option(s) {unknown}; valid keys are {sorted(cls.__dataclass_fields__)}"
            )
        return cls(**options)


def bicubic_upsample(lq: torch.Tensor, scale: int, upsampler: str = "matlab") -> torch.Tensor:
    """Upsample images ``(B, C, H, W)`` in [0, 1] by ``scale`` with a bicubic kernel, without clamping."""
    if upsampler not in UPSAMPLERS:
        raise ValueError(f"upsampler must be one of {UPSAMPLERS}, got {upsampler!r}")
    if upsampler == "torch":
        return F.interpolate(lq, scale_factor=scale, mode="bicubic", align_corners=False)
    images = [imresize(image.float().cpu(), scale) for image in lq]
    return torch.stack(images).to(device=lq.device, dtype=lq.dtype)


def patch_psnr(
    prediction: torch.Tensor,
    target: torch.Tensor,
    patch_size: int,
    *,
    channel: str = "y",
    max_psnr: float = 60.0,
) -> torch.Tensor:
    """Compute the PSNR of each ``patch_size`` square patch, for images in [0, 1].

    Patches at the right and bottom edges may be smaller when the size is not a multiple of
    ``patch_size``. Their PSNR uses the pixels they contain.

    Args:
        prediction: Images ``(B, 3, H, W)`` (or ``(B, 1, H, W)`` already in the measured channel).
        target: Reference images of the same shape.
        patch_size: Side of the patches in pixels.
        channel: ``"y"`` converts RGB to BT.601 luma first, ``"rgb"`` averages the squared error over
            channels.
        max_psnr: Value in dB for patches with zero error, and the upper bound of every value.

    Returns:
        PSNR map ``(B, 1, ceil(H / patch_size), ceil(W / patch_size))`` in dB.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ")
    if prediction.dim() != 4:
        raise ValueError(f"expected images (B, C, H, W), got shape {tuple(prediction.shape)}")
    if channel == "y" and prediction.shape[1] == 3:
        prediction = rgb2ycbcr_pt(prediction, y_only=True)
        target = rgb2ycbcr_pt(target, y_only=True)
    elif channel not in PSNR_CHANNELS:
        raise ValueError(f"channel must be one of {PSNR_CHANNELS}, got {channel!r}")
    squared_error = (prediction.double() - target.double()).pow(2).mean(dim=1, keepdim=True)
    # ceil_mode keeps partial edge patches; without padding, PyTorch divides by the pixels inside the image.
    mse = F.avg_pool2d(squared_error, patch_size, stride=patch_size, ceil_mode=True)
    floor_mse = 10.0 ** (-max_psnr / 10.0)
    psnr = 10.0 * torch.log10(1.0 / mse.clamp_min(floor_mse))
    return psnr.to(prediction.dtype)


def psnr_threshold(psnr_map: torch.Tensor, settings: DifficultySettings) -> torch.Tensor:
    """Return the threshold in dB for each image of ``psnr_map`` ``(B, 1, h, w)``, shape ``(B, 1, 1, 1)``."""
    batch = psnr_map.shape[0]
    if settings.rule == "image_mean":
        return psnr_map.mean(dim=(1, 2, 3), keepdim=True)
    if settings.threshold_db is None:
        raise ValueError(
            "rule 'dataset_median' needs threshold_db set to the dataset median; compute it with "
            "dataset_patch_psnrs(...) or `dwsr label`"
        )
    return psnr_map.new_full((batch, 1, 1, 1), float(settings.threshold_db))


def difficulty_labels(psnr_map: torch.Tensor, settings: DifficultySettings) -> torch.Tensor:
    """Label patches hard (1.0) when their PSNR is strictly below the threshold, else easy (0.0)."""
    return (psnr_map < psnr_threshold(psnr_map, settings)).to(psnr_map.dtype)


def expand_patch_map(patch_map: torch.Tensor, patch_size: int, size: Sequence[int]) -> torch.Tensor:
    """Repeat each patch value over its ``patch_size`` square and crop to ``size`` ``(H, W)``."""
    expanded = patch_map.repeat_interleave(patch_size, dim=-2).repeat_interleave(patch_size, dim=-1)
    height, width = int(size[0]), int(size[1])
    if expanded.shape[-2] < height or expanded.shape[-1] < width:
        raise ValueError(
            f"a {tuple(patch_map.shape[-2:])} patch map with patch_size {patch_size} cannot cover {height}x{width}"
        )
    return expanded[..., :height, :width]


def _read_rgb(path: Path) -> torch.Tensor:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"could not read image {path}")
    image = image[:, :, ::-1].astype(np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def dataset_patch_psnrs(
    pairs: Iterable[tuple[Path, Path]], scale: int, settings: DifficultySettings
) -> torch.Tensor:
    """Collect the patch PSNRs of the bicubic upsampling over (high-resolution, low-resolution) image files.

    The median of the result is the threshold of the ``"dataset_median"`` rule.

    Returns:
        1-D tensor of every patch PSNR in dB.
    """
    values = []
    for hr_path, lr_path in pairs:
        hr = _read_rgb(Path(hr_path))[None]
        lr = _read_rgb(Path(lr_path))[None]
        upsampled = bicubic_upsample(lr, scale, settings.upsampler)
        height, width = upsampled.shape[-2:]
        if hr.shape[-2] < height or hr.shape[-1] < width:
            raise ValueError(
                f"{hr_path} is {hr.shape[-2]}x{hr.shape[-1]}, smaller than {scale} x its LR image {lr_path}"
            )
        hr = hr[..., :height, :width]
        values.append(
            patch_psnr(
                upsampled, hr, settings.patch_size, channel=settings.channel, max_psnr=settings.max_psnr
            )
            .flatten()
            .float()
        )
    if not values:
        raise ValueError("no image pairs given to compute patch PSNRs from")
    result = torch.cat(values)
    logger.info(
        "Patch PSNR over %d images: median %.3f dB, mean %.3f dB", len(values), result.median(), result.mean()
    )
    return result


def median_db(values: torch.Tensor) -> float:
    """Return the median of patch PSNRs in dB as a float (the lower middle value for even counts)."""
    median = float(values.median())
    if math.isnan(median):
        raise ValueError("patch PSNRs contain NaN")
    return median
