"""Command line: ``mirror-gradient train|evaluate|robustness|bench``.

Every subcommand accepts ``--config FILE.yaml`` whose keys are the long option names with underscores
(``alpha2: 0.3``, ``model: FREEDOM``); flags given on the command line override the file. A ``recbole``
mapping in the file passes further RecBole keys through unchanged. The resolved configuration is written
to the run directory.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = ["main"]

logger = logging.getLogger(__name__)

_DEFAULTS: dict[str, Any] = {
    "model": "VBPR",
    "data": None,
    "dataset": None,
    "cache_dir": None,
    "mg": True,
    "alpha1": 1.0,
    "alpha2": 0.2,
    "beta": 3,
    "counter": "batch",
    "update": "optimizer",
    "epochs": 50,
    "seed": 0,
    "device": "cpu",
    "max_steps": None,
    "output": "runs/mirror-gradient",
    "checkpoint": None,
    "recbole": {},
}


class UsageError(ValueError):
    """Invalid command-line input; reported as one line with exit code 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mirror-gradient", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--config", type=Path, help="YAML file with defaults for these options")
        sub.add_argument("--data", type=Path, help="MMRec dataset folder; default: the multimodal ml-100k")
        sub.add_argument("--dataset", help="dataset name (the .inter file is <data>/<dataset>.inter)")
        sub.add_argument("--cache-dir", type=Path, help="cache folder of the multimodal ml-100k")
        sub.add_argument("--device", choices=["cpu", "cuda"], help="device to run on (default cpu)")
        sub.add_argument("--seed", type=int, help="random seed (default 0)")
        sub.add_argument("--output", type=Path, help="run directory (default runs/mirror-gradient)")

    train = commands.add_parser("train", help="train a model with or without Mirror Gradient and test it")
    common(train)
    train.add_argument("--model", help="VBPR, BM3, FREEDOM or LATTICE (default VBPR)")
    train.add_argument(
        "--no-mg", dest="mg", action="store_const", const=False, help="train without Mirror Gradient"
    )
    train.add_argument("--alpha1", type=float, help="scale of the mirror pair's descent step (default 1.0)")
    train.add_argument("--alpha2", type=float, help="scale of the mirror pair's ascent step (default 0.2)")
    train.add_argument("--beta", type=int, help="mirror interval in batches (default 3)")
    train.add_argument("--counter", choices=["batch", "global"], help="mirror counter (default batch)")
    train.add_argument(
        "--update", choices=["optimizer", "sgd"], help="mirror update rule (default optimizer)"
    )
    train.add_argument("--epochs", type=int, help="maximum epochs (default 50)")
    train.add_argument("--max-steps", type=int, help="smoke mode: one epoch of at most this many batches")

    for name, text in (
        ("evaluate", "evaluate a checkpoint written by train on the test split"),
        ("robustness", "evaluate a checkpoint under perturbed item features"),
    ):
        sub = commands.add_parser(name, help=text)
        common(sub)
        sub.add_argument("--checkpoint", type=Path, help="checkpoint file (.pth) written by train")

    bench = commands.add_parser("bench", help="time MG's training overhead and evaluation throughput")
    common(bench)
    bench.add_argument("--model", help="model to time (default VBPR)")
    bench.add_argument("--beta", type=int, help="mirror interval in batches (default 3)")
    bench.add_argument("--epochs", type=int, help="epochs timed per variant (default 50 is capped to 3)")
    bench.add_argument("--max-steps", type=int, help="batches per timed epoch")
    return parser


def _resolve(args: argparse.Namespace) -> dict[str, Any]:
    settings = dict(_DEFAULTS)
    if args.config is not None:
        if not args.config.is_file():
            raise UsageError(f"config file not found: {args.config}")
        loaded = yaml.safe_load(args.config.read_text()) or {}
        if not isinstance(loaded, dict):
            raise UsageError(f"{args.config} must contain a mapping of option names to values")
        unknown = sorted(set(loaded) - set(_DEFAULTS))
        if unknown:
            raise UsageError(f"{args.config} has unknown keys {unknown}; valid keys: {sorted(_DEFAULTS)}")
        settings.update(loaded)
    for key, value in vars(args).items():
        if key in _DEFAULTS and value is not None:
            settings[key] = value
    if settings["max_steps"] is not None and settings["max_steps"] < 1:
        raise UsageError(f"--max-steps must be >= 1, got {settings['max_steps']}")
    if settings["epochs"] < 1:
        raise UsageError(f"--epochs must be >= 1, got {settings['epochs']}")
    from mirror_gradient.mirror import validate_mirror_settings

    validate_mirror_settings(
        alpha1=settings["alpha1"],
        alpha2=settings["alpha2"],
        beta=settings["beta"],
        counter=settings["counter"],
        update=settings["update"],
    )
    return settings


def _prepared_data(settings: dict[str, Any], work_dir: Path):
    from mirror_gradient.embedded import EMBEDDED_DATASET, build_ml100k_multimodal
    from mirror_gradient.pipeline import prepare_mmrec_dataset

    if settings["data"] is None:
        source = build_ml100k_multimodal(settings["cache_dir"])
        return prepare_mmrec_dataset(source, EMBEDDED_DATASET, work_dir)
    data = Path(settings["data"])
    name = settings["dataset"] or data.name
    if not (data / f"{name}.inter").is_file():
        raise UsageError(
            f"{data / (name + '.inter')} not found; --data must be an MMRec folder with <dataset>.inter"
        )
    return prepare_mmrec_dataset(data, name, work_dir)


def _overrides(settings: dict[str, Any]) -> dict[str, Any]:
    overrides = {
        "epochs": 1 if settings["max_steps"] else settings["epochs"],
        "mg_alpha1": settings["alpha1"],
        "mg_alpha2": settings["alpha2"],
        "mg_beta": settings["beta"],
        "mg_counter": settings["counter"],
        "mg_update": settings["update"],
        "max_train_batches": settings["max_steps"],
    }
    overrides.update(settings["recbole"] or {})
    return overrides


def _train(settings: dict[str, Any], run_dir: Any) -> dict[str, Any]:
    from mirror_gradient.models import MODELS
    from mirror_gradient.pipeline import run_experiment

    MODELS.get(settings["model"])
    data = _prepared_data(settings, run_dir.path / "work")
    outcome = run_experiment(
        settings["model"],
        data,
        mg=settings["mg"],
        seed=settings["seed"],
        work_dir=run_dir.path / "checkpoints",
        device=settings["device"],
        overrides=_overrides(settings),
        keep_trainer=True,
    )
    run_dir.log_metrics(outcome.best_epoch_count, **{f"valid/{k}": v for k, v in outcome.valid.items()})
    results = {"valid": outcome.valid, "test": outcome.test, "checkpoint": outcome.trainer.saved_model_file}
    run_dir.write_results(results)
    return results


def _load_checkpoint_trainer(settings: dict[str, Any]):
    import torch
    from recbole.data import create_dataset, data_preparation

    from mirror_gradient.models import MODELS
    from mirror_gradient.trainer import MirrorGradientTrainer

    path = settings["checkpoint"]
    if path is None or not Path(path).is_file():
        raise UsageError(f"--checkpoint must name a checkpoint file written by train, got {path}")
    # NOTE: RecBole checkpoints pickle the whole Config, so they load with weights_only=False; only load
    # checkpoints you wrote yourself.
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    config = checkpoint["config"]
    config["device"] = torch.device(settings["device"])
    dataset = create_dataset(config)
    train_data, _, test_data = data_preparation(config, dataset)
    model = MODELS.get(config["model"])(config, train_data.dataset).to(config["device"])
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    return MirrorGradientTrainer(config, model), test_data


def _evaluate(settings: dict[str, Any], run_dir: Any) -> dict[str, Any]:
    trainer, test_data = _load_checkpoint_trainer(settings)
    result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    results = {"test": {key: float(value) for key, value in result.items()}}
    run_dir.write_results(results)
    return results


def _robustness(settings: dict[str, Any], run_dir: Any) -> dict[str, Any]:
    from mirror_gradient.robustness import evaluate_under_perturbations

    trainer, test_data = _load_checkpoint_trainer(settings)
    results = evaluate_under_perturbations(trainer, test_data, seed=settings["seed"])
    run_dir.write_results(results)
    return results


def _bench(settings: dict[str, Any], run_dir: Any) -> dict[str, Any]:
    from mirror_gradient.bench import benchmark_overhead

    data = _prepared_data(settings, run_dir.path / "work")
    results = benchmark_overhead(
        data,
        model=settings["model"],
        beta=settings["beta"],
        epochs=min(settings["epochs"], 3),
        max_batches=settings["max_steps"],
        device=settings["device"],
        work_dir=run_dir.path / "checkpoints",
    )
    run_dir.write_results(results)
    return results


_COMMANDS = {"train": _train, "evaluate": _evaluate, "robustness": _robustness, "bench": _bench}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (2 for invalid input)."""
    args = _parser().parse_args(argv)
    # RecBole 1.2.1 fills missing values with a pandas idiom that warns on every dataset load.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"recbole\.")
    try:
        settings = _resolve(args)
        from qcore.logging import setup_logging
        from qcore.rundir import RunDir

        setup_logging("INFO")
        run_dir = RunDir(Path(settings["output"]) / args.command)
        run_dir.save_config(
            {
                "command": args.command,
                **{k: (str(v) if isinstance(v, Path) else v) for k, v in settings.items()},
            }
        )
        results = _COMMANDS[args.command](settings, run_dir)
    except (UsageError, ValueError, FileNotFoundError) as error:
        print(f"mirror-gradient {args.command}: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
