"""Reproduction of DWSR for ``qcore-reproduce``: DWSR against a single-way baseline of equal size.

Both networks train through BasicSR's ``train_pipeline`` for the same iterations on the same data. The
report gives the Y-channel PSNR and SSIM of both and of bicubic upsampling, over whole images and over
their easy and hard regions. The regions are the PSNR-prior labels of the bicubic upsampling, with the
threshold taken from the training set.

Presets:

- ``smoke``: a tiny network for a few iterations on three photographs;
- ``default``: a small network for a few minutes of CPU, trained on scikit-image's photographs and tested
  on other photographs;
- ``paper``: the EDSR-baseline-size recipe at x2, x3 and x4 on DIV2K, tested on Set5, Set14, BSD100 and
  Urban100 under ``data_root``.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dwsr.baseline import count_parameters
from dwsr.data import (
    BENCHMARK_SETS,
    SKIMAGE_TEST_PHOTOS,
    SKIMAGE_TRAIN_PHOTOS,
    MissingDataError,
    PairedFolder,
    benchmark_folder,
    build_skimage_dataset,
    check_folders,
    div2k_folder,
)
from dwsr.difficulty import DifficultySettings, dataset_patch_psnrs, median_db
from dwsr.evaluation import ImageResult, evaluate_folder
from dwsr.figures import plot_crops, plot_difficulty, select_crop
from dwsr.pipeline import experiment_folder, load_trained_network, run_train_pipeline, save_options
from dwsr.recipes import baseline_train_options, dwsr_network_options, dwsr_train_options
from qcore.bench import count_flops
from qcore.report import markdown_table
from qcore.reproduce import DataNotFoundError, ReproductionContext, ReproductionResult, ResultRow

__all__ = ["PRESETS", "ReproductionPreset", "reproduce"]

logger = logging.getLogger(__name__)

_HOW_TO_GET = (
    "Put DIV2K under DATA_ROOT/DIV2K (DIV2K_train_HR, DIV2K_train_LR_bicubic/X2, X3, X4) from "
    "https://data.vision.ee.ethz.ch/cvl/DIV2K/ and Set5, Set14, BSD100, Urban100 under DATA_ROOT/<name>/"
    "{GTmod12, LRbicx2, LRbicx3, LRbicx4} as in BasicSR's docs/DatasetPreparation.md."
)
_METRICS = ("psnr", "ssim", "psnr_easy", "psnr_hard", "ssim_easy", "ssim_hard")


@dataclass(frozen=True)
class ReproductionPreset:
    """Data, network size and training length of one preset; all values are our choices."""

    scales: tuple[int, ...]
    total_iter: int
    network: dict = field(default_factory=dict)
    batch_size: int = 16
    lr_patch: int = 48
    lr: float = 1e-4
    enlarge_ratio: int = 100
    num_workers: int = 4
    patch_size: int = 8
    train_photos: tuple[str, ...] = SKIMAGE_TRAIN_PHOTOS
    test_photos: tuple[str, ...] = SKIMAGE_TEST_PHOTOS
    train_crop: int = 384
    test_crop: int = 240
    val_freq: int = 5000
    checkpoint_freq: int = 5000
    print_freq: int = 100


PRESETS = {
    "smoke": ReproductionPreset(
        scales=(2,),
        total_iter=3,
        network={"num_feat": 8, "num_block": 1, "num_feat_recognition": 4, "num_block_recognition": 1},
        batch_size=2,
        lr_patch=16,
        lr=2e-4,
        enlarge_ratio=1,
        num_workers=0,
        patch_size=4,
        train_photos=("astronaut", "coffee", "camera"),
        test_photos=("chelsea",),
        train_crop=96,
        test_crop=48,
        val_freq=3,
        checkpoint_freq=3,
        print_freq=1,
    ),
    "default": ReproductionPreset(
        scales=(2,),
        total_iter=300,
        network={"num_feat": 32, "num_block": 4, "num_feat_recognition": 16, "num_block_recognition": 2},
        batch_size=8,
        lr_patch=24,
        lr=5e-4,
        enlarge_ratio=50,
        num_workers=0,
        val_freq=300,
        checkpoint_freq=100,
        print_freq=50,
    ),
    "paper": ReproductionPreset(scales=(2, 3, 4), total_iter=300_000),
}


@dataclass
class _ScaleData:
    scale: int
    train: PairedFolder
    val: PairedFolder | None
    tests: list[PairedFolder]


def _collect_data(context: ReproductionContext, preset: ReproductionPreset) -> list[_ScaleData]:
    if context.preset != "paper":
        root = Path(context.cache_dir or context.run_dir.path) / f"skimage_sr_{context.preset}"
        splits = build_skimage_dataset(
            root,
            scales=preset.scales,
            train_photos=preset.train_photos,
            test_photos=preset.test_photos,
            train_crop=preset.train_crop,
            test_crop=preset.test_crop,
        )
        return [
            _ScaleData(
                scale,
                PairedFolder(
                    "skimage_train", splits["train"] / "GTmod12", splits["train"] / f"LRbicx{scale}"
                ),
                PairedFolder("skimage_test", splits["test"] / "GTmod12", splits["test"] / f"LRbicx{scale}"),
                [PairedFolder("skimage_test", splits["test"] / "GTmod12", splits["test"] / f"LRbicx{scale}")],
            )
            for scale in preset.scales
        ]
    data_root = context.require_data("DIV2K", _HOW_TO_GET)
    data_root = data_root.parent
    result = [
        _ScaleData(
            scale,
            div2k_folder(data_root, scale),
            benchmark_folder(data_root, "Set5", scale),
            [benchmark_folder(data_root, name, scale) for name in BENCHMARK_SETS],
        )
        for scale in preset.scales
    ]
    try:
        check_folders([folder for item in result for folder in (item.train, *item.tests)])
    except MissingDataError as error:
        raise DataNotFoundError(str(error)) from error
    return result


def _train(options: dict, context: ReproductionContext) -> tuple[Path, float]:
    options_path = save_options(options, context.run_dir.path / "options" / f"{options['name']}.yml")
    started = time.perf_counter()
    run_train_pipeline(options_path, context.run_dir.path)
    seconds = time.perf_counter() - started
    return experiment_folder(context.run_dir.path, options["name"]) / "models" / "net_g_latest.pth", seconds


def _on_device(function, device: str):
    """Wrap ``function`` so that it takes and returns CPU tensors but runs on ``device``."""

    def run(x: torch.Tensor) -> torch.Tensor:
        return function(x.to(device)).cpu()

    return run


def _seed_options(
    context: ReproductionContext, preset: ReproductionPreset, item: _ScaleData, seed: int, threshold: float
) -> tuple[dict, dict]:
    """Return the options of DWSR and of its matched single-way baseline for one scale and seed."""
    dwsr_options = dwsr_train_options(
        f"DWSR_x{item.scale}_{context.preset}_seed{seed}",
        item.scale,
        item.train,
        item.val,
        network=dwsr_network_options(item.scale, **preset.network),
        difficulty={"patch_size": preset.patch_size, "threshold_db": threshold},
        total_iter=preset.total_iter,
        seed=seed,
        num_gpu=1 if context.device == "cuda" else 0,
        batch_size=preset.batch_size,
        lr_patch=preset.lr_patch,
        enlarge_ratio=preset.enlarge_ratio,
        num_workers=preset.num_workers,
        lr=preset.lr,
        val_freq=preset.val_freq,
        checkpoint_freq=preset.checkpoint_freq,
        print_freq=preset.print_freq,
    )
    baseline_options = baseline_train_options(
        dwsr_options, f"SingleWayEDSR_x{item.scale}_{context.preset}_seed{seed}"
    )
    return dwsr_options, baseline_options


def _metric_key(metric: str, set_name: str, scale: int, primary: tuple[str, int]) -> str:
    return metric if (set_name, scale) == primary else f"{set_name}_x{scale}_{metric}"


def _mean(values: list[float]) -> float:
    finite = [value for value in values if not math.isnan(value)]
    return float(np.mean(finite)) if finite else math.nan


def reproduce(context: ReproductionContext) -> ReproductionResult:
    """Train DWSR and the matched single-way baseline, evaluate both and bicubic, and draw the figures."""
    preset = PRESETS[context.preset]
    data = _collect_data(context, preset)
    primary = (data[0].tests[0].name, data[0].scale)

    per_model: dict[str, dict[str, list[float]]] = {"bicubic": {}, "single-way EDSR": {}, "DWSR": {}}
    info: dict[str, dict] = {"single-way EDSR": {"seconds": []}, "DWSR": {"seconds": []}}
    figure_inputs: dict[str, list[ImageResult]] = {}

    for item in data:
        settings = DifficultySettings(patch_size=preset.patch_size, rule="dataset_median")
        threshold = median_db(dataset_patch_psnrs(item.train.pairs(), item.scale, settings))
        settings = DifficultySettings(
            patch_size=preset.patch_size, rule="dataset_median", threshold_db=threshold
        )
        for test in item.tests:
            means, _ = evaluate_folder(None, test, item.scale, settings)
            for metric in _METRICS:
                per_model["bicubic"].setdefault(
                    _metric_key(metric, test.name, item.scale, primary), []
                ).append(means[metric])

        for seed in context.seeds:
            dwsr_options, baseline_options = _seed_options(context, preset, item, seed, threshold)
            trained = {}
            for label, options in (("DWSR", dwsr_options), ("single-way EDSR", baseline_options)):
                weights, seconds = _train(options, context)
                trained[label] = load_trained_network(options["network_g"], weights)
                if item.scale == primary[1]:
                    # Rows report the size, FLOPs and training time of the primary scale's networks.
                    info[label]["seconds"].append(seconds)
                    info[label]["params"] = count_parameters(trained[label])
                    info[label]["flops"] = count_flops(trained[label], torch.zeros(1, 3, 64, 64))
                    info[label]["network"] = options["network_g"]

            for test in item.tests:
                for label, network in trained.items():
                    keep = (test.name, item.scale) == primary and seed == context.seeds[0]
                    network.to(context.device)
                    upscaler = _on_device(network, context.device)
                    mask_predictor = None
                    if label == "DWSR":
                        mask_predictor = _on_device(
                            lambda x, net=network: net.predict_mask(x)[0], context.device
                        )
                    means, images = evaluate_folder(
                        upscaler, test, item.scale, settings, keep_images=keep, mask_predictor=mask_predictor
                    )
                    if keep:
                        figure_inputs[label] = images
                    for metric in _METRICS:
                        key = _metric_key(metric, test.name, item.scale, primary)
                        per_model[label].setdefault(key, []).append(means[metric])
        if (primary[1]) == item.scale:
            _, bicubic_images = evaluate_folder(
                None, data[0].tests[0], item.scale, settings, keep_images=True
            )
            figure_inputs["bicubic"] = bicubic_images
            primary_settings = settings

    figures = _draw_figures(context, figure_inputs, primary_settings, primary)
    rows = _rows(per_model, info, len(context.seeds))
    report = _report(context, preset, rows, figures, info, primary)
    context.run_dir.write_json("dwsr_results.json", {row.model: row.metrics for row in rows})
    return ReproductionResult(
        package="dwsr",
        task=f"x{primary[1]} super-resolution ({primary[0]}, Y-channel PSNR)",
        primary_metric="psnr",
        rows=rows,
        figures=figures,
        report_markdown=report,
    )


def _rows(per_model: dict, info: dict, seed_count: int) -> list[ResultRow]:
    rows = []
    roles = {"DWSR": "method", "single-way EDSR": "baseline", "bicubic": "reference"}
    for label, metrics in per_model.items():
        extra = info.get(label, {})
        seconds = extra.get("seconds")
        rows.append(
            ResultRow(
                model=label,
                role=roles[label],
                metrics={key: _mean(values) for key, values in metrics.items()},
                params=extra.get("params"),
                flops=extra.get("flops"),
                seconds=float(np.mean(seconds)) if seconds else None,
                notes=f"mean of {seed_count} seed(s); FLOPs for one 64x64 input"
                if extra
                else "MATLAB-style bicubic",
            )
        )
    return rows


def _draw_figures(
    context: ReproductionContext,
    figure_inputs: dict[str, list[ImageResult]],
    settings: DifficultySettings,
    primary: tuple[str, int],
) -> list[Path]:
    dwsr_images = figure_inputs["DWSR"]
    # The image whose hard fraction is closest to one half shows both regions best.
    index = int(np.argmin([abs(image.metrics["hard_fraction"] - 0.5) for image in dwsr_images]))
    chosen = dwsr_images[index]
    bicubic = figure_inputs["bicubic"][index]
    baseline = figure_inputs["single-way EDSR"][index]

    scale = primary[1]
    gt, hard_mask, predicted_mask = chosen.gt, chosen.hard_mask, chosen.predicted_mask
    dwsr_sr, bicubic_sr, baseline_sr = chosen.sr, bicubic.sr, baseline.sr
    if gt is None or hard_mask is None or predicted_mask is None:
        raise RuntimeError("figure images were not kept; evaluate_folder needs keep_images=True")
    if dwsr_sr is None or bicubic_sr is None or baseline_sr is None:
        raise RuntimeError("figure images were not kept; evaluate_folder needs keep_images=True")
    hard = hard_mask.astype(np.float32)
    difficulty_path = plot_difficulty(
        gt,
        chosen.extras["psnr_map"],
        hard,
        predicted_mask,
        path=context.run_dir.figure_path("dwsr_difficulty.png"),
        title=f"{chosen.name} x{scale}: threshold {settings.threshold_db:.2f} dB",
    )

    size = min(96, *gt.shape[:2])
    corner = select_crop(hard_mask, size)
    panels: dict[str, np.ndarray] = {
        "HR": gt,
        f"bicubic {bicubic.metrics['psnr']:.2f} dB": bicubic_sr,
        f"single way {baseline.metrics['psnr']:.2f} dB": baseline_sr,
        f"DWSR {chosen.metrics['psnr']:.2f} dB": dwsr_sr,
        "labels (white = hard)": hard,
        "predicted mask": predicted_mask,
    }
    crops_path = plot_crops(
        panels,
        corner,
        size,
        path=context.run_dir.figure_path("dwsr_crops.png"),
        title=f"{chosen.name} x{scale}, crop at {corner}; PSNR over the whole image (Y)",
    )
    return [difficulty_path, crops_path]


def _report(
    context: ReproductionContext,
    preset: ReproductionPreset,
    rows: list[ResultRow],
    figures: list[Path],
    info: dict,
    primary: tuple[str, int],
) -> str:
    table = markdown_table(
        [
            {
                "model": row.model,
                **{metric: row.metrics.get(metric) for metric in _METRICS},
                "params": row.params,
                "train s": row.seconds,
            }
            for row in rows
        ],
        floatfmt=".4f",
    )
    relative = [figure.relative_to(context.run_dir.path) for figure in figures]
    hardware = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU threads visible, "
        f"torch using {torch.get_num_threads()} thread(s), device {context.device}"
    )
    return "\n".join(
        [
            f"### DWSR, preset {context.preset!r}",
            "",
            f"x{primary[1]} on {primary[0]}; {preset.total_iter} iterations per model, seeds {list(context.seeds)}; "
            "PSNR/SSIM on the Y channel with the border of `scale` pixels cropped. Easy and hard regions are the "
            "PSNR-prior labels of the bicubic upsampling (8-bit images, threshold = median patch PSNR of the "
            "training set).",
            "",
            table,
            "",
            f"DWSR network: `{info['DWSR']['network']}`; single-way baseline: `{info['single-way EDSR']['network']}`.",
            f"Hardware: {hardware}.",
            f"Figures: {', '.join(f'`{path.as_posix()}`' for path in relative)} (difficulty map and predicted "
            "mask of the held-out image whose hard fraction is closest to one half, and crops of the same image).",
            "",
        ]
    )
