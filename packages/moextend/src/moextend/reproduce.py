"""``qcore-reproduce`` entry point of MoExtend (arXiv 2408.03511).

Presets:

- ``smoke``: a random tiny Mixtral, a few steps per stage; seconds.
- ``default``: a tiny Mixtral pre-trained in process on bundled text, then the three stages on
  scikit-learn digits and scikit-image photographs, with full fine-tuning as the baseline. It takes a few
  minutes on 2 CPU cores.
- ``paper``: the official recipe on LLaVA data under ``data_root`` with Mixtral-8x7B-Instruct and CLIP
  ViT-L/14-336 (multi-GPU scale).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from moextend.pipeline import SCALES, run_demo
from qcore.plots import plot_curves
from qcore.report import markdown_table
from qcore.reproduce import ReproductionContext, ReproductionResult, ResultRow

__all__ = ["PAPER_BASE_MODEL", "PAPER_VISION_MODEL", "reproduce"]

logger = logging.getLogger(__name__)

PAPER_BASE_MODEL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
PAPER_VISION_MODEL = "openai/clip-vit-large-patch14-336"
_LLAVA_HOW_TO = (
    "Download liuhaotian/LLaVA-Pretrain (blip_laion_cc_sbu_558k.json and images.zip, unpacked to "
    "pretrain_images/) and liuhaotian/LLaVA-Instruct-150K (llava_v1_5_mix665k.json) with the COCO, GQA, "
    "OCR-VQA, TextVQA and Visual Genome images under finetune_images/, following LLaVA-1.5's data guide."
)


def _report(results: dict[str, Any], preset: str) -> str:
    accuracy, perplexity = results["accuracy"], results["perplexity"]
    trainable, seconds = results["trainable"], results["seconds_per_step"]
    rows = [
        {
            "model": "aligned (stage 1 only)",
            "caption accuracy": accuracy["aligned"],
            "held-out text perplexity": perplexity["original"],
            "trainable share": None,
            "s / step": None,
        },
        {
            "model": "MoExtend (stage 3)",
            "caption accuracy": accuracy["moextend"],
            "held-out text perplexity": perplexity["moextend"],
            "trainable share": trainable["moextend"] / trainable["total"],
            "s / step": seconds["moextend"],
        },
        {
            "model": "full fine-tuning",
            "caption accuracy": accuracy["full_finetune"],
            "held-out text perplexity": perplexity["full_finetune"],
            "trainable share": trainable["full_finetune"] / trainable["total"],
            "s / step": seconds["full_finetune"],
        },
    ]
    plan = results["plan"]
    return "\n".join(
        [
            f"### MoExtend ({preset} preset)",
            "",
            "Tiny Mixtral-style LLM pre-trained in process on scikit-learn's bundled dataset descriptions, "
            "frozen random tiny CLIP tower, scikit-learn digits and scikit-image photographs. Caption "
            "accuracy: share of held-out digits whose correct answer sentence is the most likely of ten "
            f"({results['test_images']} images, chance {results['chance_accuracy']:.2f}). Perplexity: held-out "
            "paragraphs of text, measured on the original LLM for the aligned row. One run, seed "
            f"{results['seed']} (the first of the seeds passed).",
            "",
            markdown_table(rows),
            "",
            f"Extended layers {plan['layers']} with source experts {plan['source_experts']}. "
            f"Full fine-tuning / MoExtend time per step: "
            f"{seconds['full_finetune'] / max(seconds['moextend'], 1e-9):.2f}x.",
        ]
    )


def _demo(context: ReproductionContext) -> ReproductionResult:
    scale = SCALES[context.preset]
    seed = context.seeds[0] if context.seeds else 0
    results = run_demo(scale, context.run_dir, seed=seed, device=context.device)
    context.run_dir.write_json("moextend_results.json", {k: v for k, v in results.items() if k != "usage"})
    context.run_dir.write_json("usage.json", results["usage"])
    accuracy, perplexity = results["accuracy"], results["perplexity"]
    trainable, seconds = results["trainable"], results["seconds_per_step"]
    curves = {
        "MoExtend stage 3 loss": (
            list(range(1, len(results["finetune_losses"]) + 1)),
            results["finetune_losses"],
        ),
        "full fine-tuning loss": (list(range(1, len(results["full_losses"]) + 1)), results["full_losses"]),
    }
    figure = plot_curves(
        curves,
        path=context.run_dir.figure_path("moextend_losses.png"),
        title="MoExtend vs full fine-tuning",
        xlabel="step",
        ylabel="training loss",
    )
    rows = [
        ResultRow(
            model="MoExtend",
            role="method",
            metrics={
                "caption_accuracy": accuracy["moextend"],
                "text_perplexity": perplexity["moextend"],
                "trainable_share": trainable["moextend"] / trainable["total"],
            },
            params=trainable["moextend"],
            seconds=seconds["moextend"] * len(results["finetune_losses"]),
            notes="new experts, router rows, calibration and projector trained",
        ),
        ResultRow(
            model="full fine-tuning",
            role="baseline",
            metrics={
                "caption_accuracy": accuracy["full_finetune"],
                "text_perplexity": perplexity["full_finetune"],
                "trainable_share": trainable["full_finetune"] / trainable["total"],
            },
            params=trainable["full_finetune"],
            seconds=seconds["full_finetune"] * len(results["full_losses"]),
        ),
        ResultRow(
            model="aligned only",
            role="reference",
            metrics={
                "caption_accuracy": accuracy["aligned"],
                "text_perplexity": perplexity["original"],
                "trainable_share": 0.0,
            },
            notes="after stage 1, before extension",
        ),
    ]
    return ReproductionResult(
        package="moextend",
        task="image captioning (digits) with a frozen MoE LLM",
        primary_metric="caption_accuracy",
        higher_is_better=True,
        rows=rows,
        figures=[figure],
        report_markdown=_report(results, context.preset),
        curves=curves,
        curve_label=("step", "training loss"),
    )


def _paper(context: ReproductionContext) -> ReproductionResult:
    from moextend.data import load_llava_json
    from moextend.stages import extend_from_usage, load_bundle, run_align, run_finetune, run_probe
    from moextend.training import TrainingSettings

    pretrain_json = context.require_data("blip_laion_cc_sbu_558k.json", _LLAVA_HOW_TO)
    finetune_json = context.require_data("llava_v1_5_mix665k.json", _LLAVA_HOW_TO)
    pretrain_images = context.require_data("pretrain_images", _LLAVA_HOW_TO)
    finetune_images = context.require_data("finetune_images", _LLAVA_HOW_TO)
    root = context.run_dir.path
    mixed = "bf16" if context.device == "cuda" else "no"

    def settings(
        learning_rate: float, batch_size: int, samples: int, steps: int | None = None
    ) -> TrainingSettings:
        return TrainingSettings(
            learning_rate=learning_rate,
            max_steps=steps or math.ceil(samples / batch_size),
            batch_size=batch_size,
            save_steps=500,
            seed=42,
            device=context.device,
            mixed_precision=mixed,
        )

    captions = load_llava_json(pretrain_json, image_folder=pretrain_images)
    instructions = load_llava_json(finetune_json, image_folder=finetune_images)
    bundle = load_bundle(PAPER_BASE_MODEL, vision_model=PAPER_VISION_MODEL, max_length=1024)
    run_align(bundle, captions, settings(1e-3, 64, len(captions)), root / "align", run_dir=context.run_dir)
    probe = run_probe(
        bundle, instructions, settings(1e-3, 64, 0, steps=1000), root / "probe", run_dir=context.run_dir
    )
    plan = extend_from_usage(bundle, probe.usage)
    bundle.max_length = 2048
    summary = run_finetune(
        bundle,
        instructions,
        settings(2e-5, 32, len(instructions)),
        root / "finetune",
        run_dir=context.run_dir,
    )
    trainable_share = summary.trainable_parameters / sum(p.numel() for p in bundle.model.parameters())
    row = ResultRow(
        model="MoExtend",
        role="method",
        metrics={
            "final_loss": summary.losses[-1] if summary.losses else float("nan"),
            "trainable_share": trainable_share,
        },
        params=summary.trainable_parameters,
        seconds=summary.seconds,
        notes=f"extended layers {plan.layers}; evaluate with LLaVA's benchmark scripts",
    )
    return ReproductionResult(
        package="moextend",
        task="LLaVA-1.5 instruction tuning with new experts",
        primary_metric="final_loss",
        higher_is_better=False,
        rows=[row],
        report_markdown=f"### MoExtend (paper preset)\n\nExtended layers {plan.layers}, sources {plan.source_experts}.",
    )


def reproduce(context: ReproductionContext) -> ReproductionResult:
    """Run the MoExtend reproduction for ``context.preset`` and return its comparison rows."""
    if context.preset == "paper":
        return _paper(context)
    return _demo(context)
