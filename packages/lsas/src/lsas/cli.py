"""Console script ``lsas``: train, evaluate, bench and diagnose CIFAR ResNets with LSAS.

``train``, ``evaluate`` and ``bench`` are the shared commands of ``qcore.vision.cli``. ``train`` places
LSAS in the third stage by default, as the official code does, and ``--attn-stages 0 1 2`` selects all
stages.
``diagnose`` measures attention bias with Grad-CAM for one or more trained checkpoints.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import lsas  # noqa: F401  (registers the attention names)
from lsas.attention_bias import collect_masked_images, diagnose_attention_bias, plot_attention_overlays
from lsas.models import LSAS_VARIANTS, OFFICIAL_CIFAR_STAGES
from qcore.checkpoint import CheckpointError, load_checkpoint
from qcore.report import markdown_table
from qcore.rundir import RunDir
from qcore.vision.cli import AttentionRunConfig, build_attention_cli, build_model_from_config
from qcore.vision.data import build_datasets

__all__ = ["main"]

# Datasets whose images give foreground masks by intensity thresholding.
MASKED_DATASETS = ("digits",)


def _checkpoint_folder(path: Path) -> Path:
    for candidate in (path, path / "checkpoints" / "best", path / "checkpoints" / "last"):
        if (candidate / "checkpoint.json").is_file():
            return candidate
    raise CheckpointError(
        f"no checkpoint found at {path}: pass a checkpoint folder or a run folder that contains "
        "checkpoints/best or checkpoints/last"
    )


def _add_diagnose_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Grad-CAM attention-bias diagnostic: share of the map outside the foreground (position bias) and "
        "share of the foreground covered (range bias), on test images of the digits data."
    )
    parser.add_argument(
        "--checkpoint", nargs="+", required=True, help="checkpoint or run folders, one per model to compare"
    )
    parser.add_argument("--images", type=int, default=128, help="number of test images to diagnose")
    parser.add_argument("--layer", default="layer3", help="dotted name of the module Grad-CAM explains")
    parser.add_argument(
        "--mask-threshold",
        type=float,
        default=0.5,
        help="foreground threshold on the min-max scaled intensity",
    )
    parser.add_argument(
        "--coverage-threshold",
        type=float,
        default=0.5,
        help="map value (fraction of its maximum) that covers a pixel",
    )
    parser.add_argument(
        "--target",
        default="label",
        choices=("label", "predicted"),
        help="class whose score Grad-CAM explains",
    )
    parser.add_argument("--output", default="runs/lsas/diagnose", help="folder for bias.json and the figure")


def _diagnose(args: argparse.Namespace) -> int:
    if args.images < 1:
        raise ValueError(f"--images must be positive, got {args.images}")
    rows, maps_by_model = [], {}
    images = masks = None
    for index, location in enumerate(args.checkpoint):
        checkpoint = load_checkpoint(_checkpoint_folder(Path(location)))
        if checkpoint.config is None:
            raise CheckpointError(f"{checkpoint.path} stores no config, so the model cannot be rebuilt")
        config = AttentionRunConfig.from_dict(checkpoint.config)
        if config.dataset not in MASKED_DATASETS:
            raise ValueError(
                f"{checkpoint.path} was trained on {config.dataset!r}, which has no foreground masks; the CLI "
                f"supports {MASKED_DATASETS}. Use lsas.diagnose_attention_bias with your own masks or boxes."
            )
        _, test_set, num_classes = build_datasets(
            config.dataset, root=config.data_root, image_size=config.image_size, augment=False
        )
        model = build_model_from_config(config, num_classes)
        model.load_state_dict(checkpoint.state_dict)
        images, masks, labels = collect_masked_images(
            test_set, count=args.images, mask_threshold=args.mask_threshold
        )
        report = diagnose_attention_bias(
            model,
            images,
            masks,
            args.layer,
            targets=labels if args.target == "label" else None,
            threshold=args.coverage_threshold,
        )
        name = f"{index}: {config.attention}"
        maps_by_model[name] = report.maps
        rows.append({"model": name, "checkpoint": str(checkpoint.path), **report.summary()})

    run_dir = RunDir(args.output)
    run_dir.write_json("bias.json", rows)
    figure = plot_attention_overlays(
        images, maps_by_model, masks, path=run_dir.figure_path("attention_bias.png")
    )
    print(markdown_table(rows, ["model", "outside_share", "mask_coverage", "images"]))
    print(json.dumps({"output": str(run_dir.path), "figure": str(figure)}))
    return 0


main = build_attention_cli(
    "lsas",
    method_names=list(LSAS_VARIANTS),
    default_method="lsas",
    description=(
        "LSAS (arXiv 2305.05200) on CIFAR ResNets. train uses SE + LSAS in the third stage by default, "
        "as in the official code."
    ),
    train_defaults={"attn_stages": OFFICIAL_CIFAR_STAGES},
    extra_commands={"diagnose": (_add_diagnose_arguments, _diagnose)},
)
