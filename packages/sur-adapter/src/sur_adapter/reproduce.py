"""Reproduction entry point: SUR-adapter against plain Stable Diffusion conditioning.

Presets:

* ``smoke``: four bundled images, tiny random diffusion components, two training steps (seconds);
* ``default``: all bundled scikit-image samples with their simple and complex prompts, tiny random
  components and the bundled all-MiniLM-L6-v2 teacher, a few minutes on two CPU cores;
* ``paper``: the authors' ``run.sh`` recipe on SURD under ``data_root`` (a GPU job).

Every preset compares three conditionings of the same frozen UNet. The first is the plain text-encoder
output (no adapter), the second the adapter trained with this package's defaults. The third is the
adapter trained with the released code's behaviour: a detached condition, samples mixed in the
transformer layers and a frozen random teacher projection.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from qcore.report import markdown_table
from qcore.reproduce import ReproductionContext, ReproductionResult, ResultRow

from .config import TrainConfig, preset_config
from .embedded import write_embedded_dataset
from .trainer import SURTrainer

__all__ = ["LEGACY_CHANGES", "compare_adapters", "reproduce"]

logger = logging.getLogger(__name__)

LEGACY_CHANGES = {
    "legacy_detach_condition": True,
    "legacy_batch_first_bug": True,
    "legacy_llm_projection": True,
}
_METRICS = ("loss_noise", "loss_llm", "loss_prompt", "simple_complex_distance")
_SURD_HELP = (
    "Download SURD.zip and 39.pt from the gated Hugging Face dataset zhongshsh/SURD (needs an access token), "
    "unzip SURD.zip into <data_root>/SURD so that <data_root>/SURD/metadata.jsonl exists, and put 39.pt in "
    "<data_root>; without 39.pt the teacher vectors are computed with the configured LLM."
)


@dataclass(frozen=True)
class _Plan:
    steps: int
    samples: int | None
    evaluation_repeats: int
    resolution: int
    inference_steps: int


_PLANS = {
    "smoke": _Plan(steps=1, samples=2, evaluation_repeats=1, resolution=16, inference_steps=2),
    "default": _Plan(steps=60, samples=None, evaluation_repeats=2, resolution=16, inference_steps=4),
}


def reproduce(context: ReproductionContext) -> ReproductionResult:
    """Train and compare the adapters for ``context.preset`` and return the comparison rows."""
    if context.preset == "paper":
        return _reproduce_paper(context)
    plan = _PLANS[context.preset]
    data_root = write_embedded_dataset(context.run_dir.path / "data", size=64, limit=plan.samples)
    cache_dir = Path(context.cache_dir or context.run_dir.path) / "sur-adapter-teacher-cache"
    runs = []
    for seed in context.seeds:
        config = preset_config(
            "tiny",
            data_root=str(data_root),
            output_dir=str(context.run_dir.path / f"seed{seed}"),
            feature_cache_dir=str(cache_dir),
            max_train_steps=plan.steps,
            resolution=plan.resolution,
            validation_inference_steps=plan.inference_steps,
            checkpointing_steps=plan.steps,
            validation_steps=0,
            seed=seed,
            device=context.device,
        )
        runs.append(compare_adapters(config, evaluation_repeats=plan.evaluation_repeats))
    return _result(
        context, runs, task="simple-to-complex prompt alignment (scikit-image photographs, tiny SD)"
    )


def compare_adapters(
    config: TrainConfig,
    *,
    evaluation_repeats: int = 2,
    evaluation_samples: int | None = None,
    grid: bool = True,
) -> dict:
    """Train the default and the official-behaviour adapter from ``config`` and evaluate both and no adapter.

    Returns:
        ``{"rows": {name: metrics after training}, "before": {name: metrics at initialisation},
        "seconds": {name: training seconds}, "grid": path or None}``, where the metrics are those of
        :meth:`SURTrainer.evaluate`.
    """
    rows: dict[str, dict[str, float]] = {}
    before: dict[str, dict[str, float]] = {}
    seconds: dict[str, float] = {}
    output_dir = Path(config.output_dir)
    trainers: dict[str, SURTrainer] = {}
    for name, changes in (("sur-adapter", {}), ("sur-adapter (official code)", LEGACY_CHANGES)):
        folder = "default" if not changes else "official"
        run_config = config.replace(output_dir=str(output_dir / folder), **changes)
        if trainers:
            # Reuse the frozen components, data and teacher vectors of the first run.
            first = next(iter(trainers.values()))
            trainer = SURTrainer(
                run_config,
                components=first.components,
                dataset=first.dataset,
                teacher_vectors=first.teacher_vectors,
            )
        else:
            trainer = SURTrainer(run_config)
        if not rows:
            rows["no adapter"] = trainer.evaluate(
                use_adapter=False, repeats=evaluation_repeats, max_samples=evaluation_samples
            )
            before["no adapter"] = rows["no adapter"]
        before[name] = trainer.evaluate(repeats=evaluation_repeats, max_samples=evaluation_samples)
        start = time.perf_counter()
        trainer.train()
        seconds[name] = time.perf_counter() - start
        rows[name] = trainer.evaluate(repeats=evaluation_repeats, max_samples=evaluation_samples)
        trainers[name] = trainer
        logger.info("%s: before %s, after %s", name, before[name], rows[name])
    grid_path = _comparison_grid(trainers, output_dir / "samples.png") if grid else None
    return {"rows": rows, "before": before, "seconds": seconds, "grid": grid_path}


@torch.no_grad()
def _comparison_grid(trainers: dict[str, SURTrainer], path: Path) -> Path:
    """Save one row per validation prompt: no adapter, then each trained adapter (same noise)."""
    from .pipeline import SURStableDiffusionPipeline
    from .visualize import image_grid

    columns = []
    names = [None, *trainers]
    first = next(iter(trainers.values()))
    prompts = first.dataset.simple_prompts[:4]
    # NOTE: the grid uses the training resolution, which for the tiny preset is far below Stable
    # Diffusion's 512 pixels, so it shows the conditioning's effect, not image quality.
    resolution = first.config.resolution or first.components.resolution
    for name in names:
        trainer = trainers[name] if name is not None else first
        adapter = trainer.accelerator.unwrap_model(trainer.adapter).eval() if name is not None else None
        pipe = SURStableDiffusionPipeline(
            vae=trainer.components.vae,
            text_encoder=trainer.components.text_encoder,
            tokenizer=trainer.components.tokenizer,
            unet=trainer.components.unet,
            scheduler=trainer.components.inference_scheduler(),
            adapter=adapter,
        )
        pipe.set_progress_bar_config(disable=True)
        output = pipe(
            prompts,
            num_inference_steps=first.config.validation_inference_steps,
            guidance_scale=first.config.guidance_scale,
            height=resolution,
            width=resolution,
            generator=torch.Generator().manual_seed(first.config.seed),
        )
        columns.append(output.images)
    path.parent.mkdir(parents=True, exist_ok=True)
    image_grid([list(row) for row in zip(*columns, strict=True)]).save(path)
    return path


def _reproduce_paper(context: ReproductionContext) -> ReproductionResult:
    surd = context.require_data("SURD/metadata.jsonl", _SURD_HELP).parent
    vectors_path = Path(context.data_root) / "39.pt"
    overrides = {
        "data_root": str(surd),
        "output_dir": str(context.run_dir.path / f"seed{context.seeds[0]}"),
        "seed": context.seeds[0],
        "device": context.device,
        "mixed_precision": "fp16" if context.device == "cuda" else "no",
    }
    if vectors_path.is_file():
        overrides["teacher_vectors"] = str(vectors_path)
    config = preset_config("paper", **overrides)
    run = compare_adapters(config, evaluation_repeats=1, evaluation_samples=512)
    return _result(context, [run], task="simple-to-complex prompt alignment (SURD, Stable Diffusion 1.5)")


def _result(context: ReproductionContext, runs: list[dict], *, task: str) -> ReproductionResult:
    names = list(runs[0]["rows"])
    rows = []
    table = []
    for name in names:
        metrics = {key: _mean([run["rows"][name][key] for run in runs]) for key in _METRICS}
        initial = {key: _mean([run["before"][name][key] for run in runs]) for key in _METRICS}
        seconds = _mean([run["seconds"][name] for run in runs]) if name in runs[0]["seconds"] else None
        role = "reference"
        if name == "no adapter":
            role = "baseline"
        elif name == "sur-adapter":
            role = "method"
        rows.append(ResultRow(model=name, role=role, metrics=metrics, seconds=seconds))
        table.append({"model": name, **{f"{key} (init)": initial[key] for key in _METRICS}, **metrics})
    figures = []
    for seed, run in zip(context.seeds, runs, strict=False):
        if run["grid"] is not None:
            figure = context.run_dir.figure_path(f"samples-seed{seed}.png")
            shutil.copyfile(run["grid"], figure)
            figures.append(figure)
    columns = ["model"] + [column for key in _METRICS for column in (f"{key} (init)", key)]
    report = "\n".join(
        [
            f"Mean over seeds {list(context.seeds)}; losses are unweighted terms on the training images with "
            "fixed noise, 'init' is before training. simple_complex_distance is the mean per-token L2 distance "
            "between the conditioning of the simple prompt and the text-encoder embedding of the complex prompt.",
            "",
            markdown_table(table, columns),
            "",
            "",
            "Columns of the sample grid: no adapter, sur-adapter, sur-adapter (official code).",
        ]
    )
    return ReproductionResult(
        package="sur-adapter",
        task=task,
        primary_metric="simple_complex_distance",
        higher_is_better=False,
        rows=rows,
        figures=[Path(path) for path in figures],
        report_markdown=report,
    )


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values))
