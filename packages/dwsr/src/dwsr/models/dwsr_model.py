"""BasicSR model class that trains DWSR with its PSNR-prior labels and staged schedule.

"Difficulty-aware Image Super Resolution via Deep Adaptive Dual-Network" (arXiv 1904.05802) names the
parts but not the losses. Ours, each with its own ``loss_weight`` in the options file:

- ``pixel_opt``: L1 of the fused output against the ground truth;
- ``easy_opt``: L1 of the easy way, restricted to pixels labelled easy;
- ``hard_opt``: L1 of the hard way, restricted to pixels labelled hard;
- ``recognition_opt``: binary cross-entropy of the recognition logits against the labels.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from basicsr.data.data_util import paired_paths_from_folder
from basicsr.losses import build_loss
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY

from dwsr.difficulty import (
    DifficultySettings,
    bicubic_upsample,
    dataset_patch_psnrs,
    difficulty_labels,
    expand_patch_map,
    median_db,
    patch_psnr,
)
from dwsr.models.stages import TrainingStage, parse_stages

__all__ = ["DWSRModel", "compute_label_mask", "compute_psnr_map"]

_LOSS_OPTION_KEYS = {
    "pixel": "pixel_opt",
    "easy": "easy_opt",
    "hard": "hard_opt",
    "recognition": "recognition_opt",
}


def compute_psnr_map(
    lq: torch.Tensor, gt: torch.Tensor, scale: int, settings: DifficultySettings
) -> torch.Tensor:
    """Return the patch PSNR map ``(B, 1, h, w)`` of the bicubic upsampling of ``lq`` against ``gt``.

    The upsampling is clamped to [0, 1] like a stored image and compared with ``gt`` cropped to its size.
    """
    with torch.no_grad():
        upsampled = bicubic_upsample(lq, scale, settings.upsampler).clamp(0.0, 1.0)
        height, width = upsampled.shape[-2:]
        return patch_psnr(
            upsampled,
            gt[..., :height, :width],
            settings.patch_size,
            channel=settings.channel,
            max_psnr=settings.max_psnr,
        )


def compute_label_mask(
    lq: torch.Tensor, gt: torch.Tensor, scale: int, settings: DifficultySettings
) -> torch.Tensor:
    """Return the PSNR-prior label mask ``(B, 1, H, W)`` at the resolution of ``gt`` (1 = hard pixel).

    Pixels of ``gt`` outside ``scale`` times the size of ``lq`` repeat the nearest label.
    """
    height, width = lq.shape[-2] * scale, lq.shape[-1] * scale
    with torch.no_grad():
        labels = difficulty_labels(compute_psnr_map(lq, gt, scale, settings), settings)
        mask = expand_patch_map(labels, settings.patch_size, (height, width))
    if (height, width) != tuple(gt.shape[-2:]):
        mask = F.pad(mask, (0, gt.shape[-1] - width, 0, gt.shape[-2] - height), mode="replicate")
    return mask


def _masked_loss(
    criterion: torch.nn.Module, prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
):
    # BasicSR's weighted mean divides by the weight sum, which is 0 when a batch has no pixel of this kind.
    if float(weight.sum()) == 0.0:
        return prediction.sum() * 0.0
    return criterion(prediction, target, weight=weight)


@MODEL_REGISTRY.register()
class DWSRModel(SRModel):
    """``SRModel`` for a ``DWSRNet`` generator, with the difficulty labels, extra losses and stages.

    Extra options under ``train``: ``easy_opt``, ``hard_opt``, ``recognition_opt`` (BasicSR loss
    options, for example ``{type: L1Loss, loss_weight: 1.0}``), ``difficulty`` (the fields of
    :class:`dwsr.difficulty.DifficultySettings`) and ``stages`` (see :mod:`dwsr.models.stages`).
    """

    def init_training_settings(self):
        network = self.get_bare_model(self.net_g)
        if not hasattr(network, "forward_ways"):
            raise TypeError(
                f"DWSRModel needs network_g of type DWSRNet, got {type(network).__name__}; "
                "use model_type SRModel for single-way networks"
            )
        train_opt = self.opt["train"]
        super().init_training_settings()

        self.criteria = {"pixel": self.cri_pix}
        for name in ("easy", "hard", "recognition"):
            loss_opt = train_opt.get(_LOSS_OPTION_KEYS[name])
            self.criteria[name] = build_loss(dict(loss_opt)).to(self.device) if loss_opt else None

        self.stages = parse_stages(train_opt.get("stages"), int(train_opt["total_iter"]))
        for stage in self.stages:
            missing = [name for name in stage.losses if self.criteria.get(name) is None]
            if missing:
                raise ValueError(
                    f"stage {stage.name!r} uses loss(es) {missing} but train has no "
                    f"{', '.join(_LOSS_OPTION_KEYS[name] for name in missing)}; add them or drop them from the stage"
                )
        self.difficulty = self._resolve_difficulty(
            DifficultySettings.from_options(train_opt.get("difficulty"))
        )
        self.current_stage: TrainingStage | None = None

    def _resolve_difficulty(self, settings: DifficultySettings) -> DifficultySettings:
        """Fill in the dataset median of the training folder when the rule needs it and none is given."""
        if settings.rule != "dataset_median" or settings.threshold_db is not None:
            return settings
        train_set = self.opt.get("datasets", {}).get("train")
        if not train_set or train_set.get("dataroot_gt") is None or train_set.get("dataroot_lq") is None:
            raise ValueError(
                "difficulty rule 'dataset_median' needs datasets.train.dataroot_gt and dataroot_lq to compute the "
                "median, or train.difficulty.threshold_db set to a precomputed median (see `dwsr label`)"
            )
        paths = paired_paths_from_folder(
            [train_set["dataroot_lq"], train_set["dataroot_gt"]],
            ["lq", "gt"],
            train_set.get("filename_tmpl", "{}"),
        )
        pairs = [(item["gt_path"], item["lq_path"]) for item in paths]
        threshold = median_db(dataset_patch_psnrs(pairs, int(self.opt["scale"]), settings))
        get_root_logger().info(f"Difficulty threshold: dataset median patch PSNR {threshold:.4f} dB")
        return DifficultySettings(**{**settings.__dict__, "threshold_db": threshold})

    def stage_at(self, current_iter: int) -> TrainingStage:
        """Return the stage that iteration ``current_iter`` (1-based) belongs to."""
        for stage in self.stages:
            if stage.first_iter <= current_iter <= stage.last_iter:
                return stage
        return self.stages[-1]

    def _enter_stage(self, stage: TrainingStage) -> None:
        network = self.get_bare_model(self.net_g)
        for parameter in network.parameters():
            parameter.requires_grad_(False)
        for part in stage.train:
            for parameter in getattr(network, part).parameters():
                parameter.requires_grad_(True)
        self.current_stage = stage
        get_root_logger().info(
            f"Stage {stage.name!r} (iters {stage.first_iter}-{stage.last_iter}): train {list(stage.train)}, "
            f"losses {list(stage.losses)}, fusion mask {stage.fusion_mask}"
        )

    def optimize_parameters(self, current_iter):
        stage = self.stage_at(current_iter)
        if stage is not self.current_stage:
            self._enter_stage(stage)
        self.optimizer_g.zero_grad(set_to_none=True)

        scale = int(self.opt["scale"])
        label_mask = compute_label_mask(self.lq, self.gt, scale, self.difficulty)
        needs_ways = any(name in stage.losses for name in ("pixel", "easy", "hard"))
        needs_mask = "recognition" in stage.losses or (needs_ways and stage.fusion_mask == "predicted")

        # Only the parts this stage's losses use run forward, so the first stage skips both ways.
        # NOTE: under DistributedDataParallel such stages need `find_unused_parameters: true` in the options.
        outputs = self.net_g(
            self.lq,
            label_mask if stage.fusion_mask == "label" else None,
            return_all=True,
            run_ways=needs_ways,
            run_recognition=needs_mask,
        )
        mask, logits = outputs.mask, outputs.mask_logits
        loss_dict = OrderedDict()
        if needs_ways:
            self.output = outputs.output
            if "pixel" in stage.losses:
                loss_dict["l_pix"] = self.criteria["pixel"](outputs.output, self.gt)
            if "easy" in stage.losses:
                loss_dict["l_easy"] = _masked_loss(
                    self.criteria["easy"], outputs.easy, self.gt, 1.0 - label_mask
                )
            if "hard" in stage.losses:
                loss_dict["l_hard"] = _masked_loss(self.criteria["hard"], outputs.hard, self.gt, label_mask)
        if "recognition" in stage.losses:
            target = label_mask
            if logits.shape[-2:] != target.shape[-2:]:
                target = F.adaptive_avg_pool2d(target, logits.shape[-2:])
            loss_dict["l_recog"] = self.criteria["recognition"](logits, target)
        l_total = sum(loss_dict.values())
        l_total.backward()
        self.optimizer_g.step()

        with torch.no_grad():
            loss_dict["hard_fraction"] = label_mask.mean()
            if mask is not None:
                predicted_hard = (mask > 0.5).to(label_mask.dtype)
                loss_dict["mask_accuracy"] = (predicted_hard == label_mask).to(label_mask.dtype).mean()
        self.log_dict = self.reduce_loss_dict(loss_dict)

        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)
