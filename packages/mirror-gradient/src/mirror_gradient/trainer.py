"""RecBole trainer that trains with Mirror Gradient (arXiv 2402.11262).

Only ``_train_epoch`` changes. Validation, early stopping, checkpoints and evaluation are RecBole's own.
The configuration keys carry an ``mg_`` prefix, so they never collide with a model's own keys (MVGAE,
for example, has its own ``beta``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

import recbole.trainer.trainer as recbole_trainer_module
import torch
from recbole.data.interaction import Interaction
from recbole.trainer import Trainer
from recbole.utils import set_color
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from mirror_gradient import compat as _compat  # noqa: F401  (applies the RecBole fixes)
from mirror_gradient.mirror import MirrorGradient, validate_mirror_settings

__all__ = ["MG_CONFIG_DEFAULTS", "MirrorGradientTrainer", "mirror_settings_from_config"]

logger = logging.getLogger(__name__)

# Defaults of the configuration keys. alpha1 and beta are the authors' values; alpha2 = 0.2 is the middle of
# their grid {0.1, 0.2, 0.3} and is our choice when no grid search runs.
MG_CONFIG_DEFAULTS: dict[str, Any] = {
    "mg_enabled": True,
    "mg_alpha1": 1.0,
    "mg_alpha2": 0.2,
    "mg_beta": 3,
    "mg_counter": "batch",
    "mg_update": "optimizer",
}


def mirror_settings_from_config(config: Any) -> dict[str, Any]:
    """Read the ``mg_*`` keys from a RecBole ``Config`` (or a dict), filling in the defaults, and check them."""
    settings = {}
    for key, default in MG_CONFIG_DEFAULTS.items():
        value = config[key]
        settings[key] = default if value is None else value
    if not isinstance(settings["mg_enabled"], bool):
        raise ValueError(f"mg_enabled must be true or false, got {settings['mg_enabled']!r}.")
    validate_mirror_settings(
        alpha1=settings["mg_alpha1"],
        alpha2=settings["mg_alpha2"],
        beta=settings["mg_beta"],
        counter=settings["mg_counter"],
        update=settings["mg_update"],
    )
    return settings


@contextlib.contextmanager
def _tensorboard_in(directory: str) -> Iterator[None]:
    """Make RecBole's trainer write TensorBoard events under ``directory`` instead of ``./log_tensorboard``."""
    original = recbole_trainer_module.get_tensorboard

    def writer_in_directory(logger):
        return SummaryWriter(os.path.join(directory, "tensorboard"))

    recbole_trainer_module.get_tensorboard = writer_in_directory
    try:
        yield
    finally:
        recbole_trainer_module.get_tensorboard = original


def _copy_interaction(interaction: Interaction) -> Interaction:
    return Interaction({name: tensor.clone() for name, tensor in interaction.interaction.items()})


class MirrorGradientTrainer(Trainer):
    """RecBole ``Trainer`` whose training epoch follows Mirror Gradient.

    Per epoch it calls ``model.pre_epoch_processing()`` when the model defines it (graph re-sampling or edge
    dropout), then trains every batch with :class:`~mirror_gradient.mirror.MirrorGradient`, then calls
    ``model.post_epoch_processing()`` when defined. The mirror pass re-uses a copy of the batch, negatives
    included. The epoch loss is the sum of the first-pass losses, as in the authors' trainer. A NaN loss in
    either pass raises ValueError, as RecBole's trainer does.

    With ``mg_enabled: False`` the same loop trains normally, which gives a baseline with identical
    epoch hooks. The optional key ``max_train_batches`` stops each epoch after that many batches (smoke
    runs and benchmarks). TensorBoard events go to ``<checkpoint_dir>/tensorboard``.
    """

    def __init__(self, config: Any, model: torch.nn.Module) -> None:
        with _tensorboard_in(config["checkpoint_dir"]):
            super().__init__(config, model)
        self.mg_settings = mirror_settings_from_config(config)
        if not config["single_spec"] and self.mg_settings["mg_enabled"]:
            raise ValueError(
                "MirrorGradientTrainer does not support distributed training; run on one device "
                "(single_spec: True) or set mg_enabled: False."
            )
        scaler = torch.amp.GradScaler(enabled=True) if self.enable_scaler else None
        self.mirror = MirrorGradient(
            self.optimizer,
            alpha1=self.mg_settings["mg_alpha1"],
            alpha2=self.mg_settings["mg_alpha2"],
            beta=self.mg_settings["mg_beta"],
            counter=self.mg_settings["mg_counter"],
            update=self.mg_settings["mg_update"],
            clip_grad_norm=self.clip_grad_norm,
            scaler=scaler,
            enabled=self.mg_settings["mg_enabled"],
        )

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        self.model.train()
        loss_func = loss_func or self.model.calculate_loss
        if hasattr(self.model, "pre_epoch_processing"):
            self.model.pre_epoch_processing()

        iter_data = train_data
        if show_progress:
            iter_data = tqdm(
                train_data,
                total=len(train_data),
                ncols=100,
                desc=set_color(f"Train {epoch_idx:>5}", "pink"),
            )

        self.mirror.start_epoch()
        total_loss = None
        batch_limit = self.config["max_train_batches"]
        for batch_index, interaction in enumerate(iter_data):
            if batch_limit is not None and batch_index >= batch_limit:
                break
            interaction = interaction.to(self.device)
            mirror_copy = _copy_interaction(interaction)
            passes = iter((interaction, mirror_copy))

            def compute_loss(passes=passes):
                batch = next(passes)
                with torch.autocast(device_type=self.device.type, enabled=self.enable_amp):
                    return loss_func(batch)

            result = self.mirror.step(compute_loss, check_loss=self._check_nan)
            if len(result.losses) > 1:
                parts = tuple(part.item() for part in result.losses)
                total_loss = (
                    parts if total_loss is None else tuple(map(sum, zip(total_loss, parts, strict=True)))
                )
            else:
                value = result.loss.item()
                total_loss = value if total_loss is None else total_loss + value

        if hasattr(self.model, "post_epoch_processing"):
            self.model.post_epoch_processing()
        return total_loss
