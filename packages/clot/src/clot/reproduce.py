"""Reproduction entry point: base model, stage-1 tuning only (AIT) and full CLoT on held-out questions.

CLoT is the method of "Let's Think Outside the Box" (Zhong et al., CVPR 2024, arXiv 2312.02439).

Presets:
    smoke: English part of the built-in sample, a one-layer tiny model, a few optimizer steps; seconds.
    default: the whole built-in sample (85 responses in three languages and three game types) with a tiny
        LLaVA-style model built in-process. It runs stage 1, one round of stage 2 and evaluation before
        and after, in about 3.5 minutes of CPU time per seed. The numbers show that the recipe runs end to
        end, not humour.
    paper: Oogiri-GO from ``data_root`` with the paper's hyper-parameters on a pretrained LLaVA model
        (``CLOT_PAPER_MODEL``, default ``llava-hf/llava-1.5-7b-hf``); needs a GPU and the model in the
        Hugging Face cache.
"""

from __future__ import annotations

import logging
import os
import statistics
import time

from clot.pipeline import ClotConfig, run_pipeline
from qcore.report import markdown_table
from qcore.reproduce import ReproductionContext, ReproductionResult, ResultRow

__all__ = ["preset_config", "reproduce"]

logger = logging.getLogger(__name__)

_HOW_TO_GET = (
    "Download the Oogiri-GO data set (Hugging Face: zhongshsh/CLoT-Oogiri-GO) so that the folder holds "
    "en.jsonl, cn.jsonl, jp.jsonl and images/."
)
_REPORTED = ("acc_2T1", "acc_3T1", "acc_4T1", "acc_5T2", "rank_ndcg", "rank_ndcg@1", "avg")


def preset_config(preset: str, *, seed: int = 0, data_root: str = "", device: str = "cpu") -> ClotConfig:
    """Return the pipeline settings of a reproduction preset.

    The tiny presets raise the learning rate to 2e-3 (our choice), because the paper's 1e-5 barely
    changes a randomly initialised model in a few minutes. They evaluate the formats of the paper's
    Avg column (3T1, 4T1, 5T2 and ranking) to save time.
    """
    if preset == "smoke":
        return ClotConfig(
            languages=("en",),
            test_fraction=0.125,
            seed=seed,
            tiny_hidden_size=32,
            tiny_layers=1,
            lora_rank=4,
            lora_alpha=8.0,
            learning_rate=2e-3,
            batch_size=16,
            micro_batch_size=16,
            max_steps=2,
            selection_formats=("3T1",),
            max_new_tokens=4,
            refine_limit=2,
            device=device,
        )
    if preset == "default":
        return ClotConfig(
            test_fraction=0.25,
            seed=seed,
            tiny_hidden_size=64,
            tiny_layers=2,
            lora_rank=8,
            lora_alpha=16.0,
            learning_rate=2e-3,
            weight_decay=0.0,
            batch_size=16,
            micro_batch_size=16,
            epochs=2,
            selection_formats=("3T1", "4T1", "5T2"),
            max_new_tokens=8,
            device=device,
        )
    return ClotConfig(
        data_root=data_root,
        model=os.environ.get("CLOT_PAPER_MODEL", "llava-hf/llava-1.5-7b-hf"),
        dtype="bfloat16",
        seed=seed,
        micro_batch_size=4,
        max_new_tokens=48,
        device=device,
    )


def _mean_metrics(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = [key for key in _REPORTED if all(key in run for run in runs)]
    return {key: statistics.fmean(run[key] for run in runs) for key in keys}


def reproduce(context: ReproductionContext) -> ReproductionResult:
    """Run the preset once per seed and compare the untuned base, stage-1 tuning only and CLoT."""
    data_root = ""
    if context.preset == "paper":
        data_root = str(context.require_data("en.jsonl", _HOW_TO_GET).parent)

    per_seed: dict[str, list[dict[str, float]]] = {"base": [], "ait": [], "clot": []}
    seconds = {"ait": 0.0, "clot": 0.0}
    refine_counts = []
    curves: dict[str, tuple[list[float], list[float]]] = {}
    for seed in context.seeds:
        config = preset_config(context.preset, seed=seed, data_root=data_root, device=context.device)
        started = time.perf_counter()
        results = run_pipeline(config, context.run_dir.subdir(f"seed{seed}"))
        logger.info("clot %s preset, seed %d: %.1f s", context.preset, seed, time.perf_counter() - started)
        for key in per_seed:
            per_seed[key].append(results[key])
        seconds["ait"] += results["stage1_seconds"]
        seconds["clot"] += results["stage1_seconds"] + results["stage2_seconds"]
        refine_counts.append(results["refine"])
        if seed == context.seeds[0]:
            stage1 = results["stage1_losses"]
            stage2 = results["stage2_losses"]
            curves["stage 1 loss"] = (list(range(1, len(stage1) + 1)), stage1)
            curves["stage 2 loss"] = (list(range(len(stage1) + 1, len(stage1) + len(stage2) + 1)), stage2)

    model_name = "tiny LLaVA (random init)" if context.preset != "paper" else preset_config("paper").model
    rows = [
        ResultRow(model=f"{model_name}, untuned", role="reference", metrics=_mean_metrics(per_seed["base"])),
        ResultRow(
            model=f"{model_name} + AIT (stage 1 only)",
            role="baseline",
            metrics=_mean_metrics(per_seed["ait"]),
            seconds=seconds["ait"] / len(context.seeds),
        ),
        ResultRow(
            model=f"{model_name} + CLoT (stage 1 + self-refinement)",
            role="method",
            metrics=_mean_metrics(per_seed["clot"]),
            seconds=seconds["clot"] / len(context.seeds),
            notes="stage 2 trains for as many epochs again, on stage-1 plus refined instructions",
        ),
    ]
    columns = ["model", *(key for key in _REPORTED if key in rows[-1].metrics)]
    table = markdown_table(
        [{"model": row.model, **row.metrics} for row in rows], columns=columns, floatfmt=".3f"
    )
    kept = sum(count["kept"] for count in refine_counts)
    dropped = sum(count["dropped_human_won"] + count["dropped_no_candidates"] for count in refine_counts)
    report = (
        f"### CLoT ({context.preset} preset, seeds {', '.join(map(str, context.seeds))})\n\n"
        "Held-out choice accuracy (mTn) and ranking NDCG with likes as gains; `avg` is the mean of 3T1, 4T1, "
        "5T2 and ranking NDCG, like the paper's Avg column.\n\n"
        f"{table}\n\nSelf-refinement kept {kept} and dropped {dropped} training inputs.\n"
    )
    if context.preset != "paper":
        report += (
            "\nThe tiny model is randomly initialised and the data are 85 made-up responses, so differences "
            "between rows are noise at this scale; the preset checks that every stage runs.\n"
        )
    context.run_dir.write_report(report)
    return ReproductionResult(
        package="clot",
        task="Oogiri humour choice and ranking (built-in sample)"
        if context.preset != "paper"
        else "Oogiri-GO",
        primary_metric="avg",
        rows=rows,
        report_markdown=report,
        curves=curves,
        curve_label=("optimizer step", "training loss"),
    )
