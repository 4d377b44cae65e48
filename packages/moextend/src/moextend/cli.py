"""``moextend`` command line: ``align``, ``probe``, ``extend``, ``finetune``, ``chat`` and ``bench``.

Each training command reads the previous stage's folder (``--model``) and writes ``<output-dir>/model``,
``config.yaml`` with the resolved settings, and ``checkpoints/last`` while it trains. Rerunning the same
command resumes from that checkpoint. ``--preset tiny`` builds a random tiny Mixtral, a tiny CLIP tower and
a folder of drawn shapes, so every command runs on a CPU without downloads.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any

import yaml

from qcore.config import Config, check_positive, option
from qcore.rundir import RunDir
from qcore.seeding import seed_everything

__all__ = ["CommandConfig", "main"]

logger = logging.getLogger(__name__)

COMMANDS = ("align", "probe", "extend", "finetune", "chat", "bench")
# Official per-stage settings: learning rate, per-device batch size, maximum sequence length.
_STAGE_DEFAULTS = {
    "align": (1e-3, 64, 1024),
    "probe": (1e-3, 64, 1024),
    "finetune": (2e-5, 32, 2048),
}
_TINY_STAGE_DEFAULTS = (1e-2, 8, 128)


@dataclasses.dataclass(kw_only=True)
class CommandConfig(Config):
    """Settings of one ``moextend`` command; unset training values take the stage's official default."""

    model: str | None = option(
        None, help="base MoE LLM id/path (align) or the previous stage's output folder (other commands)"
    )
    vision_model: str | None = option(None, help="CLIP vision model id or path (align only)")
    tokenizer: str | None = option(None, help="tokenizer id or path; defaults to the base LLM")
    data_path: str | None = option(None, help="LLaVA-format JSON file of conversations")
    image_folder: str | None = option(None, help="folder the image paths in data_path are relative to")
    output_dir: str = option("runs/moextend", help="folder for the stage output, config and checkpoints")
    preset: str = option("none", choices=("none", "tiny"), help="'tiny' builds a random tiny model and data")
    probe_dir: str | None = option(None, help="output folder of the probe command (extend only)")
    learning_rate: float | None = option(None, help="peak learning rate (AdamW, cosine schedule)")
    batch_size: int | None = option(None, help="samples per optimiser step")
    max_length: int | None = option(None, help="maximum tokens per sample, image placeholders included")
    max_steps: int | None = option(None, help="optimiser steps; default: one epoch (probe: 1000)")
    warmup_ratio: float = option(0.03, help="share of steps with linear learning-rate warm-up")
    save_steps: int = option(500, help="write checkpoints/last every this many steps (0: only at the end)")
    seed: int = option(42, help="random seed")
    device: str = option("cpu", choices=("cpu", "cuda"), help="device to train on")
    mixed_precision: str = option("no", choices=("no", "bf16", "fp16"), help="Accelerate mixed precision")
    select_layer: int = option(-2, help="CLIP hidden layer used as image features (official code: -1)")
    all_turns: bool = option(False, help="keep every question-answer pair, not only the first")
    validation_size: int = option(10_000, help="probe: samples held out to count expert usage")
    num_layers: int | None = option(None, help="extend: layers to extend; default half of the MoE layers")
    num_new_experts: int = option(1, help="extend: new experts per extended layer")
    calibration_hidden: int = option(16, help="extend: hidden width of the routing calibration MLP")
    keep_probe_router: bool = option(False, help="extend: keep the probed router rows (official behaviour)")
    legacy_ascending_argsort: bool = option(
        False, help="extend: select from ascending-argsort usage counts, as the official script does"
    )
    router_aux_loss_coef: float = option(0.001, help="weight of the load-balancing loss")
    image: str | None = option(None, help="chat: image file")
    prompt: str = option("Describe the image.", help="chat: user message")
    max_new_tokens: int = option(32, help="chat: tokens to generate")

    def validate(self) -> None:
        super().validate()
        for name in ("learning_rate", "batch_size", "max_length", "max_steps"):
            value = getattr(self, name)
            if value is not None:
                check_positive(name, value)
        check_positive("num_new_experts", self.num_new_experts)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moextend", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=COMMANDS, help="stage or tool to run")
    parser.add_argument("--config", help="YAML file with defaults; flags override it")
    for field in dataclasses.fields(CommandConfig):
        flag = "--" + field.name.replace("_", "-")
        help_text = field.metadata["help"]
        if field.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
            continue
        kind = {"int": int, "float": float, "int | None": int, "float | None": float}.get(
            str(field.type), str
        )
        parser.add_argument(
            flag, type=kind, default=None, help=help_text, choices=field.metadata.get("choices")
        )
    return parser


def _resolve_config(args: argparse.Namespace) -> CommandConfig:
    values: dict[str, Any] = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} not found")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"config file {path} must contain a mapping of option names to values")
        values.update(loaded)
    for field in dataclasses.fields(CommandConfig):
        value = getattr(args, field.name)
        if value is not None:
            values[field.name] = value
    return CommandConfig.from_dict(values)


def _tiny_inputs(config: CommandConfig, output: Path) -> CommandConfig:
    """Fill in tiny base checkpoints and drawn-shape data for ``--preset tiny``."""
    from moextend.tiny import save_tiny_base, tiny_corpus, write_tiny_llava_data

    changes: dict[str, Any] = {}
    if config.model is None:
        llm_dir, vision_dir = save_tiny_base(output / "tiny-base", corpus=tiny_corpus(), seed=config.seed)
        changes.update(model=str(llm_dir), vision_model=str(vision_dir))
    if config.data_path is None:
        changes["data_path"] = str(write_tiny_llava_data(output / "tiny-data"))
    learning_rate, batch_size, max_length = _TINY_STAGE_DEFAULTS
    changes.setdefault("learning_rate", config.learning_rate or learning_rate)
    changes.setdefault("batch_size", config.batch_size or batch_size)
    changes.setdefault("max_length", config.max_length or max_length)
    changes.setdefault("validation_size", min(config.validation_size, 8))
    return config.replace(**changes)


def _settings(config: CommandConfig, stage: str, samples: int):
    import math

    from moextend.training import TrainingSettings

    learning_rate, batch_size, _ = _STAGE_DEFAULTS[stage]
    batch_size = config.batch_size or batch_size
    default_steps = 1000 if stage == "probe" else max(1, math.ceil(samples / batch_size))
    return TrainingSettings(
        learning_rate=config.learning_rate or learning_rate,
        max_steps=config.max_steps or default_steps,
        batch_size=batch_size,
        warmup_ratio=config.warmup_ratio,
        save_steps=config.save_steps,
        seed=config.seed,
        device=config.device,
        mixed_precision=config.mixed_precision,
    )


def _load(config: CommandConfig, stage: str):
    from moextend.stages import load_bundle

    if config.model is None:
        raise ValueError(f"{stage} needs --model (or --preset tiny for align)")
    max_length = config.max_length or _STAGE_DEFAULTS.get(stage, (None, None, 1024))[2]
    bundle = load_bundle(
        config.model,
        vision_model=config.vision_model,
        tokenizer_path=config.tokenizer,
        select_layer=config.select_layer,
        router_aux_loss_coef=config.router_aux_loss_coef,
        max_length=max_length,
    )
    if config.device == "cuda":
        bundle.model.to("cuda")
    return bundle


def _samples(config: CommandConfig):
    from moextend.data import load_llava_json

    if config.data_path is None:
        raise ValueError("this command needs --data-path, a LLaVA-format JSON file")
    return load_llava_json(config.data_path, image_folder=config.image_folder, all_turns=config.all_turns)


def _run_stage(command: str, config: CommandConfig, run_dir: RunDir) -> dict[str, Any]:
    from moextend import stages

    output = run_dir.path
    if command == "extend":
        if config.probe_dir is None:
            raise ValueError("extend needs --probe-dir, the output folder of the probe command")
        usage_path = Path(config.probe_dir) / stages.USAGE_FILE
        if not usage_path.is_file():
            raise FileNotFoundError(f"{usage_path} not found; run the probe command first")
        bundle = _load(config, command)
        probed = stages.probed_router_state(config.probe_dir) if config.keep_probe_router else None
        plan = stages.extend_from_usage(
            bundle,
            json.loads(usage_path.read_text()),
            probed_routers=probed,
            keep_probe_router=config.keep_probe_router,
            legacy_ascending_argsort=config.legacy_ascending_argsort,
            num_layers=config.num_layers,
            num_new_experts=config.num_new_experts,
            calibration_hidden=config.calibration_hidden,
        )
        bundle.model.save_pretrained(output / stages.MODEL_SUBDIR)
        return {"plan": plan.to_dict()}

    samples = _samples(config)
    bundle = _load(config, command)
    settings = _settings(config, command, len(samples))
    if command == "align":
        summary = stages.run_align(bundle, samples, settings, output, run_dir=run_dir)
    elif command == "probe":
        result = stages.run_probe(
            bundle, samples, settings, output, validation_size=config.validation_size, run_dir=run_dir
        )
        return {"layers": result.usage["layers"], "validation_samples": result.usage["validation_samples"]}
    else:
        summary = stages.run_finetune(bundle, samples, settings, output, run_dir=run_dir)
    return {
        "steps": summary.steps,
        "first_loss": summary.losses[0] if summary.losses else None,
        "last_loss": summary.losses[-1] if summary.losses else None,
        "trainable_parameters": summary.trainable_parameters,
    }


def _chat(config: CommandConfig) -> str:
    import torch

    from moextend.data import IMAGE_MARKER, ChatSample, encode_conversation, load_image

    bundle = _load(config, "chat")
    question = config.prompt if config.image is None else f"{IMAGE_MARKER}\n{config.prompt}"
    input_ids, _ = encode_conversation(
        bundle.tokenizer,
        ChatSample(turns=[(question, "")]).turns,
        image_token_id=bundle.model.image_token_id,
        num_image_tokens=bundle.model.num_image_tokens,
        prompt_only=True,
    )
    pixel_values = None
    if config.image is not None:
        image = load_image(Path(config.image))
        pixel_values = bundle.image_processor(images=image, return_tensors="pt")["pixel_values"]
    device = next(bundle.model.parameters()).device
    generated = bundle.model.generate(
        torch.tensor([input_ids], device=device),
        pixel_values=None if pixel_values is None else pixel_values.to(device),
        max_new_tokens=config.max_new_tokens,
        do_sample=False,
        pad_token_id=bundle.tokenizer.pad_token_id,
        eos_token_id=bundle.tokenizer.eos_token_id,
    )
    return bundle.tokenizer.decode(generated[0], skip_special_tokens=True)


def main(argv: list[str] | None = None) -> int:
    """Run one ``moextend`` command; return 0 on success and 2 on invalid input."""
    from qcore.logging import setup_logging

    parser = _build_parser()
    args = parser.parse_args(argv)
    setup_logging()
    try:
        config = _resolve_config(args)
        run_dir = RunDir(config.output_dir)
        if config.preset == "tiny" and args.command in ("align", "probe", "finetune"):
            config = _tiny_inputs(config, run_dir.path)
        run_dir.save_config(config)
        seed_everything(config.seed)
        if args.command == "chat":
            print(_chat(config))
            return 0
        if args.command == "bench":
            from moextend.benchmark import format_results, run_benchmark

            print(format_results(run_benchmark(device=config.device)))
            return 0
        summary = _run_stage(args.command, config, run_dir)
    except (ValueError, FileNotFoundError) as error:
        print(f"moextend {args.command}: error: {error}", file=sys.stderr)
        return 2
    run_dir.write_json(f"{args.command}_summary.json", summary)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
