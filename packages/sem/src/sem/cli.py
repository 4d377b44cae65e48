"""Command line of ``sem``: ``train``, ``evaluate`` and ``bench`` on CIFAR ResNets with SEM.

Operators are switched with ``--attention-kwargs``, for example
``sem train --attention-kwargs '{"use_eca": false}'``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sem  # noqa: F401  (registers "sem")
from qcore.vision.cli import build_attention_cli

__all__ = ["main"]

_main = build_attention_cli(
    "sem",
    method_names=["sem"],
    default_method="sem",
    description="SEM (arXiv 2209.05680): train, evaluate and benchmark CIFAR ResNets with SEM.",
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sem`` command line and return its exit code."""
    return _main(argv)
