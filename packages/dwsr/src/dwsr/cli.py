"""Command line of DWSR: ``dwsr train | test | label | bench | prepare``.

``train`` and ``test`` run BasicSR's own pipelines on an options YAML (``--config``). Flags override its
values, and the resolved options are written beside the experiment. Errors in the input print one line
and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main"]

logger = logging.getLogger(__name__)

_DATAROOT_PREFIX = "datasets"


def _add_train(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train with BasicSR's train_pipeline from an options YAML")
    parser.add_argument(
        "--config", type=Path, required=True, help="BasicSR options YAML (options/train_DWSR_x2.yml)"
    )
    parser.add_argument(
        "--data-root", type=Path, help="folder that replaces the leading 'datasets/' of dataroots"
    )
    parser.add_argument("--root", type=Path, default=Path("."), help="folder for experiments/ (default: .)")
    parser.add_argument("--name", help="experiment name (default: the options' name)")
    parser.add_argument(
        "--max-steps", type=int, help="train this many iterations; stages and schedule shrink to fit"
    )
    parser.add_argument("--num-gpu", type=int, help="0 trains on CPU (default: the options' num_gpu)")
    parser.add_argument(
        "--threshold-db", type=float, help="difficulty threshold in dB (skips the dataset median)"
    )
    parser.add_argument("--auto-resume", action="store_true", help="resume from the newest training state")


def _add_test(subparsers) -> None:
    parser = subparsers.add_parser("test", help="evaluate with BasicSR's test_pipeline from an options YAML")
    parser.add_argument(
        "--config", type=Path, required=True, help="BasicSR options YAML (options/test_DWSR_x2.yml)"
    )
    parser.add_argument(
        "--data-root", type=Path, help="folder that replaces the leading 'datasets/' of dataroots"
    )
    parser.add_argument("--root", type=Path, default=Path("."), help="folder for results/ (default: .)")
    parser.add_argument(
        "--weights", type=Path, help="network weights (.pth with 'params'); overrides the options"
    )
    parser.add_argument("--num-gpu", type=int, help="0 runs on CPU (default: the options' num_gpu)")


def _add_label(subparsers) -> None:
    parser = subparsers.add_parser("label", help="PSNR-prior difficulty labels and figures of HR images")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", type=Path, nargs="+", help="HR image files or folders of PNG images")
    source.add_argument(
        "--skimage", nargs="+", help="names of scikit-image sample photographs, e.g. astronaut"
    )
    parser.add_argument("--scale", type=int, default=2, help="SR scale of the bicubic LR images (default: 2)")
    parser.add_argument(
        "--patch-size", type=int, default=8, help="label patch side in HR pixels (default: 8)"
    )
    parser.add_argument(
        "--rule",
        default="dataset_median",
        choices=("fixed", "image_mean", "dataset_median"),
        help="threshold rule (default: dataset_median over the given images)",
    )
    parser.add_argument("--threshold-db", type=float, help="threshold in dB for --rule fixed")
    parser.add_argument("--config", type=Path, help="options YAML whose network_g matches --weights")
    parser.add_argument("--weights", type=Path, help="trained DWSRNet weights, to draw the predicted mask")
    parser.add_argument("--output", type=Path, default=Path("dwsr_labels"), help="output folder")
    parser.add_argument(
        "--max-figures", type=int, default=8, help="draw figures of the first N images (default: 8)"
    )


def _add_bench(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="params, FLOPs and CPU latency against EDSR-baseline")
    parser.add_argument("--scale", type=int, default=4, help="SR scale (default: 4)")
    parser.add_argument(
        "--lr-size", type=int, default=64, help="side of the LR input in pixels (default: 64)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed forward passes (default: 5)")
    parser.add_argument("--output", type=Path, help="also write the rows as JSON here")


def _add_prepare(subparsers) -> None:
    parser = subparsers.add_parser("prepare", help="make bicubic LR folders, or the scikit-image dataset")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--hr", type=Path, help="folder of HR PNG images to downsample")
    source.add_argument("--skimage", action="store_true", help="write the scikit-image photograph dataset")
    parser.add_argument("--scale", type=int, nargs="+", default=[2, 3, 4], help="scales (default: 2 3 4)")
    parser.add_argument("--output", type=Path, required=True, help="output folder")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dwsr", description="Difficulty-aware dual-way super-resolution on BasicSR."
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add in (_add_train, _add_test, _add_label, _add_bench, _add_prepare):
        add(subparsers)
    return parser


def _rewrite_dataroots(options: dict, data_root: Path | None) -> None:
    if data_root is None:
        return
    for dataset in options.get("datasets", {}).values():
        for key in ("dataroot_gt", "dataroot_lq", "meta_info_file"):
            value = dataset.get(key)
            if value is None:
                continue
            parts = Path(value).parts
            if parts and parts[0] == _DATAROOT_PREFIX:
                dataset[key] = str(Path(data_root, *parts[1:]))


def _check_dataset_folders(options: dict) -> None:
    from dwsr.data import MissingDataError

    missing = []
    for phase, dataset in options.get("datasets", {}).items():
        for key in ("dataroot_gt", "dataroot_lq"):
            value = dataset.get(key)
            if value is not None and not Path(value).is_dir():
                missing.append(f"{value} ({phase} {dataset.get('name', '')} {key})")
    if missing:
        raise MissingDataError(
            f"missing dataset folder(s): {'; '.join(missing)}. Pass --data-root DIR with DIV2K and the benchmark "
            "sets in BasicSR's layout (see BasicSR's docs/DatasetPreparation.md and "
            "https://data.vision.ee.ethz.ch/cvl/DIV2K/), or make LR folders with `dwsr prepare --hr DIR`."
        )


def _run_train(args: argparse.Namespace) -> int:
    from dwsr.pipeline import load_options, run_train_pipeline, save_options
    from dwsr.recipes import shorten_schedule

    options = load_options(args.config)
    _rewrite_dataroots(options, args.data_root)
    if args.name:
        options["name"] = args.name
    if args.num_gpu is not None:
        options["num_gpu"] = args.num_gpu
    if args.max_steps is not None:
        shorten_schedule(options, args.max_steps)
    if args.threshold_db is not None:
        options["train"].setdefault("difficulty", {})["threshold_db"] = args.threshold_db
    _check_dataset_folders(options)
    resolved = save_options(options, args.root / "options" / f"{options['name']}.yml")
    folder = run_train_pipeline(resolved, args.root, auto_resume=args.auto_resume)
    print(f"experiment: {folder}")
    return 0


def _run_test(args: argparse.Namespace) -> int:
    from dwsr.pipeline import load_options, run_test_pipeline, save_options

    options = load_options(args.config)
    _rewrite_dataroots(options, args.data_root)
    if args.num_gpu is not None:
        options["num_gpu"] = args.num_gpu
    if args.weights is not None:
        options.setdefault("path", {})["pretrain_network_g"] = str(args.weights)
    weights = options.get("path", {}).get("pretrain_network_g")
    if not weights or not Path(weights).is_file():
        raise FileNotFoundError(f"network weights {weights} not found; train first or pass --weights FILE")
    _check_dataset_folders(options)
    resolved = save_options(options, args.root / "options" / f"{options['name']}.yml")
    folder = run_test_pipeline(resolved, args.root)
    print(f"results: {folder}")
    return 0


def _label_sources(args: argparse.Namespace) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(name, RGB uint8 image)`` one at a time, so large folders are never all in memory."""
    import cv2

    from dwsr.data import load_skimage_photo

    if args.skimage:
        for name in args.skimage:
            yield name, load_skimage_photo(name)[:, :, ::-1].copy()
        return
    paths = []
    for item in args.images:
        if item.is_dir():
            paths.extend(sorted(item.glob("*.png")))
        elif item.is_file():
            paths.append(item)
        else:
            raise FileNotFoundError(f"{item} is neither an image file nor a folder")
    if not paths:
        raise FileNotFoundError(f"no PNG images found in {', '.join(map(str, args.images))}")
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"could not read image {path}")
        yield path.stem, image[:, :, ::-1].copy()


def _run_label(args: argparse.Namespace) -> int:
    import torch
    from basicsr.utils.matlab_functions import imresize

    from dwsr.data import mod_crop
    from dwsr.difficulty import (
        DifficultySettings,
        bicubic_upsample,
        difficulty_labels,
        expand_patch_map,
        patch_psnr,
    )
    from dwsr.figures import plot_difficulty

    if args.scale not in (2, 3, 4):
        raise ValueError(f"--scale must be 2, 3 or 4, got {args.scale}")
    if args.rule == "fixed" and args.threshold_db is None:
        raise ValueError("--rule fixed needs --threshold-db (in dB)")
    network = None
    if args.weights is not None:
        if args.config is None:
            raise ValueError("--weights needs --config with the network_g options of those weights")
        from dwsr.pipeline import load_options, load_trained_network

        network = load_trained_network(load_options(args.config)["network_g"], args.weights)

    # First pass: patch PSNR maps of every image; only the first --max-figures images are kept for drawing.
    computed = []
    for index, (name, rgb) in enumerate(_label_sources(args)):
        hr = torch.from_numpy(mod_crop(rgb, args.scale).astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        lr = imresize(hr[0], 1.0 / args.scale).clamp(0, 1)
        lr = (lr * 255).round()[None] / 255.0  # stored as 8-bit, like the LR images of SR datasets
        psnr_map = patch_psnr(bicubic_upsample(lr, args.scale).clamp(0, 1), hr, args.patch_size)
        figure_data = None
        if index < args.max_figures:
            mask = None
            if network is not None:
                with torch.no_grad():
                    mask = network.predict_mask(lr)[0][0, 0].numpy()
            image = (hr[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            figure_data = (image, mask)
        computed.append((name, psnr_map, figure_data))

    all_values = torch.cat([psnr_map.flatten() for _, psnr_map, _ in computed])
    median = float(all_values.median())
    threshold = {"fixed": args.threshold_db, "dataset_median": median, "image_mean": None}[args.rule]
    settings = DifficultySettings(patch_size=args.patch_size, rule=args.rule, threshold_db=threshold)
    summary: dict[str, Any] = {
        "rule": settings.rule,
        "patch_size": settings.patch_size,
        "median_db": median,
        "images": {},
    }
    if threshold is not None:
        summary["threshold_db"] = threshold

    # Second pass: labels of every image, and figures of the kept ones.
    args.output.mkdir(parents=True, exist_ok=True)
    for name, psnr_map, figure_data in computed:
        labels = difficulty_labels(psnr_map, settings)
        entry: dict[str, Any] = {
            "hard_fraction": float(labels.mean()),
            "mean_patch_psnr_db": float(psnr_map.mean()),
        }
        if figure_data is not None:
            image, mask = figure_data
            label_mask = expand_patch_map(labels, settings.patch_size, image.shape[:2])[0, 0].numpy()
            figure = plot_difficulty(
                image,
                psnr_map[0, 0].numpy(),
                label_mask,
                mask,
                path=args.output / f"{name}_difficulty.png",
                title=name,
            )
            entry["figure"] = str(figure)
        summary["images"][name] = entry
        print(
            f"{name}: hard fraction {entry['hard_fraction']:.3f}"
            + (f", figure {entry['figure']}" if "figure" in entry else "")
        )
    (args.output / "labels.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(f"median patch PSNR {median:.3f} dB over {len(computed)} image(s)")
    return 0


def _run_bench(args: argparse.Namespace) -> int:
    from dwsr.bench import run_benchmark
    from qcore.report import markdown_table

    rows = run_benchmark(scale=args.scale, lr_size=args.lr_size, repeats=args.repeats)
    print(markdown_table(rows))
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


def _run_prepare(args: argparse.Namespace) -> int:
    from dwsr.data import build_skimage_dataset, make_lr_folder

    if args.skimage:
        splits = build_skimage_dataset(args.output, scales=args.scale)
        print(f"train: {splits['train']}, test: {splits['test']}")
        return 0
    for scale in args.scale:
        count = make_lr_folder(args.hr, args.output / f"LRbicx{scale}", scale)
        print(f"x{scale}: {count} images in {args.output / f'LRbicx{scale}'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dwsr`` command line; return the exit code."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:
        return int(exit_request.code or 0)
    from qcore.logging import setup_logging

    setup_logging(args.log_level)
    import dwsr  # noqa: F401  (registers the DWSR classes before BasicSR builds anything)
    from dwsr.data import MissingDataError

    commands = {
        "train": _run_train,
        "test": _run_test,
        "label": _run_label,
        "bench": _run_bench,
        "prepare": _run_prepare,
    }
    try:
        return commands[args.command](args)
    except (MissingDataError, FileNotFoundError, ValueError, KeyError, TypeError) as error:
        print(f"dwsr {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
