"""Console script ``ras``: train, evaluate and bench CIFAR ResNets with RAS, and measure w's gradient at init.

``train``, ``evaluate`` and ``bench`` are the shared commands of ``qcore.vision.cli``. ``init-gradient``
builds a network with RAS, runs one training-mode forward and backward pass on random data and prints
the largest gradients of w, b and the BN between the two steps.
"""

from __future__ import annotations

import argparse
import json

import ras  # noqa: F401  (registers the attention name)
from qcore.seeding import seed_everything
from qcore.vision.cli import build_attention_cli
from qcore.vision.resnet import CIFAR_RESNETS
from ras.diagnostics import init_gradient_report, track_shared_scale
from ras.models import create_ras_resnet
from ras.module import RAS_WEIGHT_INIT

__all__ = ["main"]


def _add_init_gradient_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Gradient of RAS's shared scale w after one training-mode backward pass at initialisation."
    )
    parser.add_argument("--model", default="cifar_resnet164", choices=CIFAR_RESNETS.names(), help="backbone")
    parser.add_argument("--num-classes", type=int, default=100, help="classifier outputs")
    parser.add_argument("--batch-size", type=int, default=8, help="batch of random images (at least 2)")
    parser.add_argument("--image-size", type=int, default=32, help="input side in pixels")
    parser.add_argument("--steps", type=int, default=2, help="RAS recurrence steps")
    parser.add_argument(
        "--weight-init",
        type=float,
        default=RAS_WEIGHT_INIT,
        help="initial w (official value 0; others deviate)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the random batch")
    parser.add_argument(
        "--sgd-steps",
        type=int,
        default=0,
        help="then train this many SGD steps (lr 0.1, momentum 0.9, weight decay 1e-4) on random data and "
        "report max |w| after each",
    )


def _init_gradient(args: argparse.Namespace) -> int:
    seed_everything(args.seed)
    model = create_ras_resnet(
        args.model, num_classes=args.num_classes, steps=args.steps, weight_init=args.weight_init
    )
    report = init_gradient_report(
        model, batch_size=args.batch_size, image_size=args.image_size, seed=args.seed
    )
    if args.sgd_steps:
        report["w_abs_max_per_step"] = track_shared_scale(
            model,
            steps=args.sgd_steps,
            batch_size=args.batch_size,
            image_size=args.image_size,
            seed=args.seed,
        )
    print(json.dumps({"model": args.model, "weight_init": args.weight_init, **report}, indent=2))
    return 0


main = build_attention_cli(
    "ras",
    method_names=["ras"],
    default_method="ras",
    description="RAS (arXiv 2210.15676) on CIFAR ResNets: a recurrent shared per-channel affine attention.",
    extra_commands={"init-gradient": (_add_init_gradient_arguments, _init_gradient)},
)
