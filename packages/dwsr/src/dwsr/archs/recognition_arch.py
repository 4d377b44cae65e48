"""Difficulty recognition network of DWSR.

DWSR is described in "Difficulty-aware Image Super Resolution via Deep Adaptive Dual-Network"
(Qin, Xie, Shi, Wen; arXiv 1904.05802). Only the paper's abstract is public. It states that a
recognition network, trained on a PSNR prior, separates easy regions from hard ones. Its layout here is our choice: a small
EDSR-style body on the low-resolution input and one logit per pixel, where a logit above 0 means "hard".
"""

from __future__ import annotations

import torch
from basicsr.archs.arch_util import ResidualBlockNoBN, Upsample, make_layer
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

__all__ = ["MASK_RESOLUTIONS", "DWSRRecognitionNet"]

MASK_RESOLUTIONS = ("hr", "lr")


@ARCH_REGISTRY.register()
class DWSRRecognitionNet(nn.Module):
    """Predict a per-pixel difficulty logit map from a low-resolution image.

    Args:
        num_in_ch (int): Channel number of the input image. Default: 3.
        num_feat (int): Channel number of the intermediate features. Default: 32.
        num_block (int): Number of residual blocks. Default: 4.
        upscale (int): Super-resolution scale, used when ``mask_resolution`` is ``"hr"``. Default: 4.
        mask_resolution (str): ``"hr"`` predicts the logits at the output resolution through a
            sub-pixel upsampler; ``"lr"`` predicts them at the input resolution. Default: ``"hr"``.
        img_range (float): Image range that the normalised input is multiplied by. Default: 255.
        rgb_mean (tuple[float]): Image mean in RGB order, subtracted from the input. Default: DIV2K mean.
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_feat: int = 32,
        num_block: int = 4,
        upscale: int = 4,
        mask_resolution: str = "hr",
        img_range: float = 255.0,
        rgb_mean: tuple[float, ...] = (0.4488, 0.4371, 0.4040),
    ) -> None:
        super().__init__()
        if mask_resolution not in MASK_RESOLUTIONS:
            raise ValueError(f"mask_resolution must be one of {MASK_RESOLUTIONS}, got {mask_resolution!r}")
        if len(rgb_mean) != num_in_ch:
            raise ValueError(f"rgb_mean needs one value per input channel ({num_in_ch}), got {len(rgb_mean)}")
        self.upscale = upscale
        self.mask_resolution = mask_resolution
        self.img_range = img_range
        self.mean: torch.Tensor
        self.register_buffer("mean", torch.tensor(rgb_mean, dtype=torch.float32).view(1, num_in_ch, 1, 1))

        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = make_layer(ResidualBlockNoBN, num_block, num_feat=num_feat)
        self.conv_after_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.upsample = Upsample(upscale, num_feat) if mask_resolution == "hr" else nn.Identity()
        self.conv_last = nn.Conv2d(num_feat, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images ``(B, C, H, W)`` in [0, 1] to logits ``(B, 1, s*H, s*W)`` or ``(B, 1, H, W)``."""
        x = (x - self.mean) * self.img_range
        feat = self.conv_first(x)
        feat = self.conv_after_body(self.body(feat)) + feat
        return self.conv_last(self.upsample(feat))
