"""Command line of ``asr``: ``train``, ``evaluate`` and ``bench`` (shared with the other attention packages),
plus ``fold`` (turn a trained ASR checkpoint into a plain backbone checkpoint) and ``bench-folded``."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import asr  # noqa: F401  (registers "asr" and "asr_se")
from asr.benchmark import benchmark_folding
from asr.deploy import evaluate_before_and_after_folding
from asr.reparameterize import count_asr_modules, reparameterize
from qcore.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from qcore.report import markdown_table
from qcore.rundir import RunDir
from qcore.vision.cli import AttentionRunConfig, build_attention_cli, build_model_from_config
from qcore.vision.data import build_datasets

__all__ = ["main"]

logger = logging.getLogger(__name__)

# Attention of the deployed network after folding each trainable ASR variant.
_FOLDED_ATTENTION = {"asr": "none", "asr_se": "se"}


def _checkpoint_folder(path: Path) -> Path:
    for candidate in (path, path / "checkpoints" / "best", path / "checkpoints" / "last"):
        if (candidate / "checkpoint.json").is_file():
            return candidate
    raise CheckpointError(
        f"no checkpoint found at {path}: pass a checkpoint folder or a run folder that contains "
        "checkpoints/best or checkpoints/last"
    )


def _add_fold_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="checkpoint folder or run folder of an ASR model")
    parser.add_argument("--output", required=True, help="folder for the folded checkpoint")
    parser.add_argument("--data-root", default=None, help="data folder, if it moved since training")
    parser.add_argument(
        "--no-evaluate", action="store_true", help="skip the test-set accuracy before and after folding"
    )


def _fold(args: argparse.Namespace) -> int:
    checkpoint = load_checkpoint(_checkpoint_folder(Path(args.checkpoint)))
    if checkpoint.config is None:
        raise CheckpointError(f"{checkpoint.path} stores no config, so the model cannot be rebuilt")
    config = AttentionRunConfig.from_dict(checkpoint.config)
    if args.data_root is not None:
        config = config.replace(data_root=args.data_root)
    if config.attention not in _FOLDED_ATTENTION:
        raise ValueError(
            f"the checkpoint's attention is {config.attention!r}, but fold works only on {sorted(_FOLDED_ATTENTION)}"
        )
    _, _, num_classes = build_datasets(
        config.dataset, root=config.data_root, image_size=config.image_size, augment=False
    )
    model = build_model_from_config(config, num_classes)
    model.load_state_dict(checkpoint.state_dict)
    model.eval()
    if count_asr_modules(model) == 0:
        raise ValueError(f"the model in {checkpoint.path} contains no ASR module to fold")

    summary: dict[str, object] = {"checkpoint": str(checkpoint.path)}
    if not args.no_evaluate:
        summary.update(evaluate_before_and_after_folding(model, config))
    reparameterize(model)
    folded_config = config.replace(attention=_FOLDED_ATTENTION[config.attention], attention_kwargs={})
    output = save_checkpoint(Path(args.output), model=model, config=folded_config)
    summary["folded_checkpoint"] = str(output)
    summary["folded_attention"] = folded_config.attention
    print(json.dumps(summary, indent=2))
    return 0


def _add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="cifar_resnet164", help="CIFAR ResNet name")
    parser.add_argument("--num-classes", type=int, default=100, help="classifier outputs")
    parser.add_argument("--input-size", type=int, default=32, help="input side in pixels")
    parser.add_argument("--batch-size", type=int, default=1, help="images per timed forward pass")
    parser.add_argument("--repeats", type=int, default=20, help="timed repetitions (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: PyTorch's setting)")
    parser.add_argument("--output", default=None, help="folder for bench_folded.json")


def _bench_folded(args: argparse.Namespace) -> int:
    for name in ("num_classes", "input_size", "batch_size", "repeats"):
        if getattr(args, name) < 1:
            raise ValueError(
                f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}"
            )
    rows = benchmark_folding(
        model=args.model,
        num_classes=args.num_classes,
        input_size=args.input_size,
        batch_size=args.batch_size,
        repeats=args.repeats,
        threads=args.threads,
    )
    columns = ["variant", "params", "flops", "latency_ms", "latency_ms_vs_plain", "latency_ms_vs_se"]
    columns += ["params_vs_plain", "flops_vs_plain"]
    print(markdown_table(rows, columns))
    if args.output:
        RunDir(args.output).write_json("bench_folded.json", rows)
    return 0


_main = build_attention_cli(
    "asr",
    method_names=["asr", "asr_se"],
    default_method="asr",
    description="ASR (arXiv 2304.06345): train, evaluate, fold and benchmark CIFAR ResNets with ASR.",
    extra_commands={
        "fold": (_add_fold_arguments, _fold),
        "bench-folded": (_add_bench_arguments, _bench_folded),
    },
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``asr`` command line and return its exit code."""
    return _main(argv)
