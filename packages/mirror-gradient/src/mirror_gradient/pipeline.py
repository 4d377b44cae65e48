"""Train and evaluate the multimodal recommenders on RecBole, with or without Mirror Gradient.

RecBole's ``quick_start`` is not used: it imports ray and configures the root logger. A run builds the
``Config``, dataset and data loaders directly, trains with :class:`~mirror_gradient.trainer.MirrorGradientTrainer`
(``mg_enabled`` switches Mirror Gradient on or off), keeps the best epoch on the validation metric and
evaluates it on the test split.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import init_seed

from mirror_gradient import compat as _compat  # noqa: F401  (applies the RecBole fixes)
from mirror_gradient.data import convert_mmrec_to_recbole, recbole_dataset_config
from mirror_gradient.models import MODELS, model_defaults
from mirror_gradient.trainer import MG_CONFIG_DEFAULTS, MirrorGradientTrainer

__all__ = [
    "BASE_CONFIG",
    "METRIC_KEYS",
    "PreparedData",
    "RunOutcome",
    "grid_points",
    "prepare_mmrec_dataset",
    "run_experiment",
    "select_hyper_parameters",
]

logger = logging.getLogger(__name__)

# Training and evaluation settings of the authors' overall.yaml, restricted to the cut-offs reported here.
BASE_CONFIG: dict[str, Any] = {
    "embedding_size": 64,
    "epochs": 1000,
    "stopping_step": 20,
    "train_batch_size": 2048,
    "learner": "adam",
    "learning_rate": 1e-3,
    "weight_decay": 0.0,
    "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1},
    "metrics": ["Recall", "NDCG", "Precision", "MAP"],
    "topk": [5, 10, 20],
    "valid_metric": "Recall@5",
    # RecBole's full-ranking loader puts eval_batch_size // n_items users in a batch. The authors' value 4096
    # counts users in MMRec, so this larger value keeps RecBole's batches at hundreds of users.
    "eval_batch_size": 2**20,
    "eval_step": 1,
    "show_progress": False,
    "reproducibility": True,
    "state": "WARNING",
    "worker": 0,
}

METRIC_KEYS = tuple(f"{metric}@{k}" for metric in ("recall", "ndcg", "precision", "map") for k in (5, 10, 20))


@dataclass(frozen=True)
class PreparedData:
    """An MMRec dataset converted for RecBole.

    Attributes:
        name: dataset name.
        data_path: RecBole's ``data_path`` (the folder above ``name/``).
        feature_dir: folder with ``image_feat.npy`` and ``text_feat.npy``.
    """

    name: str
    data_path: Path
    feature_dir: Path


@dataclass
class RunOutcome:
    """Result of one training run.

    Attributes:
        model_name: registered model name.
        mg: whether Mirror Gradient was on.
        seed: random seed of the run.
        settings: the hyper-parameters that differ from the model's defaults.
        valid: validation metrics of the best epoch, keys like ``"recall@5"``.
        test: test metrics of the best epoch.
        best_epoch_count: epochs trained until early stopping or the epoch limit.
        seconds: wall-clock training and evaluation time.
        parameters: trainable parameter count.
        trainer: the trainer, holding the best model, when the run kept it.
        test_data: the test data loader, when the run kept the trainer.
    """

    model_name: str
    mg: bool
    seed: int
    settings: dict[str, Any]
    valid: dict[str, float]
    test: dict[str, float]
    best_epoch_count: int
    seconds: float
    parameters: int
    trainer: MirrorGradientTrainer | None = field(default=None, repr=False)
    test_data: Any = field(default=None, repr=False)


def prepare_mmrec_dataset(source: str | Path, name: str, work_dir: str | Path) -> PreparedData:
    """Convert ``source/<name>.inter`` to RecBole benchmark files under ``work_dir`` and return the paths."""
    data_path = Path(work_dir) / "recbole_data"
    convert_mmrec_to_recbole(source, name, data_path)
    return PreparedData(name=name, data_path=data_path, feature_dir=Path(source))


def build_config(
    model_name: str,
    data: PreparedData,
    *,
    mg: bool,
    seed: int,
    device: str = "cpu",
    checkpoint_dir: str | Path = "saved",
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Merge the base settings, the model's YAML defaults, the dataset keys, MG keys and ``overrides``."""
    model_class = MODELS.get(model_name)
    defaults, _ = model_defaults(model_name)
    config_dict: dict[str, Any] = {**BASE_CONFIG, **defaults}
    config_dict.update(recbole_dataset_config(data.name, data.data_path, data.feature_dir))
    config_dict.update(MG_CONFIG_DEFAULTS)
    config_dict.update(overrides or {})
    config_dict.update(
        {
            "mg_enabled": mg,
            "seed": seed,
            "use_gpu": device.startswith("cuda"),
            "checkpoint_dir": str(checkpoint_dir),
        }
    )
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available; use device='cpu'.")
    return _ConfigWithoutCommandLine(model=model_class, dataset=data.name, config_dict=config_dict)


class _ConfigWithoutCommandLine(Config):
    """RecBole ``Config`` that ignores ``sys.argv``; the CLI and callers pass every key explicitly."""

    def _load_cmd_line(self):
        return {}


def _metrics(result: dict[str, Any]) -> dict[str, float]:
    return {key: float(result[key]) for key in METRIC_KEYS if key in result}


def run_experiment(
    model_name: str,
    data: PreparedData,
    *,
    mg: bool,
    seed: int,
    work_dir: str | Path,
    device: str = "cpu",
    overrides: dict[str, Any] | None = None,
    keep_trainer: bool = False,
) -> RunOutcome:
    """Train one model with or without Mirror Gradient and evaluate its best epoch on the test split.

    Args:
        model_name: a name registered in :data:`mirror_gradient.models.MODELS`.
        data: the prepared dataset.
        mg: whether Mirror Gradient is on.
        seed: random seed for initialisation, shuffling and sampling.
        work_dir: folder for checkpoints and TensorBoard events of this run (deleted unless ``keep_trainer``).
        device: ``"cpu"`` or ``"cuda"``.
        overrides: configuration keys that replace the defaults (for example ``epochs``, ``mg_alpha2``).
        keep_trainer: keep the trainer (with the best model loaded) and the test loader in the outcome.
    """
    start = time.perf_counter()
    checkpoint_dir = Path(work_dir) / f"{model_name}-{'mg' if mg else 'base'}-seed{seed}"
    config = build_config(
        model_name, data, mg=mg, seed=seed, device=device, checkpoint_dir=checkpoint_dir, overrides=overrides
    )
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)

    init_seed(config["seed"], config["reproducibility"])
    model = MODELS.get(model_name)(config, train_data.dataset).to(config["device"])
    trainer = MirrorGradientTrainer(config, model)
    trainer.fit(train_data, valid_data, verbose=False, saved=True, show_progress=False)
    valid = trainer.evaluate(valid_data, load_best_model=True, show_progress=False)
    test = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    trainer.tensorboard.close()
    outcome = RunOutcome(
        model_name=model_name,
        mg=mg,
        seed=seed,
        settings=dict(overrides or {}),
        valid=_metrics(valid),
        test=_metrics(test),
        best_epoch_count=len(trainer.train_loss_dict),
        seconds=time.perf_counter() - start,
        parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
    )
    if keep_trainer:
        outcome.trainer = trainer
        outcome.test_data = test_data
    else:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    logger.info(
        "%s %s seed %d %s: valid %s=%.4f, test %s=%.4f (%.1f s)",
        model_name,
        "MG" if mg else "base",
        seed,
        overrides or {},
        config["valid_metric"].lower(),
        outcome.valid.get(config["valid_metric"].lower(), float("nan")),
        config["valid_metric"].lower(),
        outcome.test.get(config["valid_metric"].lower(), float("nan")),
        outcome.seconds,
    )
    return outcome


def grid_points(grid: dict[str, Iterable[Any]]) -> list[dict[str, Any]]:
    """Return every combination of a grid ``{key: values}`` as a list of dicts (one empty dict for no keys)."""
    keys = sorted(grid)
    return [
        dict(zip(keys, values, strict=True)) for values in itertools.product(*(list(grid[k]) for k in keys))
    ]


def select_hyper_parameters(
    run: Callable[[dict[str, Any]], RunOutcome],
    grid: dict[str, Iterable[Any]],
    *,
    metric: str,
    selection: str = "valid",
) -> tuple[dict[str, Any], list[RunOutcome]]:
    """Run every grid point and return the best point and all outcomes.

    Args:
        run: trains one grid point, given as configuration overrides.
        grid: ``{key: candidate values}``.
        metric: the metric that ranks grid points, for example ``"recall@5"``.
        selection: ``"valid"`` (default) ranks on the validation split; ``"test"`` ranks on the test split,
            as the authors' and MMRec's ``quick_start`` do, to reproduce published numbers.
    """
    if selection not in ("valid", "test"):
        raise ValueError(f"selection must be 'valid' or 'test', got {selection!r}.")
    outcomes = [run(point) for point in grid_points(grid)]
    scores = [getattr(outcome, selection)[metric] for outcome in outcomes]
    best = max(range(len(outcomes)), key=scores.__getitem__)
    return outcomes[best].settings, outcomes
