"""The ``spenet`` command: train, evaluate and benchmark CIFAR ResNets with SPEM."""

from __future__ import annotations

from collections.abc import Sequence

import spenet  # noqa: F401  (registers "spem" in the attention registry)
from qcore.vision.cli import build_attention_cli

__all__ = ["main"]

_main = build_attention_cli(
    "spenet",
    method_names=["spem"],
    default_method="spem",
    description=(
        "SPEM (arXiv 2208.10322) on CIFAR ResNets. The training loss is cross-entropy plus "
        "--aux-loss-weight (α, default 0.1) times the sum of ‖p‖² over all SPEM modules."
    ),
    train_defaults={"aux_loss_weight": 0.1},
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``spenet`` command line and return its exit code."""
    return _main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
