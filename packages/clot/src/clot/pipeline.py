"""The end-to-end CLoT recipe: data, stage-1 instructions, LoRA tuning, self-refinement, evaluation.

CLoT is the method of "Let's Think Outside the Box" (Zhong et al., CVPR 2024, arXiv 2312.02439); "the
paper" below means that work.

The CLI commands and the reproduction presets are thin wrappers around these functions, so each step
can run alone (reading what the previous step wrote to the run directory) or all in one process.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from clot.backbone import CausalLMBackbone, build_tiny_backbone, load_backbone
from clot.data import LANGUAGES, OogiriSample, read_oogiri_dataset, split_by_input
from clot.instructions import (
    MTN_FORMATS,
    DistractorSources,
    Instruction,
    InstructionSettings,
    build_instructions,
    load_instructions,
    save_instructions,
    swap_noun_rewriter,
)
from clot.nouns import BACKENDS, NounExtractor, build_noun_set, make_noun_extractor
from clot.refine import RefineConfig, RefineSummary, self_refine
from clot.training import LoraSettings, TrainConfig, apply_lora, load_adapter, save_adapter, train_lora
from qcore.config import Config, check_range, option
from qcore.rundir import RunDir

__all__ = [
    "ClotConfig",
    "PreparedData",
    "create_backbone",
    "load_tuned_backbone",
    "prepare_data",
    "run_evaluation",
    "run_pipeline",
    "run_refinement",
    "run_stage1",
]

logger = logging.getLogger(__name__)

INSTRUCTIONS_FILE = "instructions_stage1.jsonl"
REFINED_FILE = "instructions_refined.jsonl"
BASE_DIR = "base_model"
STAGE1_DIR = "adapter_stage1"
STAGE2_DIR = "adapter_stage2"


@dataclass(kw_only=True)
class ClotConfig(Config):
    """Every setting of the CLoT recipe. Paper values are the defaults where the paper states them."""

    # Data
    data_root: str = option(
        "",
        help="Oogiri-GO folder with en.jsonl, cn.jsonl, jp.jsonl and images/. Empty uses the built-in sample "
        "written to the run directory.",
    )
    image_root: str = option("", help="Image folder; empty means data_root/images.")
    languages: tuple[str, ...] = option(LANGUAGES, help="Languages to read (en, zh, ja).")
    limit_per_language: int = option(0, help="Read at most this many responses per language; 0 reads all.")
    test_fraction: float = option(
        0.05, help="Share of game inputs held out for evaluation (5 % in the paper)."
    )
    split_seed: int = option(0, help="Seed of the train/test split.")
    noun_backend: str = option("auto", help="Noun extractor back end.", choices=BACKENDS)
    seed: int = option(0, help="Seed of instruction building, training order and sampling.")

    # Stage-1 instructions
    condition_empty_prob: float = option(0.5, help="rho_c: probability of an empty condition in AIT (0.5).")
    selection_formats: tuple[str, ...] = option(
        MTN_FORMATS,
        help="mTn formats of selection instructions and evaluation.",
    )

    # Model
    model: str = option(
        "tiny",
        help="'tiny' builds a small random LLaVA-style model in-process; otherwise a local folder or Hub id "
        "such as llava-hf/llava-1.5-7b-hf or Qwen/Qwen2.5-0.5B-Instruct.",
    )
    model_kind: str = option(
        "auto", help="Backbone kind of a pretrained model.", choices=("auto", "llava", "text")
    )
    tiny_multimodal: bool = option(
        True, help="The tiny model has a vision tower (LLaVA) instead of text only."
    )
    tiny_hidden_size: int = option(64, help="Hidden size of the tiny model.")
    tiny_layers: int = option(2, help="Decoder layers of the tiny model.")
    device: str = option("cpu", help="Device of the model, e.g. cpu or cuda.")
    dtype: str = option(
        "", help="Weight dtype of a pretrained model (bfloat16, float16, float32); empty: default."
    )

    # LoRA and optimisation (Appendix E of the paper, Qwen-VL column)
    lora_rank: int = option(64, help="LoRA rank.")
    lora_alpha: float = option(16.0, help="LoRA alpha.")
    lora_dropout: float = option(0.05, help="LoRA dropout.")
    lora_targets: tuple[str, ...] = option(
        ("q_proj", "k_proj", "v_proj", "o_proj"),
        help="Layers of the language model with LoRA.",
    )
    learning_rate: float = option(1e-5, help="AdamW learning rate.")
    weight_decay: float = option(0.1, help="AdamW weight decay.")
    batch_size: int = option(64, help="Instructions per optimizer step.")
    micro_batch_size: int = option(8, help="Instructions per forward pass.")
    epochs: int = option(1, help="Epochs of each training stage (not stated in the paper; our choice).")
    max_steps: int = option(0, help="Optimizer steps per training stage; 0 runs all epochs (smoke runs).")

    # Stage 2
    num_candidates: int = option(5, help="n: candidates per input in self-refinement (5).")
    condition_empty_prob_refine: float = option(
        0.5, help="rho: probability of an empty weak condition (0.5)."
    )
    keep_condition: bool = option(False, help="Kept refined samples store their condition (our default: no).")
    fresh_lora: bool = option(
        False, help="Stage 2 trains a fresh LoRA instead of continuing stage 1's (default)."
    )
    max_new_tokens: int = option(32, help="Token limit of generated candidates.")
    refine_limit: int = option(0, help="Refine at most this many training inputs; 0 refines all.")

    def validate(self) -> None:
        super().validate()
        check_range("test_fraction", self.test_fraction, 1e-6, 0.999)
        check_range("condition_empty_prob", self.condition_empty_prob, 0.0, 1.0)
        for language in self.languages:
            if language not in LANGUAGES:
                raise ValueError(f"invalid languages entry {language!r}; valid: {', '.join(LANGUAGES)}.")
        InstructionSettings(selection_formats=tuple(self.selection_formats))

    def lora_settings(self) -> LoraSettings:
        return LoraSettings(
            rank=self.lora_rank,
            alpha=self.lora_alpha,
            dropout=self.lora_dropout,
            target_modules=list(self.lora_targets),
        )

    def train_config(self) -> TrainConfig:
        micro = min(self.micro_batch_size, self.batch_size)
        return TrainConfig(
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            batch_size=self.batch_size,
            micro_batch_size=micro if self.batch_size % micro == 0 else 1,
            epochs=self.epochs,
            max_steps=self.max_steps,
            seed=self.seed,
        )

    def refine_config(self) -> RefineConfig:
        return RefineConfig(
            num_candidates=self.num_candidates,
            condition_empty_prob=self.condition_empty_prob_refine,
            keep_condition=self.keep_condition,
            max_new_tokens=self.max_new_tokens,
            seed=self.seed,
        )


@dataclass
class PreparedData:
    """Samples split into train and test, with the noun set and distractor sources of each side."""

    train: list[OogiriSample]
    test: list[OogiriSample]
    noun_set: dict[str, list[str]]
    extractors: dict[str, NounExtractor]
    train_sources: DistractorSources
    test_sources: DistractorSources


def _captions(data_root: Path) -> dict[str, str]:
    path = data_root / "captions.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def prepare_data(config: ClotConfig, run_dir: RunDir) -> PreparedData:
    """Read (or write, then read) the data, split it and build the noun set and distractor sources.

    Captions come from ``captions.json`` beside the JSONL files when present, as in the built-in sample.
    Without that file, the caption distractor falls back to a response to another input.
    """
    if config.data_root:
        data_root = Path(config.data_root)
    else:
        from clot.sample_data import write_sample_dataset

        data_root = write_sample_dataset(run_dir.path / "sample_data")
    samples = read_oogiri_dataset(
        data_root,
        languages=tuple(config.languages),
        image_root=config.image_root or None,
        limit_per_language=config.limit_per_language or None,
    )
    train, test = split_by_input(samples, test_fraction=config.test_fraction, seed=config.split_seed)
    languages = sorted({sample.language for sample in samples})
    extractors = {language: make_noun_extractor(language, config.noun_backend) for language in languages}
    noun_set = build_noun_set(
        {language: [s.text for s in train if s.language == language] for language in languages},
        backend=config.noun_backend,
    )
    run_dir.write_json("noun_set.json", noun_set)
    captions = _captions(data_root)

    def caption(sample: OogiriSample) -> str | None:
        return captions.get(sample.image_id) if sample.image_id is not None else None

    rewrite = swap_noun_rewriter(noun_set, extractors)
    logger.info("data: %d train and %d test responses in %s", len(train), len(test), ", ".join(languages))
    return PreparedData(
        train=train,
        test=test,
        noun_set=noun_set,
        extractors=extractors,
        train_sources=DistractorSources.from_samples(train, caption=caption, rewrite=rewrite),
        # Unrelated distractors of held-out questions may be any other input's response, so a small test
        # set still yields full mTn questions.
        test_sources=DistractorSources.from_samples(train + test, caption=caption, rewrite=rewrite),
    )


def _dtype(config: ClotConfig):
    import torch

    if not config.dtype:
        return None
    dtype = getattr(torch, config.dtype, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"invalid dtype={config.dtype!r}; use bfloat16, float16 or float32.")
    return dtype


def create_backbone(config: ClotConfig, instructions: list[Instruction]) -> CausalLMBackbone:
    """Build the tiny model (tokenizer trained on the instruction texts) or load a pretrained one."""
    if config.model == "tiny":
        texts = [f"{item.prompt} {item.target}" for item in instructions]
        backbone = build_tiny_backbone(
            texts,
            multimodal=config.tiny_multimodal,
            hidden_size=config.tiny_hidden_size,
            num_layers=config.tiny_layers,
            seed=config.seed,
        )
        backbone.model.to(config.device)
        return backbone
    return load_backbone(config.model, kind=config.model_kind, dtype=_dtype(config), device=config.device)


def load_tuned_backbone(run_dir: RunDir, config: ClotConfig, *, stage: str = "stage2") -> CausalLMBackbone:
    """Load the run's base model with the adapter of ``stage`` (``base``, ``stage1`` or ``stage2``)."""
    base = run_dir.path / BASE_DIR
    source = base if base.is_dir() else config.model
    if source == "tiny":
        raise FileNotFoundError(
            f"no saved base model in {base}; run `clot train` with this run directory first."
        )
    backbone = load_backbone(source, kind=config.model_kind, dtype=_dtype(config), device=config.device)
    if stage == "base":
        return backbone
    adapter = run_dir.path / (STAGE2_DIR if stage == "stage2" else STAGE1_DIR)
    return load_adapter(backbone, adapter, trainable=False)


def run_stage1(
    config: ClotConfig, run_dir: RunDir, data: PreparedData, *, evaluate: bool = True
) -> tuple[CausalLMBackbone, dict]:
    """Build stage-1 instructions, create the backbone, evaluate it untuned, then LoRA-tune it (AIT)."""
    settings = InstructionSettings(
        condition_empty_prob=config.condition_empty_prob, selection_formats=tuple(config.selection_formats)
    )
    instructions = build_instructions(
        data.train, data.extractors, seed=config.seed, settings=settings, sources=data.train_sources
    )
    save_instructions(run_dir.path / INSTRUCTIONS_FILE, instructions)

    backbone = create_backbone(config, instructions)
    if config.model == "tiny":
        # A tiny model exists only in this process; pretrained weights are read again from config.model.
        backbone.save_pretrained(run_dir.path / BASE_DIR)
    results: dict = {"num_stage1_instructions": len(instructions)}
    if evaluate:
        results["base"] = run_evaluation(backbone, data, config)

    apply_lora(backbone, config.lora_settings())
    started = time.perf_counter()
    trained = train_lora(
        backbone, instructions, config.train_config(), run_dir=run_dir, metric_prefix="stage1"
    )
    results["stage1_seconds"] = time.perf_counter() - started
    results["stage1_steps"] = trained.steps
    results["stage1_losses"] = trained.losses
    save_adapter(backbone, run_dir.path / STAGE1_DIR)
    if evaluate:
        results["ait"] = run_evaluation(backbone, data, config)
    return backbone, results


def run_refinement(
    backbone: CausalLMBackbone, config: ClotConfig, run_dir: RunDir, data: PreparedData
) -> RefineSummary:
    """Run self-refinement with progress in ``run_dir/refine`` and write the kept instructions."""
    samples = data.train
    if config.refine_limit:
        keys = list(dict.fromkeys(sample.input_key for sample in samples))[: config.refine_limit]
        samples = [sample for sample in samples if sample.input_key in set(keys)]
    summary = self_refine(
        backbone, samples, data.noun_set, config.refine_config(), output_dir=run_dir.path / "refine"
    )
    save_instructions(run_dir.path / REFINED_FILE, summary.instructions)
    run_dir.write_json(
        "refine_counts.json",
        {
            "kept": summary.kept,
            "dropped_human_won": summary.dropped_human_won,
            "dropped_no_candidates": summary.dropped_no_candidates,
            "resumed": summary.resumed,
        },
    )
    return summary


def run_stage2(
    backbone: CausalLMBackbone, config: ClotConfig, run_dir: RunDir, refined: list[Instruction]
) -> dict:
    """Retrain on the stage-1 instructions plus the refined ones, continuing the LoRA unless ``fresh_lora``."""
    from peft import PeftModel

    stage1 = load_instructions(run_dir.path / INSTRUCTIONS_FILE)
    if config.fresh_lora:
        if isinstance(backbone.model, PeftModel):
            backbone.model = backbone.model.unload()
        apply_lora(backbone, config.lora_settings())
    for parameter_name, parameter in backbone.model.named_parameters():
        if "lora_" in parameter_name:
            parameter.requires_grad_(True)
    started = time.perf_counter()
    offset = len(run_dir.read_metrics())
    trained = train_lora(
        backbone,
        stage1 + refined,
        config.train_config(),
        run_dir=run_dir,
        metric_prefix="stage2",
        step_offset=offset,
    )
    save_adapter(backbone, run_dir.path / STAGE2_DIR)
    return {
        "stage2_seconds": time.perf_counter() - started,
        "stage2_steps": trained.steps,
        "stage2_losses": trained.losses,
        "num_stage2_instructions": trained.num_instructions,
    }


def run_evaluation(backbone: CausalLMBackbone, data: PreparedData, config: ClotConfig) -> dict[str, float]:
    """Evaluate choice accuracy and ranking NDCG on the held-out responses."""
    from clot.evaluation import evaluate_model

    test = data.test
    if not backbone.supports_images:
        test = [sample for sample in test if sample.image is None]
    if not test:
        logger.warning("no held-out responses that this backbone can read; skipping evaluation")
        return {}
    return evaluate_model(
        backbone, test, data.test_sources, formats=config.selection_formats, seed=config.seed
    )


def run_pipeline(config: ClotConfig, run_dir: RunDir) -> dict:
    """Run stage 1, one round of stage 2 and the evaluations before and after; return every result."""
    run_dir.save_config(config)
    data = prepare_data(config, run_dir)
    backbone, results = run_stage1(config, run_dir, data)
    summary = run_refinement(backbone, config, run_dir, data)
    results["refine"] = {
        "kept": summary.kept,
        "dropped_human_won": summary.dropped_human_won,
        "dropped_no_candidates": summary.dropped_no_candidates,
    }
    results.update(run_stage2(backbone, config, run_dir, summary.instructions))
    results["clot"] = run_evaluation(backbone, data, config)
    run_dir.write_results(results)
    return results
