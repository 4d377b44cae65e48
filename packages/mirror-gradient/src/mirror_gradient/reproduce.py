"""Reproduction entry point: each multimodal recommender with and without Mirror Gradient.

Presets:

* ``smoke``: VBPR on a tiny synthetic dataset, one epoch, the first seed (seconds).
* ``default``: VBPR, BM3, FREEDOM and LATTICE on the multimodal ml-100k built from RecBole's bundled copy,
  a short training budget, every seed; MG's ``mg_alpha2`` is chosen from {0.1, 0.3} on the validation
  split with the first seed. A robustness table perturbs item features at test time.
* ``paper``: the MMRec datasets found under ``data_root`` (``sports``, ``elec``, ``baby``, ``clothing``), the
  authors' training budget (up to 1000 epochs, early stopping after 20) and grids (each model's grid times
  ``mg_alpha2`` in {0.1, 0.2, 0.3}), selected on validation.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mirror_gradient.embedded import EMBEDDED_DATASET, build_ml100k_multimodal
from mirror_gradient.models import model_defaults
from mirror_gradient.pipeline import (
    METRIC_KEYS,
    PreparedData,
    RunOutcome,
    prepare_mmrec_dataset,
    run_experiment,
    select_hyper_parameters,
)
from mirror_gradient.robustness import (
    DEFAULT_PERTURBATIONS,
    Perturbation,
    evaluate_under_perturbations,
    relative_drop,
)
from mirror_gradient.synthetic import write_synthetic_mmrec
from qcore.report import markdown_table
from qcore.reproduce import ReproductionContext, ReproductionResult, ResultRow

__all__ = ["PRESETS", "PresetPlan", "reproduce", "run_plan"]

logger = logging.getLogger(__name__)

PRIMARY_METRIC = "recall@5"
PAPER_DATASETS = ("sports", "elec", "baby", "clothing")
HOW_TO_GET_DATA = (
    "Download the processed Amazon datasets of MMRec (enoche/MMRec, data section of its README) and place "
    "each as <data_root>/<name>/<name>.inter with image_feat.npy and text_feat.npy, for example "
    "<data_root>/sports/sports.inter."
)

# Mirror Gradient rows of the authors' README (Sports and Elec, metrics at 5): (base, with MG).
PUBLISHED_AT_5 = {
    ("sports", "VBPR"): {"recall@5": (0.0353, 0.0375), "ndcg@5": (0.0235, 0.0251)},
    ("sports", "BM3"): {"recall@5": (0.0353, 0.0386), "ndcg@5": (0.0238, 0.0259)},
    ("sports", "FREEDOM"): {"recall@5": (0.0446, 0.0466), "ndcg@5": (0.0291, 0.0303)},
    ("elec", "VBPR"): {"recall@5": (0.0182, 0.0203), "ndcg@5": (0.0122, 0.0136)},
    ("elec", "BM3"): {"recall@5": (0.0280, 0.0285), "ndcg@5": (0.0192, 0.0195)},
    ("elec", "FREEDOM"): {"recall@5": (0.0252, 0.0260), "ndcg@5": (0.0171, 0.0176)},
}


@dataclass
class PresetPlan:
    """Models, seeds, training budget and grids of one preset.

    Attributes:
        models: model names.
        seeds: seeds of every (model, MG) pair.
        overrides: configuration keys for every run (training budget).
        model_grid: whether each model's own grid (its YAML's search space) is searched.
        mg_grid: candidate values of MG keys, searched with the first seed.
        selection: ``"valid"`` or ``"test"`` (the authors' selection, to match published numbers).
        perturbations: robustness perturbations, evaluated on the first seed's models.
    """

    models: tuple[str, ...]
    seeds: tuple[int, ...]
    overrides: dict[str, Any] = field(default_factory=dict)
    model_grid: bool = False
    mg_grid: dict[str, list[Any]] = field(default_factory=dict)
    selection: str = "valid"
    perturbations: tuple[Perturbation, ...] = DEFAULT_PERTURBATIONS


PRESETS = {
    "smoke": lambda seeds: PresetPlan(
        models=("VBPR",),
        seeds=seeds[:1],
        overrides={"epochs": 1, "train_batch_size": 256},
        perturbations=(Perturbation("gaussian", 0.5), Perturbation("swap", 0.3)),
    ),
    "default": lambda seeds: PresetPlan(
        models=("VBPR", "BM3", "FREEDOM", "LATTICE"),
        seeds=seeds,
        overrides={"epochs": 8, "stopping_step": 3},
        mg_grid={"mg_alpha2": [0.1, 0.3]},
    ),
    "paper": lambda seeds: PresetPlan(
        models=("VBPR", "BM3", "FREEDOM", "LATTICE"),
        seeds=seeds,
        model_grid=True,
        mg_grid={"mg_alpha2": [0.1, 0.2, 0.3]},
    ),
}


def _mean_std(outcomes: list[RunOutcome]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for key in METRIC_KEYS:
        values = [outcome.test[key] for outcome in outcomes]
        metrics[key] = statistics.fmean(values)
        metrics[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return metrics


def _run_variant(
    model: str, mg: bool, plan: PresetPlan, data: PreparedData, work_dir: Path, device: str
) -> tuple[dict[str, Any], list[RunOutcome], RunOutcome]:
    """Select hyper-parameters with the first seed, then run the other seeds with them."""
    first_seed = plan.seeds[0]
    grid: dict[str, list[Any]] = {}
    if plan.model_grid:
        grid.update(model_defaults(model)[1])
    if mg:
        grid.update(plan.mg_grid)

    def run(point: dict[str, Any], seed: int = first_seed, keep: bool = False) -> RunOutcome:
        return run_experiment(
            model,
            data,
            mg=mg,
            seed=seed,
            work_dir=work_dir,
            device=device,
            overrides={**plan.overrides, **point},
            keep_trainer=keep,
        )

    # Selection runs keep their trainers, so the selected first-seed model feeds the robustness table.
    best, tried = select_hyper_parameters(
        lambda point: run(point, keep=True), grid, metric=PRIMARY_METRIC, selection=plan.selection
    )
    first = next(outcome for outcome in tried if outcome.settings == {**plan.overrides, **best})
    for outcome in tried:
        if outcome is not first:
            outcome.trainer = None
            outcome.test_data = None
    best_point = {key: best[key] for key in grid}
    outcomes = [first] + [run(best_point, seed) for seed in plan.seeds[1:]]
    return best_point, outcomes, first


def run_plan(
    plan: PresetPlan, datasets: dict[str, PreparedData], work_dir: Path, device: str
) -> dict[str, Any]:
    """Run a plan on every dataset and return ``{dataset: {model: {"base"|"mg": summary}}}``."""
    summary: dict[str, Any] = {}
    for dataset_name, data in datasets.items():
        summary[dataset_name] = {}
        for model in plan.models:
            summary[dataset_name][model] = {}
            for mg in (False, True):
                best_point, outcomes, first = _run_variant(model, mg, plan, data, work_dir, device)
                robustness = evaluate_under_perturbations(
                    first.trainer, first.test_data, plan.perturbations, seed=plan.seeds[0]
                )
                first.trainer = None
                first.test_data = None
                summary[dataset_name][model]["mg" if mg else "base"] = {
                    "selected": best_point,
                    "metrics": _mean_std(outcomes),
                    "seconds": statistics.fmean(outcome.seconds for outcome in outcomes),
                    "parameters": outcomes[0].parameters,
                    "epochs": [outcome.best_epoch_count for outcome in outcomes],
                    "robustness": robustness,
                }
    return summary


def _format_mean_std(metrics: dict[str, float], key: str) -> str:
    return f"{metrics[key]:.4f} ± {metrics[key + '_std']:.4f}"


def _report(summary: dict[str, Any], plan: PresetPlan, preset: str) -> str:
    lines = [
        "## Mirror Gradient on multimodal recommenders",
        "",
        f"Preset `{preset}`, seeds {list(plan.seeds)}, mean ± std over seeds on the test split; "
        f"hyper-parameters selected on the {plan.selection} split ({PRIMARY_METRIC}).",
        "",
    ]
    for dataset_name, per_model in summary.items():
        rows = []
        for model, variants in per_model.items():
            for variant, values in variants.items():
                row = {
                    "model": model,
                    "training": "MG" if variant == "mg" else "plain",
                    "selected": str(values["selected"]),
                }
                for key in METRIC_KEYS:
                    row[key] = _format_mean_std(values["metrics"], key)
                rows.append(row)
        lines += [f"### {dataset_name}: ranking metrics", "", markdown_table(rows), ""]

        robustness_rows = []
        metric = "recall@20"
        for model, variants in per_model.items():
            for name in list(variants["base"]["robustness"])[1:]:
                row = {"model": model, "perturbation": name}
                for variant in ("base", "mg"):
                    results = variants[variant]["robustness"]
                    label = "MG" if variant == "mg" else "plain"
                    row[f"{label} clean"] = f"{results['clean'][metric]:.4f}"
                    row[f"{label} perturbed"] = f"{results[name][metric]:.4f}"
                    row[f"{label} drop"] = (
                        f"{100 * relative_drop(results['clean'][metric], results[name][metric]):.1f}%"
                    )
                robustness_rows.append(row)
        lines += [
            f"### {dataset_name}: robustness ({metric}, first seed, relative drop from clean features)",
            "",
            markdown_table(robustness_rows),
            "",
        ]
    return "\n".join(lines)


def _rows(summary: dict[str, Any], datasets: dict[str, PreparedData]) -> list[ResultRow]:
    rows = []
    for dataset_name, per_model in summary.items():
        prefix = "" if len(datasets) == 1 else f"{dataset_name}/"
        for model, variants in per_model.items():
            for variant, values in variants.items():
                mg = variant == "mg"
                rows.append(
                    ResultRow(
                        model=f"{prefix}{model}{'+MG' if mg else ''}",
                        role="method" if mg else "baseline",
                        metrics=values["metrics"],
                        params=values["parameters"],
                        seconds=values["seconds"],
                        notes=f"selected {values['selected']}" if values["selected"] else "",
                    )
                )
                published = PUBLISHED_AT_5.get((dataset_name, model))
                if published:
                    rows.append(
                        ResultRow(
                            model=f"{prefix}{model}{'+MG' if mg else ''} (published)",
                            role="reference",
                            metrics={key: pair[1 if mg else 0] for key, pair in published.items()},
                            notes="Mirror Gradient authors' README",
                        )
                    )
    return rows


def _datasets_for(context: ReproductionContext, work_dir: Path) -> dict[str, PreparedData]:
    if context.preset == "smoke":
        source = write_synthetic_mmrec(work_dir / "mmrec", "synthetic")
        return {"synthetic": prepare_mmrec_dataset(source, "synthetic", work_dir)}
    if context.preset == "default":
        cache = None if context.cache_dir is None else Path(context.cache_dir) / "mirror_gradient"
        source = build_ml100k_multimodal(cache)
        return {EMBEDDED_DATASET: prepare_mmrec_dataset(source, EMBEDDED_DATASET, work_dir)}
    found = {}
    for name in PAPER_DATASETS:
        if context.data_root is not None and (Path(context.data_root) / name / f"{name}.inter").is_file():
            found[name] = prepare_mmrec_dataset(Path(context.data_root) / name, name, work_dir / name)
    if not found:
        context.require_data("sports/sports.inter", HOW_TO_GET_DATA)
    return found


def reproduce(context: ReproductionContext) -> ReproductionResult:
    """Train each model with and without Mirror Gradient and report ranking metrics and robustness."""
    plan = PRESETS[context.preset](tuple(context.seeds))
    with tempfile.TemporaryDirectory(prefix="mirror_gradient_") as scratch:
        work_dir = Path(scratch)
        datasets = _datasets_for(context, work_dir)
        summary = run_plan(plan, datasets, work_dir, context.device)

    report = _report(summary, plan, context.preset)
    context.run_dir.write_json("summary.json", summary)
    context.run_dir.write_report(report)
    names = ", ".join(datasets)
    return ReproductionResult(
        package="mirror-gradient",
        task=f"multimodal top-k recommendation ({names}), with and without Mirror Gradient",
        primary_metric=PRIMARY_METRIC,
        rows=_rows(summary, datasets),
        report_markdown=report,
    )
