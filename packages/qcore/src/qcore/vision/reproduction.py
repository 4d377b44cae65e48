"""Shared reproduction runner of the CIFAR attention packages: plain ResNet, SE and the method.

``run_attention_reproduction`` trains every variant with the same seeds, data and recipe and turns the
runs into a :class:`qcore.reproduce.ReproductionResult`, so each attention package's ``reproduce`` is a
few lines. Presets:

- ``smoke``: tiny bottleneck ResNet (depth 11) on 16×16 digits for 2 optimizer steps, evaluated on 100
  test images; seconds.
- ``default``: ResNet-20 (basic blocks) on scikit-learn's digits at 32×32 for 10 epochs, lr × 0.1 after
  epochs 6 and 9; a few minutes per package on two CPU cores.
- ``paper``: ResNet-164 (bottleneck) on CIFAR-100 (or CIFAR-10) with the full recipe of the papers: 164
  epochs, lr 0.1, × 0.1 after epochs 81 and 122, batch 128, weight decay 1e-4. Needs ``data_root``.

Plain and SE runs do not depend on the package, so they are cached in ``context.cache_dir`` (when set)
and trained once per main-job run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qcore.bench import count_flops, count_parameters
from qcore.plots import plot_curves
from qcore.report import markdown_table
from qcore.reproduce import ReproductionContext, ReproductionResult, ResultRow
from qcore.seeding import seed_everything
from qcore.vision.attention import attention_name
from qcore.vision.data import CIFAR_HOW_TO_GET
from qcore.vision.resnet import create_cifar_resnet
from qcore.vision.train import TrainConfig, train_classifier

__all__ = ["PRESET_RECIPES", "PresetRecipe", "Variant", "build_variant_model", "run_attention_reproduction"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PresetRecipe:
    """Model and training settings of one reproduction preset."""

    model: str
    dataset: str
    train: Mapping[str, Any]


PRESET_RECIPES: dict[str, PresetRecipe] = {
    "smoke": PresetRecipe(
        model="cifar_resnet_test",
        dataset="digits",
        train={
            "image_size": 16,
            "epochs": 1,
            "milestones": (),
            "batch_size": 32,
            "max_steps": 2,
            "max_eval_batches": 1,
        },
    ),
    "default": PresetRecipe(
        model="cifar_resnet20",
        dataset="digits",
        train={"image_size": 32, "epochs": 10, "milestones": (6, 9), "batch_size": 128},
    ),
    "paper": PresetRecipe(model="cifar_resnet164", dataset="cifar100", train={}),
}

CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Variant:
    """One compared model: an attention spec for :class:`qcore.vision.resnet.CifarResNet` and its role.

    Attributes:
        attn_layer: Attention spec (registered name, class or callable of the channel count), or None.
        attn_factory: ``(channels, stage_index, block_index) -> module or None``, instead of ``attn_layer``.
        attn_stages: Stages that get attention (None: all).
        last_norm_factory: Replacement for each block's last BN, see ``CifarResNet``.
        role: ``"method"`` or ``"baseline"``.
        train_overrides: ``TrainConfig`` fields that differ for this variant (for example
            ``aux_loss_weight``).
        after_training: Called with the trained model; returns extra metrics for the row (for example the
            accuracy after folding a re-parameterised model).
    """

    attn_layer: Any = None
    attn_factory: Callable[[int, int, int], nn.Module | None] | None = None
    attn_stages: Sequence[int] | None = None
    last_norm_factory: Callable[[int, int, int], nn.Module | None] | None = None
    role: str = "method"
    train_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    after_training: Callable[[nn.Module, TrainConfig], Mapping[str, float]] | None = None

    def cache_key(self) -> str | None:
        """Return a key shared by equal variants in every package, or None when the variant is not cacheable."""
        cacheable = (
            self.attn_factory is None
            and self.last_norm_factory is None
            and self.after_training is None
            and (self.attn_layer is None or isinstance(self.attn_layer, str))
        )
        if not cacheable:
            return None
        stages = None if self.attn_stages is None else sorted(self.attn_stages)
        return json.dumps(
            [attention_name(self.attn_layer), stages, dict(self.train_overrides)], sort_keys=True
        )


def _as_variant(spec: Any, role: str) -> Variant:
    return spec if isinstance(spec, Variant) else Variant(attn_layer=spec, role=role)


def build_variant_model(variant: Variant | Any, model: str, *, num_classes: int) -> nn.Module:
    """Build the named CIFAR ResNet with the variant's attention."""
    variant = _as_variant(variant, "method")
    return create_cifar_resnet(
        model,
        num_classes=num_classes,
        attn_layer=variant.attn_layer,
        attn_factory=variant.attn_factory,
        attn_stages=variant.attn_stages,
        last_norm_factory=variant.last_norm_factory,
    )


def _train_config(context: ReproductionContext, recipe: PresetRecipe, dataset: str, seed: int) -> TrainConfig:
    data_root = None
    if context.preset == "paper":
        if dataset not in CIFAR_FOLDERS:
            raise ValueError(f"invalid paper dataset {dataset!r}; valid values: {', '.join(CIFAR_FOLDERS)}")
        folder = context.require_data(CIFAR_FOLDERS[dataset], CIFAR_HOW_TO_GET)
        data_root = str(folder)
    device = "cuda" if context.device == "cuda" else "cpu"
    return TrainConfig(dataset=dataset, data_root=data_root, seed=seed, device=device, **dict(recipe.train))


def _cache_file(
    context: ReproductionContext, model: str, variant: Variant, config: TrainConfig
) -> Path | None:
    key = variant.cache_key()
    if context.cache_dir is None or key is None:
        return None
    # data_root and device do not change the result's meaning, so they stay out of the key.
    payload = json.dumps(
        [
            context.preset,
            model,
            key,
            {k: v for k, v in config.to_dict().items() if k not in ("data_root", "device")},
        ],
        sort_keys=True,
    )
    digest = hashlib.sha256(payload.encode()).hexdigest()[:16]
    return Path(context.cache_dir) / "qcore_vision" / f"{digest}.json"


def _train_one(
    context: ReproductionContext,
    name: str,
    variant: Variant,
    model_name: str,
    config: TrainConfig,
    num_classes: int,
) -> dict[str, Any]:
    cache_file = _cache_file(context, model_name, variant, config)
    if cache_file is not None and cache_file.is_file():
        logger.info("%s seed %d: reusing cached run %s", name, config.seed, cache_file)
        return json.loads(cache_file.read_text(encoding="utf-8"))

    seed_everything(config.seed)
    model = build_variant_model(variant, model_name, num_classes=num_classes)
    run_dir = context.run_dir.subdir(f"runs/{name}/seed{config.seed}")
    # Only the long paper runs continue from an earlier checkpoint; shorter presets start afresh.
    results = train_classifier(model, config, run_dir, resume=context.preset == "paper")
    model.cpu().eval()
    if variant.after_training is not None:
        results["extra"] = dict(variant.after_training(model, config))
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(json.dumps(results), encoding="utf-8")
    return results


def _mean(values: list[float]) -> float:
    return float(statistics.fmean(values))


def _std(values: list[float]) -> float:
    return float(statistics.stdev(values)) if len(values) > 1 else 0.0


def run_attention_reproduction(
    context: ReproductionContext,
    *,
    package: str,
    variants: Mapping[str, Any],
    baseline_names: Sequence[str] = ("plain", "se"),
    paper_dataset: str = "cifar100",
    references: Sequence[ResultRow] = (),
    notes: str = "",
) -> ReproductionResult:
    """Train every variant with each seed of ``context`` and return the comparison.

    Args:
        context: The main job's context (preset, seeds, run folder, data root, device).
        package: Distribution name of the calling package.
        variants: Row name -> attention spec or :class:`Variant`. Names in ``baseline_names`` get the
            ``"baseline"`` role, the others ``"method"`` unless a ``Variant`` says otherwise. Include
            ``"plain": None`` and ``"se": "se"`` for the standard baselines.
        baseline_names: Names treated as baselines when given as plain specs.
        paper_dataset: ``"cifar100"`` or ``"cifar10"``, used by the paper preset.
        references: Published numbers to show beside ours (role ``"reference"``); their metrics must
            contain ``best_acc``.
        notes: Extra text for the report section.

    Returns:
        Rows with ``best_acc`` (primary, best test top-1 over epochs, mean over seeds, in percent),
        ``final_acc``, their standard deviations over seeds, parameters, FLOPs per image and the mean
        training seconds, plus test-accuracy curves and a figure.
    """
    if not variants:
        raise ValueError("run_attention_reproduction needs at least one variant")
    recipe = PRESET_RECIPES[context.preset]
    dataset = paper_dataset if context.preset == "paper" else recipe.dataset
    num_classes = {"cifar10": 10, "cifar100": 100}.get(dataset, 10)

    rows: list[ResultRow] = []
    curves: dict[str, tuple[list[float], list[float]]] = {}
    table: list[dict[str, Any]] = []
    for name, spec in variants.items():
        variant = _as_variant(spec, "baseline" if name in baseline_names else "method")
        runs = []
        for seed in context.seeds:
            config = _train_config(context, recipe, dataset, seed).replace(**dict(variant.train_overrides))
            logger.info("%s: training %s (%s, seed %d)", package, name, recipe.model, seed)
            runs.append(_train_one(context, name, variant, recipe.model, config, num_classes))

        image_size = int(recipe.train.get("image_size", 32))
        probe = build_variant_model(variant, recipe.model, num_classes=num_classes).eval()
        params = count_parameters(probe)
        flops = count_flops(probe, torch.zeros(1, 3, image_size, image_size))

        best = [run["best_acc"] for run in runs]
        final = [run["final_acc"] for run in runs]
        metrics = {
            "best_acc": _mean(best),
            "final_acc": _mean(final),
            "best_acc_std": _std(best),
            "final_acc_std": _std(final),
        }
        for key in runs[0].get("extra", {}):
            metrics[key] = _mean([run["extra"][key] for run in runs])
        seconds = _mean([run["seconds"] for run in runs])
        rows.append(
            ResultRow(
                model=name,
                role=variant.role,
                metrics=metrics,
                params=params,
                flops=flops,
                seconds=seconds,
                notes=f"{recipe.model}, {len(runs)} seed(s)",
            )
        )
        epochs = [record["epoch"] for record in runs[0]["history"]]
        accuracy = [_mean([run["history"][i]["test_acc"] for run in runs]) for i in range(len(epochs))]
        curves[name] = (epochs, accuracy)
        table.append(
            {"model": name, "role": variant.role, **metrics, "params": params, "GFLOPs": flops / 1e9}
        )
    rows.extend(references)

    figure = plot_curves(
        curves,
        path=context.run_dir.figure_path("test_accuracy.png"),
        title=f"{package}: test accuracy ({recipe.model}, {dataset})",
        xlabel="epoch",
        ylabel="test top-1 (%), mean over seeds",
    )
    reference_table = [{"model": r.model, **r.metrics, "notes": r.notes} for r in references]
    report = [
        f"### {package}: {recipe.model} on {dataset} ({context.preset} preset)",
        "",
        f"Seeds {list(context.seeds)}. best_acc is the best test top-1 over epochs (the number the papers "
        "report), final_acc the test top-1 after the last epoch; both are means over seeds.",
        "",
        markdown_table(table),
        "",
    ]
    if reference_table:
        report += ["Published numbers:", "", markdown_table(reference_table), ""]
    if notes:
        report += [notes, ""]
    report.append(f"![test accuracy]({figure.relative_to(context.run_dir.path).as_posix()})")
    markdown = "\n".join(report)
    context.run_dir.write_report(markdown)
    return ReproductionResult(
        package=package,
        task=f"{dataset} classification",
        primary_metric="best_acc",
        higher_is_better=True,
        rows=rows,
        figures=[figure],
        report_markdown=markdown,
        curves=curves,
        curve_label=("epoch", "test top-1 (%)"),
    )
