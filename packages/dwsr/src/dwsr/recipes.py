"""BasicSR options dicts of DWSR and its single-way baseline, for the options files and the presets.

The ``paper`` recipe is the standard EDSR-baseline setting of 2019 SR papers (DIV2K, 48x48 LR patches,
batch 16, Adam at 1e-4, 300k iterations) with DWSR's extra options. The abstract of arXiv 1904.05802 gives
none of them, so every value is our choice. ``packages/dwsr/options/train_DWSR_x{2,3,4}.yml`` hold the same values.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from dwsr.baseline import matched_single_way_options
from dwsr.data import PairedFolder
from dwsr.models.stages import scale_stage_iters

__all__ = [
    "PAPER_STAGE_ITERS",
    "baseline_train_options",
    "dwsr_network_options",
    "dwsr_train_options",
    "shorten_schedule",
]

PAPER_TOTAL_ITER = 300_000
PAPER_STAGE_ITERS = (50_000, 150_000, 100_000)
_PAPER_MILESTONES = (125_000, 175_000, 275_000)

_RGB_MEAN = [0.4488, 0.4371, 0.4040]  # DIV2K mean, as in BasicSR's EDSR options


def dwsr_network_options(scale: int, **overrides: object) -> dict:
    """Return ``network_g`` options of an EDSR-baseline-size ``DWSRNet`` (64 features, 16 blocks per way)."""
    options = {
        "type": "DWSRNet",
        "num_in_ch": 3,
        "num_out_ch": 3,
        "num_feat": 64,
        "num_block": 16,
        "upscale": scale,
        "num_block_easy": None,
        "res_scale": 1,
        "img_range": 255.0,
        "rgb_mean": list(_RGB_MEAN),
        "way_type": "EDSR",
        "shared_head": False,
        "num_feat_recognition": 32,
        "num_block_recognition": 4,
        "mask_resolution": "hr",
        "mask_mode": "soft",
    }
    unknown = sorted(set(overrides) - set(options))
    if unknown:
        raise ValueError(f"unknown DWSRNet option(s) {unknown}; valid ones are {sorted(options)}")
    options.update(overrides)
    return options


def _stages(stage_iters: Sequence[int]) -> list[dict]:
    recognition, ways, joint = stage_iters
    return [
        {"name": "recognition", "iters": recognition, "train": ["recognition"], "losses": ["recognition"]},
        {
            "name": "ways",
            "iters": ways,
            "train": ["easy_way", "hard_way"],
            "losses": ["pixel", "easy", "hard"],
            "fusion_mask": "label",
        },
        {"name": "joint", "iters": joint, "train": "all", "losses": "all", "fusion_mask": "predicted"},
    ]


def _metrics(scale: int) -> dict:
    return {
        "psnr": {"type": "calculate_psnr", "crop_border": scale, "test_y_channel": True},
        "ssim": {"type": "calculate_ssim", "crop_border": scale, "test_y_channel": True},
    }


def _common_options(
    name: str,
    model_type: str,
    scale: int,
    network: dict,
    train_folder: PairedFolder,
    val_folder: PairedFolder | None,
    *,
    num_gpu: int | str,
    seed: int,
    batch_size: int,
    lr_patch: int,
    enlarge_ratio: int,
    num_workers: int,
    total_iter: int,
    val_freq: int,
    checkpoint_freq: int,
    print_freq: int,
) -> dict:
    datasets = {
        "train": train_folder.dataset_options(
            gt_size=lr_patch * scale,
            use_hflip=True,
            use_rot=True,
            num_worker_per_gpu=num_workers,
            batch_size_per_gpu=batch_size,
            dataset_enlarge_ratio=enlarge_ratio,
            prefetch_mode=None,
        )
    }
    if val_folder is not None:
        datasets["val"] = val_folder.dataset_options()
    options = {
        "name": name,
        "model_type": model_type,
        "scale": scale,
        "num_gpu": num_gpu,
        "manual_seed": seed,
        "datasets": datasets,
        "network_g": network,
        "path": {"pretrain_network_g": None, "strict_load_g": True, "resume_state": None},
        "train": {
            "ema_decay": 0,
            "optim_g": {"type": "Adam", "lr": 1e-4, "weight_decay": 0, "betas": [0.9, 0.99]},
            "scheduler": {"type": "MultiStepLR", "milestones": [total_iter], "gamma": 0.5},
            "total_iter": total_iter,
            "warmup_iter": -1,
            "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0, "reduction": "mean"},
        },
        "val": {"val_freq": val_freq, "save_img": False, "metrics": _metrics(scale)},
        "logger": {
            "print_freq": print_freq,
            "save_checkpoint_freq": checkpoint_freq,
            "use_tb_logger": False,
            "wandb": {"project": None, "resume_id": None},
        },
        "dist_params": {"backend": "nccl", "port": 29500},
    }
    if val_folder is None:
        del options["val"]
    return options


def dwsr_train_options(
    name: str,
    scale: int,
    train_folder: PairedFolder,
    val_folder: PairedFolder | None,
    *,
    network: dict | None = None,
    difficulty: dict | None = None,
    total_iter: int = PAPER_TOTAL_ITER,
    seed: int = 0,
    num_gpu: int | str = "auto",
    batch_size: int = 16,
    lr_patch: int = 48,
    enlarge_ratio: int = 100,
    num_workers: int = 4,
    lr: float = 1e-4,
    val_freq: int = 5000,
    checkpoint_freq: int = 5000,
    print_freq: int = 100,
) -> dict:
    """Return the full options of a ``DWSRModel`` run; the defaults are the ``paper`` recipe."""
    options = _common_options(
        name,
        "DWSRModel",
        scale,
        network or dwsr_network_options(scale),
        train_folder,
        val_folder,
        num_gpu=num_gpu,
        seed=seed,
        batch_size=batch_size,
        lr_patch=lr_patch,
        enlarge_ratio=enlarge_ratio,
        num_workers=num_workers,
        total_iter=PAPER_TOTAL_ITER,
        val_freq=val_freq,
        checkpoint_freq=checkpoint_freq,
        print_freq=print_freq,
    )
    train = options["train"]
    train["optim_g"]["lr"] = lr
    # The learning rate restarts at the start of the second and third stage.
    train["scheduler"] = {
        "type": "MultiStepRestartLR",
        "milestones": list(_PAPER_MILESTONES),
        "gamma": 0.5,
        "restarts": [PAPER_STAGE_ITERS[0], PAPER_STAGE_ITERS[0] + PAPER_STAGE_ITERS[1]],
        "restart_weights": [1, 0.5],
    }
    train["easy_opt"] = {"type": "L1Loss", "loss_weight": 1.0, "reduction": "mean"}
    train["hard_opt"] = {"type": "L1Loss", "loss_weight": 1.0, "reduction": "mean"}
    train["recognition_opt"] = {"type": "DWSRMaskBCELoss", "loss_weight": 0.1, "pos_weight": None}
    train["difficulty"] = {
        "patch_size": 8,
        "rule": "dataset_median",
        "threshold_db": None,
        "channel": "y",
        "max_psnr": 60.0,
        "upsampler": "matlab",
        **(difficulty or {}),
    }
    train["stages"] = _stages(PAPER_STAGE_ITERS)
    if total_iter != PAPER_TOTAL_ITER:
        shorten_schedule(options, total_iter)
    return options


def baseline_train_options(dwsr_options: dict, name: str) -> dict:
    """Return ``SRModel`` options of the single-way baseline matched to ``dwsr_options``.

    The baseline keeps the data, seed, iterations, optimiser and pixel loss. Its network is one ``EDSR``
    with the parameter count of the whole DWSR network, and its schedule is a plain multi-step schedule
    over the same milestones, without restarts.
    """
    options = copy.deepcopy(dwsr_options)
    options["name"] = name
    options["model_type"] = "SRModel"
    options["network_g"] = matched_single_way_options(dwsr_options["network_g"])
    train = options["train"]
    for key in ("easy_opt", "hard_opt", "recognition_opt", "difficulty", "stages"):
        train.pop(key, None)
    scheduler = train["scheduler"]
    train["scheduler"] = {
        "type": "MultiStepLR",
        "milestones": scheduler["milestones"],
        "gamma": scheduler["gamma"],
    }
    return options


def shorten_schedule(options: dict, total_iter: int) -> dict:
    """Rescale ``total_iter``, the stages and the scheduler of ``options`` in place to ``total_iter``.

    Stage lengths, milestones and restarts keep their proportions; validation and checkpoint intervals
    are capped at ``total_iter``.
    """
    if total_iter < 1:
        raise ValueError(f"total_iter must be at least 1, got {total_iter}")
    train = options["train"]
    old_total = int(train["total_iter"])
    train["total_iter"] = total_iter
    stages = train.get("stages")
    if stages:
        for stage, iters in zip(
            stages, scale_stage_iters([s["iters"] for s in stages], total_iter), strict=True
        ):
            stage["iters"] = iters
    scheduler = train.get("scheduler", {})

    def rescale(values: Sequence[int]) -> list[int]:
        return [max(1, round(value * total_iter / old_total)) for value in values]

    if "milestones" in scheduler:
        scheduler["milestones"] = rescale(scheduler["milestones"])
    if "restarts" in scheduler and stages:
        starts = [sum(s["iters"] for s in stages[:index]) for index in range(1, len(stages))]
        scheduler["restarts"] = starts[: len(scheduler["restarts"])]
    if "val" in options:
        options["val"]["val_freq"] = min(int(float(options["val"]["val_freq"])), total_iter)
    logger_options = options.get("logger", {})
    for key in ("save_checkpoint_freq", "print_freq"):
        if key in logger_options:
            logger_options[key] = min(int(float(logger_options[key])), total_iter)
    return options
