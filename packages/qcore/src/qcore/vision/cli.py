"""Command-line interface shared by the CIFAR attention packages: ``train``, ``evaluate`` and ``bench``.

``build_attention_cli`` returns a ``main(argv=None) -> int``. Every field of :class:`AttentionRunConfig`
becomes a ``train`` flag (``--max-steps``, ``--attention``, ...). A ``--config`` YAML sets defaults, and
flags given on the command line override it. The resolved config is written to the run folder as
``config.yaml`` and stored with every checkpoint, so ``evaluate`` rebuilds the model from the checkpoint
alone. Invalid input prints one ``error:`` line and returns exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from qcore.checkpoint import CheckpointError, load_checkpoint
from qcore.config import option
from qcore.logging import setup_logging
from qcore.registry import UnknownNameError
from qcore.report import markdown_table
from qcore.rundir import RunDir
from qcore.seeding import seed_everything
from qcore.vision.attention import resolve_attention
from qcore.vision.benchmark import benchmark_attention_variants
from qcore.vision.data import DatasetNotFoundError, build_datasets
from qcore.vision.resnet import CIFAR_RESNETS, create_cifar_resnet
from qcore.vision.train import TrainConfig, evaluate_classifier, train_classifier

__all__ = ["AttentionRunConfig", "build_attention_cli", "build_model_from_config"]

logger = logging.getLogger(__name__)

# Errors that come from user input; anything else is a bug and keeps its traceback.
USER_ERRORS = (
    ValueError,
    TypeError,
    FileNotFoundError,
    CheckpointError,
    DatasetNotFoundError,
    UnknownNameError,
)


@dataclasses.dataclass(kw_only=True)
class AttentionRunConfig(TrainConfig):
    """A training recipe plus the model it trains."""

    model: str = option("cifar_resnet164", help="CIFAR ResNet name", choices=tuple(CIFAR_RESNETS.names()))
    attention: str = option("none", help="registered attention name, or 'none' for the plain ResNet")
    attention_kwargs: dict[str, Any] = option(  # noqa: RUF009
        default_factory=dict, help="keyword arguments of the attention module (YAML mapping or JSON string)"
    )
    attn_stages: tuple[int, ...] | None = option(
        None, help="0-based stages that get attention (default: all)"
    )
    num_classes: int = option(0, help="classifier outputs (0: the dataset's class count)")

    def validate(self) -> None:
        super().validate()
        if isinstance(self.attention_kwargs, str):
            try:
                self.attention_kwargs = json.loads(self.attention_kwargs)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"invalid attention_kwargs={self.attention_kwargs!r}: not JSON ({error})"
                ) from None
        if not isinstance(self.attention_kwargs, dict):
            raise ValueError(f"invalid attention_kwargs={self.attention_kwargs!r}: must be a mapping")
        resolve_attention(self.attention, **self.attention_kwargs)


def build_model_from_config(config: AttentionRunConfig, num_classes: int) -> Any:
    """Build the CIFAR ResNet that ``config`` describes."""
    return create_cifar_resnet(
        config.model,
        num_classes=config.num_classes or num_classes,
        attn_layer=resolve_attention(config.attention, **config.attention_kwargs),
        attn_stages=config.attn_stages,
    )


def _flag_type(annotation: Any) -> tuple[Any, dict[str, Any]]:
    """Return the argparse ``type`` and extra keywords for a field annotation."""
    hint = annotation
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = options[0]
    origin = typing.get_origin(hint)
    if hint is bool:
        return None, {"action": argparse.BooleanOptionalAction}
    if origin is tuple:
        return int, {"nargs": "*"}
    if origin is dict:
        return str, {}
    if hint in (int, float, str):
        return hint, {}
    return str, {}


def _add_config_flags(parser: argparse.ArgumentParser, config_cls: type[AttentionRunConfig]) -> None:
    hints = typing.get_type_hints(config_cls)
    for field in dataclasses.fields(config_cls):
        flag_type, extra = _flag_type(hints[field.name])
        help_text = field.metadata.get("help", "")
        if field.metadata.get("choices"):
            extra["choices"] = field.metadata["choices"]
        if flag_type is not None:
            extra["type"] = flag_type
        parser.add_argument(
            "--" + field.name.replace("_", "-"),
            dest=field.name,
            default=argparse.SUPPRESS,
            help=help_text,
            **extra,
        )


def _resolve_config(args: argparse.Namespace, config_cls: type[AttentionRunConfig], defaults: dict[str, Any]):
    values = dict(defaults)
    if args.config is not None:
        path = Path(args.config)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"config file {path} must contain a mapping, got {type(loaded).__name__}")
        loaded.pop("_type", None)
        values.update(loaded)
    field_names = {f.name for f in dataclasses.fields(config_cls)}
    values.update({k: v for k, v in vars(args).items() if k in field_names})
    return config_cls.from_dict(values)


def _train(args: argparse.Namespace, config_cls: type[AttentionRunConfig], defaults: dict[str, Any]) -> int:
    config = _resolve_config(args, config_cls, defaults)
    run_dir = RunDir(args.output)
    _, _, num_classes = build_datasets(
        config.dataset, root=config.data_root, image_size=config.image_size, augment=False
    )
    # Seed before building, so the initial weights depend only on config.seed.
    seed_everything(config.seed)
    model = build_model_from_config(config, num_classes)
    logger.info("training %s with attention %r in %s", config.model, config.attention, run_dir.path)
    results = train_classifier(model, config, run_dir, resume=not args.no_resume)
    summary = {key: value for key, value in results.items() if key != "history"}
    print(json.dumps({"run_dir": str(run_dir.path), **summary}, indent=2))
    return 0


def _checkpoint_folder(path: Path) -> Path:
    for candidate in (path, path / "checkpoints" / "best", path / "checkpoints" / "last"):
        if (candidate / "checkpoint.json").is_file():
            return candidate
    raise CheckpointError(
        f"no checkpoint found at {path}: pass a checkpoint folder or a run folder that contains "
        "checkpoints/best or checkpoints/last"
    )


def _evaluate(args: argparse.Namespace, config_cls: type[AttentionRunConfig]) -> int:
    checkpoint = load_checkpoint(_checkpoint_folder(Path(args.checkpoint)))
    if checkpoint.config is None:
        raise CheckpointError(f"{checkpoint.path} stores no config, so the model cannot be rebuilt")
    config = config_cls.from_dict(checkpoint.config)
    changes = {"device": args.device or config.device}
    if args.data_root is not None:
        changes["data_root"] = args.data_root
    config = config.replace(**changes)
    _, test_set, num_classes = build_datasets(
        config.dataset, root=config.data_root, image_size=config.image_size, augment=False
    )
    model = build_model_from_config(config, num_classes)
    model.load_state_dict(checkpoint.state_dict)
    device = "cuda" if config.device == "cuda" else "cpu"
    from torch.utils.data import DataLoader

    loader = DataLoader(test_set, batch_size=config.test_batch_size)
    result = evaluate_classifier(model.to(device), loader)
    print(json.dumps({"checkpoint": str(checkpoint.path), "dataset": config.dataset, **result}, indent=2))
    return 0


def _bench(args: argparse.Namespace, method_names: Sequence[str]) -> int:
    methods = args.methods or list(method_names)
    rows = benchmark_attention_variants(
        {name: name for name in methods},
        model=args.model,
        num_classes=args.num_classes,
        input_size=args.input_size,
        batch_size=args.batch_size,
        device=args.device,
        repeats=args.repeats,
    )
    columns = ["variant", "params", "flops", "forward_ms", "train_step_ms"]
    columns += [
        f"{m}_vs_{b}" for b in ("plain", "se") for m in ("params", "flops", "forward_ms", "train_step_ms")
    ]
    print(markdown_table(rows, columns))
    if args.output:
        RunDir(args.output).write_json("bench.json", rows)
    return 0


def build_attention_cli(
    prog: str,
    *,
    method_names: Sequence[str],
    default_method: str,
    description: str | None = None,
    config_cls: type[AttentionRunConfig] = AttentionRunConfig,
    train_defaults: dict[str, Any] | None = None,
    extra_commands: dict[
        str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
    ]
    | None = None,
) -> Callable[[Sequence[str] | None], int]:
    """Return ``main(argv=None) -> int`` with ``train``, ``evaluate`` and ``bench`` subcommands.

    Args:
        prog: Program name shown in help and used for the default output folder ``runs/<prog>``.
        method_names: Registered attention names of the package (they must be registered on import).
        default_method: Attention used by ``train`` unless ``--attention`` is given.
        description: Help text of the program.
        config_cls: Config class (an :class:`AttentionRunConfig` subclass may add fields).
        train_defaults: Config values that replace the class defaults (for example ``aux_loss_weight``).
        extra_commands: Name -> (function adding arguments to the subparser, handler returning the exit code).
    """
    defaults = {"attention": default_method, **(train_defaults or {})}

    def main(argv: Sequence[str] | None = None) -> int:
        parser = argparse.ArgumentParser(prog=prog, description=description)
        parser.add_argument("--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING, ERROR)")
        commands = parser.add_subparsers(dest="command", required=True)

        train = commands.add_parser("train", help="train a CIFAR ResNet with attention")
        train.add_argument("--config", default=None, help="YAML file with config values; flags override it")
        train.add_argument("--output", default=f"runs/{prog}/train", help="run folder (metrics, checkpoints)")
        train.add_argument(
            "--no-resume", action="store_true", help="start afresh even if the folder has a checkpoint"
        )
        _add_config_flags(train, config_cls)

        evaluate = commands.add_parser("evaluate", help="evaluate a checkpoint on its dataset's test split")
        evaluate.add_argument("--checkpoint", required=True, help="checkpoint folder or run folder")
        evaluate.add_argument("--data-root", default=None, help="data folder, if it moved since training")
        evaluate.add_argument("--device", default=None, choices=("cpu", "cuda"), help="device to evaluate on")

        bench = commands.add_parser("bench", help="parameters, FLOPs and latency against plain and SE")
        bench.add_argument(
            "--methods", nargs="*", default=None, help=f"attention names (default: {list(method_names)})"
        )
        bench.add_argument(
            "--model", default="cifar_resnet164", choices=CIFAR_RESNETS.names(), help="backbone"
        )
        bench.add_argument("--num-classes", type=int, default=100, help="classifier outputs")
        bench.add_argument("--input-size", type=int, default=32, help="input side in pixels")
        bench.add_argument("--batch-size", type=int, default=8, help="batch of the latency measurements")
        bench.add_argument("--repeats", type=int, default=5, help="timed repetitions (median reported)")
        bench.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="device to measure on")
        bench.add_argument("--output", default=None, help="folder for bench.json")

        handlers: dict[str, Callable[[argparse.Namespace], int]] = {
            "train": lambda a: _train(a, config_cls, defaults),
            "evaluate": lambda a: _evaluate(a, config_cls),
            "bench": lambda a: _bench(a, method_names),
        }
        for name, (add_arguments, handler) in (extra_commands or {}).items():
            add_arguments(commands.add_parser(name))
            handlers[name] = handler

        args = parser.parse_args(argv)
        setup_logging(args.log_level)
        try:
            return handlers[args.command](args)
        except USER_ERRORS as error:
            print(f"{prog}: error: {error}", file=sys.stderr)
            return 2

    return main
