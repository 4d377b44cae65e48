"""Command line: ``clot sample-data | build-instructions | train | refine | evaluate | chat | run``.

Every command that takes settings reads ``--config`` (YAML with :class:`clot.pipeline.ClotConfig`
fields), then the run directory's saved ``config.yaml`` where one exists, then the flags, and writes the
resolved settings to ``RUN_DIR/config.yaml``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

__all__ = ["main"]


def _add_config_flags(parser: argparse.ArgumentParser, *, run_dir_required: bool = True) -> None:
    parser.add_argument("--run-dir", required=run_dir_required, type=Path, help="Output folder of the run.")
    parser.add_argument("--config", type=Path, help="YAML file with ClotConfig fields.")
    parser.add_argument("--data-root", help="Oogiri-GO folder (en.jsonl, cn.jsonl, jp.jsonl, images/).")
    parser.add_argument("--model", help="'tiny', a local folder or a Hub id of the base model.")
    parser.add_argument("--device", help="Device, e.g. cpu or cuda.")
    parser.add_argument("--seed", type=int, help="Seed of instruction building, training and sampling.")
    parser.add_argument("--max-steps", type=int, help="Optimizer steps per training stage (smoke runs).")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="Override any ClotConfig field; VALUE is parsed as YAML (e.g. --set learning_rate=2e-3).",
    )


def _resolve_config(args: argparse.Namespace):
    from clot.pipeline import ClotConfig

    values: dict = {}
    saved = args.run_dir / "config.yaml" if getattr(args, "run_dir", None) else None
    if saved is not None and saved.is_file():
        values.update(yaml.safe_load(saved.read_text(encoding="utf-8")) or {})
    if args.config is not None:
        if not args.config.is_file():
            raise FileNotFoundError(f"config file not found: {args.config}")
        values.update(yaml.safe_load(args.config.read_text(encoding="utf-8")) or {})
    flags = {
        "data_root": args.data_root,
        "model": args.model,
        "device": args.device,
        "seed": args.seed,
        "max_steps": args.max_steps,
    }
    values.update({key: value for key, value in flags.items() if value is not None})
    for item in args.set:
        key, separator, raw = item.partition("=")
        if not separator:
            raise ValueError(f"invalid --set {item!r}: expected FIELD=VALUE.")
        values[key.strip()] = yaml.safe_load(raw)
    return ClotConfig.from_dict(values)


def _run_dir(args: argparse.Namespace, config):
    from qcore.rundir import RunDir

    run_dir = RunDir(args.run_dir)
    run_dir.save_config(config)
    return run_dir


def _print_json(value) -> None:
    print(json.dumps(value, indent=1, ensure_ascii=False))


def _cmd_sample_data(args: argparse.Namespace) -> int:
    from clot.sample_data import write_sample_dataset

    root = write_sample_dataset(args.output)
    print(f"wrote the sample Oogiri data set to {root}")
    return 0


def _cmd_build_instructions(args: argparse.Namespace) -> int:
    from clot.instructions import InstructionSettings, build_instructions, save_instructions
    from clot.pipeline import prepare_data

    config = _resolve_config(args)
    run_dir = _run_dir(args, config)
    data = prepare_data(config, run_dir)
    settings = InstructionSettings(
        condition_empty_prob=config.condition_empty_prob, selection_formats=tuple(config.selection_formats)
    )
    instructions = build_instructions(
        data.train, data.extractors, seed=config.seed, settings=settings, sources=data.train_sources
    )
    output = args.output or run_dir.path / "instructions_stage1.jsonl"
    save_instructions(output, instructions)
    print(f"wrote {len(instructions)} instructions to {output}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from clot.pipeline import prepare_data, run_stage1

    config = _resolve_config(args)
    run_dir = _run_dir(args, config)
    data = prepare_data(config, run_dir)
    _, results = run_stage1(config, run_dir, data, evaluate=not args.no_eval)
    run_dir.write_json("results_stage1.json", results)
    _print_json({key: value for key, value in results.items() if not key.endswith("losses")})
    return 0


def _cmd_refine(args: argparse.Namespace) -> int:
    from clot.pipeline import (
        STAGE1_DIR,
        load_tuned_backbone,
        prepare_data,
        run_evaluation,
        run_refinement,
        run_stage2,
    )

    config = _resolve_config(args)
    run_dir = _run_dir(args, config)
    if not (run_dir.path / STAGE1_DIR).is_dir():
        raise FileNotFoundError(f"no stage-1 adapter in {run_dir.path / STAGE1_DIR}; run `clot train` first.")
    data = prepare_data(config, run_dir)
    backbone = load_tuned_backbone(run_dir, config, stage="stage1")
    summary = run_refinement(backbone, config, run_dir, data)
    results = {"kept": summary.kept, "dropped_human_won": summary.dropped_human_won}
    results["dropped_no_candidates"] = summary.dropped_no_candidates
    if not args.no_retrain:
        from peft import PeftModel

        if isinstance(backbone.model, PeftModel):
            backbone = load_tuned_backbone(run_dir, config, stage="base")
            from clot.training import load_adapter

            load_adapter(backbone, run_dir.path / STAGE1_DIR, trainable=True)
        stage2 = run_stage2(backbone, config, run_dir, summary.instructions)
        results.update({key: value for key, value in stage2.items() if not key.endswith("losses")})
        if not args.no_eval:
            results["clot"] = run_evaluation(backbone, data, config)
    run_dir.write_json("results_stage2.json", results)
    _print_json(results)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from clot.pipeline import load_tuned_backbone, prepare_data, run_evaluation

    config = _resolve_config(args)
    run_dir = _run_dir(args, config)
    data = prepare_data(config, run_dir)
    backbone = load_tuned_backbone(run_dir, config, stage=args.stage)
    metrics = run_evaluation(backbone, data, config)
    if args.dat:
        from clot.evaluation import build_dat_questions, evaluate_dat
        from clot.metrics import minilm_embedder

        questions = build_dat_questions(data.noun_set.get("en", []), num_questions=args.dat, seed=config.seed)
        metrics.update(evaluate_dat(backbone, questions, minilm_embedder()))
    run_dir.write_json(f"eval_{args.stage}.json", metrics)
    _print_json(metrics)
    return 0


def _cmd_chat(args: argparse.Namespace) -> int:
    from clot.inference import demo_candidates, leap_of_thought
    from clot.pipeline import load_tuned_backbone
    from clot.skills import GameInput

    config = _resolve_config(args)
    run_dir = _run_dir(args, config)
    if args.image is None and args.question is None:
        raise ValueError("give --image, --question or both.")
    if args.image is not None and not Path(args.image).is_file():
        raise FileNotFoundError(f"image not found: {args.image}")
    game_type = args.type or ("T2T" if args.image is None else "I2T")
    game = GameInput(game_type=game_type, language=args.language, question=args.question, image=args.image)
    backbone = load_tuned_backbone(run_dir, config, stage=args.stage)
    generation = {
        "max_new_tokens": config.max_new_tokens,
        "do_sample": True,
        "temperature": 1.0,
        "top_p": 0.9,
    }
    if args.demo:
        for number, text in enumerate(
            demo_candidates(backbone, game, seed=config.seed, generation_kwargs=generation)
        ):
            print(f"{chr(ord('A') + number)}. {text}")
        return 0
    noun_path = run_dir.path / "noun_set.json"
    nouns = (
        json.loads(noun_path.read_text(encoding="utf-8")).get(args.language, [])
        if noun_path.is_file()
        else []
    )
    result = leap_of_thought(
        backbone,
        game,
        nouns,
        num_candidates=config.num_candidates,
        seed=config.seed,
        generation_kwargs=generation,
    )
    if args.verbose:
        for index, (condition, text) in enumerate(zip(result.conditions, result.candidates, strict=True)):
            marker = "*" if index == result.winner else " "
            print(f"{marker} [{condition or '-'}] {text}")
    print(result.response)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from clot.pipeline import run_pipeline

    config = _resolve_config(args)
    run_dir = _run_dir(args, config)
    results = run_pipeline(config, run_dir)
    summary = {key: results[key] for key in ("base", "ait", "refine", "clot") if key in results}
    _print_json(summary)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clot", description="Creative Leap-of-Thought (CLoT) humour tuning."
    )
    parser.add_argument("--log-level", default="INFO", help="Logging level (DEBUG, INFO, WARNING).")
    commands = parser.add_subparsers(dest="command", required=True)

    sample = commands.add_parser("sample-data", help="Write the built-in Oogiri-style sample data set.")
    sample.add_argument(
        "output", type=Path, help="Folder to write en.jsonl, cn.jsonl, jp.jsonl and images/ to."
    )
    sample.set_defaults(handler=_cmd_sample_data)

    build = commands.add_parser("build-instructions", help="Build the stage-1 instruction file.")
    _add_config_flags(build)
    build.add_argument("--output", type=Path, help="JSONL file; default RUN_DIR/instructions_stage1.jsonl.")
    build.set_defaults(handler=_cmd_build_instructions)

    train = commands.add_parser("train", help="Stage 1: build instructions and LoRA-tune the base model.")
    _add_config_flags(train)
    train.add_argument("--no-eval", action="store_true", help="Skip the evaluations before and after tuning.")
    train.set_defaults(handler=_cmd_train)

    refine = commands.add_parser("refine", help="Stage 2: self-refinement, then retraining (resumable).")
    _add_config_flags(refine)
    refine.add_argument("--no-retrain", action="store_true", help="Only write the refined instructions.")
    refine.add_argument("--no-eval", action="store_true", help="Skip the evaluation after retraining.")
    refine.set_defaults(handler=_cmd_refine)

    evaluate = commands.add_parser("evaluate", help="mTn accuracy and ranking NDCG on held-out data.")
    _add_config_flags(evaluate)
    evaluate.add_argument(
        "--stage", default="stage2", choices=("base", "stage1", "stage2"), help="Model to test."
    )
    evaluate.add_argument(
        "--dat",
        type=int,
        default=0,
        metavar="N",
        help="Also run N divergent-association questions (MiniLM ASD).",
    )
    evaluate.set_defaults(handler=_cmd_evaluate)

    chat = commands.add_parser("chat", help="Answer one Oogiri game with Algorithm 1.")
    _add_config_flags(chat)
    chat.add_argument("--image", help="Image file of an I2T or IT2T game.")
    chat.add_argument("--question", help="Question of a T2T game.")
    chat.add_argument("--type", choices=("I2T", "T2T", "IT2T"), help="Game type; default from the inputs.")
    chat.add_argument("--language", default="en", choices=("en", "zh", "ja"), help="Prompt language.")
    chat.add_argument("--stage", default="stage2", choices=("base", "stage1", "stage2"), help="Model to use.")
    chat.add_argument("--demo", action="store_true", help="List all candidates like the official demo.")
    chat.add_argument("--verbose", action="store_true", help="Show every candidate and its condition.")
    chat.set_defaults(handler=_cmd_chat)

    run = commands.add_parser("run", help="Stage 1, one round of stage 2 and evaluation before and after.")
    _add_config_flags(run)
    run.set_defaults(handler=_cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``clot`` command line; returns the exit code (2 for invalid input)."""
    from clot.data import OogiriDataError
    from qcore.logging import setup_logging

    parser = _parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        return args.handler(args)
    except (OogiriDataError, ValueError, FileNotFoundError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"clot: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
