"""Shared fixtures: tiny DWSR options and a small paired dataset from scikit-image's photographs."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

import dwsr  # noqa: F401  (registers the DWSR classes in BasicSR's registries)
from dwsr.data import build_skimage_dataset

# The test networks are tiny, so one thread is as fast as two and leaves the other core to parallel jobs.
torch.set_num_threads(1)

TINY_NETWORK = {
    "type": "DWSRNet",
    "num_feat": 8,
    "num_block": 1,
    "upscale": 2,
    "num_feat_recognition": 4,
    "num_block_recognition": 1,
}


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> dict[str, Path]:
    """Three training photographs (96 px) and one held-out photograph (48 px), at x2."""
    root = tmp_path_factory.mktemp("skimage_sr")
    return build_skimage_dataset(
        root,
        scales=(2,),
        train_photos=("astronaut", "coffee", "camera"),
        test_photos=("chelsea",),
        train_crop=96,
        test_crop=48,
    )


def tiny_options(
    experiments_root: Path, dataset: dict[str, Path] | None = None, *, total_iter: int = 3
) -> dict:
    """Return a complete DWSRModel options dict for a tiny network, three one-iteration stages."""
    options = {
        "name": "tiny",
        "model_type": "DWSRModel",
        "scale": 2,
        "num_gpu": 0,
        "manual_seed": 0,
        "is_train": True,
        "dist": False,
        "rank": 0,
        "world_size": 1,
        "network_g": copy.deepcopy(TINY_NETWORK),
        "path": {
            "pretrain_network_g": None,
            "strict_load_g": True,
            "resume_state": None,
            "models": str(experiments_root / "models"),
            "training_states": str(experiments_root / "training_states"),
        },
        "train": {
            "ema_decay": 0,
            "optim_g": {"type": "Adam", "lr": 1e-3, "weight_decay": 0, "betas": [0.9, 0.99]},
            "scheduler": {"type": "MultiStepLR", "milestones": [100], "gamma": 0.5},
            "total_iter": total_iter,
            "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0, "reduction": "mean"},
            "easy_opt": {"type": "L1Loss", "loss_weight": 1.0, "reduction": "mean"},
            "hard_opt": {"type": "L1Loss", "loss_weight": 1.0, "reduction": "mean"},
            "recognition_opt": {"type": "DWSRMaskBCELoss", "loss_weight": 0.1},
            "difficulty": {"patch_size": 4, "rule": "image_mean"},
            "stages": [
                {"name": "recognition", "iters": 1, "train": ["recognition"], "losses": ["recognition"]},
                {
                    "name": "ways",
                    "iters": 1,
                    "train": ["easy_way", "hard_way"],
                    "losses": ["pixel", "easy", "hard"],
                    "fusion_mask": "label",
                },
                {"name": "joint", "iters": total_iter - 2, "train": "all", "losses": "all"},
            ],
        },
        "val": {"metrics": {}},
    }
    if dataset is not None:
        options["datasets"] = {
            "train": {
                "name": "skimage",
                "type": "PairedImageDataset",
                "dataroot_gt": str(dataset["train"] / "GTmod12"),
                "dataroot_lq": str(dataset["train"] / "LRbicx2"),
                "io_backend": {"type": "disk"},
            }
        }
    return options
