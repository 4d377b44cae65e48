"""Staged training schedule of DWSR, read from the ``train: stages:`` list of a BasicSR options file.

The paper (arXiv 1904.05802) does not publish its schedule. Our default trains the recognition network
first, then the two ways with the label mask, then everything jointly with the predicted mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["FUSION_MASKS", "LOSS_NAMES", "PARTS", "TrainingStage", "parse_stages", "scale_stage_iters"]

PARTS = ("recognition", "easy_way", "hard_way")
LOSS_NAMES = ("pixel", "easy", "hard", "recognition")
FUSION_MASKS = ("predicted", "label")
_STAGE_KEYS = ("name", "iters", "train", "losses", "fusion_mask")


@dataclass(frozen=True)
class TrainingStage:
    """One stage: which parts receive gradients, which losses count, and which mask fuses the ways.

    Attributes:
        name: Label used in logs.
        iters: Number of iterations of the stage.
        train: Parts of ``DWSRNet`` updated in this stage, from :data:`PARTS`.
        losses: Loss terms summed in this stage, from :data:`LOSS_NAMES`.
        fusion_mask: ``"predicted"`` fuses with the recognition network's mask, ``"label"`` with the
            PSNR-prior labels.
        first_iter: First iteration of the stage (1-based, as BasicSR counts).
    """

    name: str
    iters: int
    train: tuple[str, ...]
    losses: tuple[str, ...]
    fusion_mask: str
    first_iter: int

    @property
    def last_iter(self) -> int:
        """Last iteration of the stage (inclusive)."""
        return self.first_iter + self.iters - 1


def _as_names(value: Any, valid: Sequence[str], field: str, stage: str) -> tuple[str, ...]:
    names = [value] if isinstance(value, str) else list(value or [])
    if "all" in names:
        names = list(valid)
    invalid = [name for name in names if name not in valid]
    if invalid or not names:
        raise ValueError(
            f"stage {stage!r}: {field} must be a non-empty list of {list(valid)} or 'all', got {value!r}"
        )
    return tuple(names)


def parse_stages(stage_options: Sequence[dict] | None, total_iter: int) -> list[TrainingStage]:
    """Turn the options list into stages covering iterations ``1 .. total_iter``.

    No list means one joint stage that trains every part with every loss and the predicted mask.
    """
    if not stage_options:
        stage_options = [{"name": "joint", "iters": total_iter, "train": "all", "losses": "all"}]
    stages = []
    first_iter = 1
    for index, options in enumerate(stage_options):
        name = str(options.get("name", f"stage{index + 1}"))
        unknown = sorted(set(options) - set(_STAGE_KEYS))
        if unknown:
            raise ValueError(f"stage {name!r}: unknown key(s) {unknown}; valid keys are {list(_STAGE_KEYS)}")
        iters = options.get("iters")
        if not isinstance(iters, int) or iters < 0:
            raise ValueError(f"stage {name!r}: iters must be a non-negative integer, got {iters!r}")
        fusion_mask = options.get("fusion_mask", "predicted")
        if fusion_mask not in FUSION_MASKS:
            raise ValueError(
                f"stage {name!r}: fusion_mask must be one of {FUSION_MASKS}, got {fusion_mask!r}"
            )
        stages.append(
            TrainingStage(
                name=name,
                iters=iters,
                train=_as_names(options.get("train"), PARTS, "train", name),
                losses=_as_names(options.get("losses"), LOSS_NAMES, "losses", name),
                fusion_mask=fusion_mask,
                first_iter=first_iter,
            )
        )
        first_iter += iters
    covered = first_iter - 1
    if covered != total_iter:
        raise ValueError(
            f"the stages cover {covered} iterations but train.total_iter is {total_iter}; "
            "make the stage iters add up to total_iter"
        )
    return stages


def scale_stage_iters(iters: Sequence[int], total_iter: int) -> list[int]:
    """Rescale stage lengths to add up to ``total_iter``, keeping their proportions (largest remainder)."""
    if total_iter < 0:
        raise ValueError(f"total_iter must be non-negative, got {total_iter}")
    old_total = sum(iters)
    if old_total <= 0:
        raise ValueError(f"stage iters must add up to a positive number, got {list(iters)}")
    exact = [length * total_iter / old_total for length in iters]
    scaled = [int(value) for value in exact]
    order = sorted(range(len(iters)), key=lambda i: exact[i] - scaled[i], reverse=True)
    for i in order[: total_iter - sum(scaled)]:
        scaled[i] += 1
    return scaled
