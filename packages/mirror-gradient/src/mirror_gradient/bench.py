"""Mirror Gradient's cost: training time per epoch against plain training, and evaluation throughput.

A mirror pair costs one extra forward and backward pass and one extra optimiser step, so with interval
``beta`` an epoch ideally takes ``1 + 1/beta`` times as long as a plain one. Evaluation does not change.
Both variants run in the same process on the same data, and only ratios are reported.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from recbole.data import create_dataset, data_preparation
from recbole.utils import init_seed

from mirror_gradient.models import MODELS
from mirror_gradient.pipeline import PreparedData, build_config
from mirror_gradient.trainer import MirrorGradientTrainer

__all__ = ["benchmark_overhead"]

logger = logging.getLogger(__name__)


def _timed_variant(
    data: PreparedData,
    model_name: str,
    *,
    train_batch_size: int | None,
    mg: bool,
    beta: int,
    epochs: int,
    max_batches: int | None,
    device: str,
    work_dir: Path,
) -> dict[str, float]:
    config = build_config(
        model_name,
        data,
        mg=mg,
        seed=0,
        device=device,
        checkpoint_dir=work_dir / ("mg" if mg else "plain"),
        overrides={"mg_beta": beta, "max_train_batches": max_batches}
        | ({} if train_batch_size is None else {"train_batch_size": train_batch_size}),
    )
    init_seed(0, True)
    train_data, _, test_data = data_preparation(config, create_dataset(config))
    model = MODELS.get(model_name)(config, train_data.dataset).to(config["device"])
    trainer = MirrorGradientTrainer(config, model)

    trainer._train_epoch(train_data, 0)  # warm-up epoch, not timed
    epoch_seconds = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        trainer._train_epoch(train_data, epoch)
        epoch_seconds.append(time.perf_counter() - start)

    evaluation_times = []
    for _ in range(3):
        start = time.perf_counter()
        trainer.evaluate(test_data, load_best_model=False)
        evaluation_times.append(time.perf_counter() - start)
    evaluation_seconds = sorted(evaluation_times)[1]
    trainer.tensorboard.close()
    users = len(test_data.uid_list)
    return {
        "epoch_seconds": sorted(epoch_seconds)[len(epoch_seconds) // 2],
        "optimizer_steps_per_epoch": trainer.mirror.optimizer_steps / (epochs + 1),
        "evaluation_users_per_second": users / evaluation_seconds,
    }


def benchmark_overhead(
    data: PreparedData,
    *,
    model: str = "VBPR",
    beta: int = 3,
    epochs: int = 3,
    max_batches: int | None = None,
    train_batch_size: int | None = None,
    device: str = "cpu",
    work_dir: str | Path = "bench",
) -> dict[str, Any]:
    """Time plain and MG training epochs (median over ``epochs``) and full evaluations (median of 3).

    Returns:
        The raw timings of both variants, ``epoch_time_ratio`` (MG / plain), its ideal ``1 + 1/beta``,
        ``optimizer_step_ratio`` (``(N + ceil(N / beta)) / N`` for N batches, the exact ideal for this epoch
        length) and ``evaluation_throughput_ratio`` (MG-trained / plain-trained users per second).
    """
    work_dir = Path(work_dir)
    settings = {
        "train_batch_size": train_batch_size,
        "beta": beta,
        "epochs": epochs,
        "max_batches": max_batches,
        "device": device,
        "work_dir": work_dir,
    }
    plain = _timed_variant(data, model, mg=False, **settings)
    mirror = _timed_variant(data, model, mg=True, **settings)
    shutil.rmtree(work_dir, ignore_errors=True)
    return {
        "model": model,
        "beta": beta,
        "device": device,
        "plain": plain,
        "mirror_gradient": mirror,
        "epoch_time_ratio": mirror["epoch_seconds"] / plain["epoch_seconds"],
        "ideal_epoch_time_ratio": 1.0 + 1.0 / beta,
        "optimizer_step_ratio": mirror["optimizer_steps_per_epoch"] / plain["optimizer_steps_per_epoch"],
        "evaluation_throughput_ratio": mirror["evaluation_users_per_second"]
        / plain["evaluation_users_per_second"],
    }
