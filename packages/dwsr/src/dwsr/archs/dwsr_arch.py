"""Dual-way super-resolution network of DWSR.

"Difficulty-aware Image Super Resolution via Deep Adaptive Dual-Network" (Qin, Xie, Shi, Wen;
arXiv 1904.05802) runs two SR ways, one trained on easy regions and one on hard regions, and combines
them with a region mask from a difficulty recognition network. The abstract gives no architecture, so
the ways are BasicSR SR networks (EDSR by default) and the fusion is

    SR = M * SR_hard + (1 - M) * SR_easy,

with M in [0, 1] the predicted probability that a pixel is hard. Both choices are ours.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from basicsr.archs.edsr_arch import EDSR
from basicsr.archs.srresnet_arch import MSRResNet
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from dwsr.archs.recognition_arch import MASK_RESOLUTIONS, DWSRRecognitionNet

__all__ = ["MASK_MODES", "WAY_TYPES", "DWSRNet", "DWSROutput", "fuse_ways"]

MASK_MODES = ("soft", "hard")
WAY_TYPES = ("EDSR", "MSRResNet")


class DWSROutput(NamedTuple):
    """Outputs of one forward pass of :class:`DWSRNet`, with images of shape ``(B, C, s*H, s*W)``.

    Fields of the parts that the pass skipped are None.
    """

    output: torch.Tensor | None
    easy: torch.Tensor | None
    hard: torch.Tensor | None
    mask: torch.Tensor | None
    mask_logits: torch.Tensor | None


def fuse_ways(easy: torch.Tensor, hard: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Combine the two ways as ``mask * hard + (1 - mask) * easy``; ``mask`` is ``(B, 1, H, W)``."""
    return mask * hard + (1.0 - mask) * easy


def _build_way(
    way_type: str,
    num_in_ch: int,
    num_out_ch: int,
    num_feat: int,
    num_block: int,
    upscale: int,
    res_scale: float,
    img_range: float,
    rgb_mean: tuple[float, ...],
) -> nn.Module:
    if way_type == "EDSR":
        return EDSR(
            num_in_ch=num_in_ch,
            num_out_ch=num_out_ch,
            num_feat=num_feat,
            num_block=num_block,
            upscale=upscale,
            res_scale=res_scale,
            img_range=img_range,
            rgb_mean=rgb_mean,
        )
    return MSRResNet(
        num_in_ch=num_in_ch, num_out_ch=num_out_ch, num_feat=num_feat, num_block=num_block, upscale=upscale
    )


@ARCH_REGISTRY.register()
class DWSRNet(nn.Module):
    """Two SR ways fused by a predicted difficulty mask.

    Args:
        num_in_ch (int): Channel number of the input image. Default: 3.
        num_out_ch (int): Channel number of the output image. Default: 3.
        num_feat (int): Channel number of the features of each way. Default: 64.
        num_block (int): Number of residual blocks of the hard way. Default: 16.
        upscale (int): Super-resolution scale, 2, 3 or 4. Default: 4.
        num_block_easy (int | None): Number of residual blocks of the easy way; ``None`` uses
            ``num_block``. Default: None.
        res_scale (float): Residual scale of EDSR ways. Default: 1.
        img_range (float): Image range of EDSR ways and of the recognition network. Default: 255.
        rgb_mean (tuple[float]): Image mean in RGB order. Default: DIV2K mean.
        way_type (str): BasicSR network of each way, ``"EDSR"`` or ``"MSRResNet"``. Default: ``"EDSR"``.
        shared_head (bool): The two ways share their first convolution. Default: False.
        num_feat_recognition (int): Features of the recognition network. Default: 32.
        num_block_recognition (int): Residual blocks of the recognition network. Default: 4.
        mask_resolution (str): ``"hr"`` predicts the mask at output resolution; ``"lr"`` predicts it at
            input resolution and repeats each value over its ``upscale x upscale`` block. Default: ``"hr"``.
        mask_mode (str): ``"soft"`` fuses with the probability; ``"hard"`` fuses with the probability
            rounded to 0 or 1, with a straight-through gradient in training. Default: ``"soft"``.
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_block: int = 16,
        upscale: int = 4,
        num_block_easy: int | None = None,
        res_scale: float = 1.0,
        img_range: float = 255.0,
        rgb_mean: tuple[float, ...] = (0.4488, 0.4371, 0.4040),
        way_type: str = "EDSR",
        shared_head: bool = False,
        num_feat_recognition: int = 32,
        num_block_recognition: int = 4,
        mask_resolution: str = "hr",
        mask_mode: str = "soft",
    ) -> None:
        super().__init__()
        if way_type not in WAY_TYPES:
            raise ValueError(f"way_type must be one of {WAY_TYPES}, got {way_type!r}")
        if mask_mode not in MASK_MODES:
            raise ValueError(f"mask_mode must be one of {MASK_MODES}, got {mask_mode!r}")
        if mask_resolution not in MASK_RESOLUTIONS:
            raise ValueError(f"mask_resolution must be one of {MASK_RESOLUTIONS}, got {mask_resolution!r}")
        if upscale not in (2, 3, 4):
            raise ValueError(f"upscale must be 2, 3 or 4, got {upscale!r}")
        self.upscale = upscale
        self.mask_mode = mask_mode
        self.mask_resolution = mask_resolution
        rgb_mean = tuple(rgb_mean)

        way_kwargs: dict[str, Any] = dict(
            way_type=way_type,
            num_in_ch=num_in_ch,
            num_out_ch=num_out_ch,
            num_feat=num_feat,
            upscale=upscale,
            res_scale=res_scale,
            img_range=img_range,
            rgb_mean=rgb_mean,
        )
        easy_blocks = num_block if num_block_easy is None else num_block_easy
        self.easy_way = _build_way(num_block=easy_blocks, **way_kwargs)
        self.hard_way = _build_way(num_block=num_block, **way_kwargs)
        if shared_head:
            # One module object in both ways, so the head's weights are a single set of parameters.
            self.hard_way.conv_first = self.easy_way.conv_first
        self.recognition = DWSRRecognitionNet(
            num_in_ch=num_in_ch,
            num_feat=num_feat_recognition,
            num_block=num_block_recognition,
            upscale=upscale,
            mask_resolution=mask_resolution,
            img_range=img_range,
            rgb_mean=rgb_mean,
        )

    def predict_mask(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the fusion mask ``(B, 1, s*H, s*W)`` and the raw logits of the recognition network."""
        logits = self.recognition(x)
        probability = torch.sigmoid(logits)
        if self.mask_mode == "hard":
            binary = (probability > 0.5).to(probability.dtype)
            # Straight-through estimator: binary values forward, the sigmoid's gradient backward.
            mask = binary + probability - probability.detach() if self.training else binary
        else:
            mask = probability
        if self.mask_resolution == "lr":
            mask = F.interpolate(mask, scale_factor=self.upscale, mode="nearest")
        return mask, logits

    def forward_ways(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        run_ways: bool = True,
        run_recognition: bool = True,
    ) -> DWSROutput:
        """Run the ways and the recognition network on ``x`` ``(B, C, H, W)``.

        Args:
            x: Low-resolution images in [0, 1].
            mask: Optional mask ``(B, 1, s*H, s*W)`` used for the fusion in place of the predicted one,
                for example the PSNR-prior labels during training.
            run_ways: Compute the two ways and the fused output; when False those fields are None.
            run_recognition: Compute the predicted mask and logits; when False those fields are None and
                ``mask`` must be given if ``run_ways`` is True.
        """
        predicted_mask = logits = None
        if run_recognition:
            predicted_mask, logits = self.predict_mask(x)
        if not run_ways:
            return DWSROutput(None, None, None, predicted_mask, logits)
        fusion_mask = predicted_mask if mask is None else mask
        if fusion_mask is None:
            raise ValueError("pass a mask to fuse the ways when run_recognition is False")
        easy = self.easy_way(x)
        hard = self.hard_way(x)
        if fusion_mask.shape[-2:] != easy.shape[-2:]:
            raise ValueError(
                f"mask has spatial size {tuple(fusion_mask.shape[-2:])} but the ways output "
                f"{tuple(easy.shape[-2:])}; pass a mask at the output resolution"
            )
        return DWSROutput(fuse_ways(easy, hard, fusion_mask), easy, hard, predicted_mask, logits)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        return_all: bool = False,
        run_ways: bool = True,
        run_recognition: bool = True,
    ) -> torch.Tensor | DWSROutput | None:
        """Super-resolve ``x`` ``(B, C, H, W)`` to ``(B, C, s*H, s*W)``.

        With ``return_all`` the result is the :class:`DWSROutput` of :meth:`forward_ways`; training goes
        through this method so that DataParallel and DistributedDataParallel wrappers see the call.
        """
        outputs = self.forward_ways(x, mask, run_ways=run_ways, run_recognition=run_recognition)
        return outputs if return_all else outputs.output
