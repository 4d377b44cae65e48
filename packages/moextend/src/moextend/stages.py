"""The three MoExtend stages on top of :class:`~moextend.model.MoExtendModel`.

1. ``align``: train the projector on image-caption pairs; everything else frozen.
2. ``probe`` then ``extend``: train all routers briefly on new-modality data, count expert usage on a held-out
   split before and after, select the layers to extend (:mod:`moextend.selection`), restore the original
   router rows (unless ``keep_probe_router``) and add copy-initialised experts.
3. ``finetune``: train the new experts, new router rows, calibration MLPs and the projector.

Every stage reads the previous stage's folder and writes ``<output>/model`` (a delta checkpoint) plus
``checkpoints/last`` while it trains, so an interrupted stage resumes when rerun.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from moextend.data import ChatCollator, ChatDataset, ChatSample
from moextend.extend import ExtensionPlan, find_moe_layers, restore_routers, router_state
from moextend.model import MODEL_CONFIG_FILE, MoExtendModel
from moextend.selection import count_expert_usage, select_layers
from moextend.tiny import IMAGE_TOKEN
from moextend.training import TrainingSettings, TrainingSummary, train_parameters
from qcore.rundir import RunDir

__all__ = [
    "USAGE_FILE",
    "ModelBundle",
    "ProbeResult",
    "extend_from_usage",
    "load_bundle",
    "make_dataset",
    "measure_expert_usage",
    "run_align",
    "run_finetune",
    "run_probe",
    "split_probe_data",
]

logger = logging.getLogger(__name__)

USAGE_FILE = "usage.json"
MODEL_SUBDIR = "model"


@dataclasses.dataclass
class ModelBundle:
    """A model with the tokenizer and image processor that belong to it."""

    model: MoExtendModel
    tokenizer: Any
    image_processor: Any
    max_length: int = 1024


def _image_token_id(tokenizer: Any) -> int:
    """Return the id of ``<image>``, adding it as a special token when the tokenizer lacks it."""
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    return int(tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))


def load_bundle(
    source: str | Path,
    *,
    vision_model: str | None = None,
    tokenizer_path: str | None = None,
    select_layer: int = -2,
    router_aux_loss_coef: float = 0.001,
    max_length: int = 1024,
) -> ModelBundle:
    """Load a model from a MoExtend folder (``moextend_config.json``) or from base checkpoints.

    Args:
        source: a stage output folder, its ``model`` subfolder, or the id/path of a base MoE LLM.
        vision_model: CLIP vision id/path; required when ``source`` is a base LLM.
        tokenizer_path: tokenizer id/path; defaults to the base LLM.
        select_layer: CLIP hidden layer for a new model.
        router_aux_loss_coef: weight of the load-balancing term for a new model.
        max_length: maximum sequence length of the data built for this model.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, CLIPImageProcessor, CLIPVisionModel

    folder = Path(source)
    if (folder / MODEL_SUBDIR / MODEL_CONFIG_FILE).is_file():
        folder = folder / MODEL_SUBDIR
    if (folder / MODEL_CONFIG_FILE).is_file():
        model = MoExtendModel.from_pretrained(folder)
    else:
        if vision_model is None:
            raise ValueError(
                f"{source} is not a MoExtend folder (no {MODEL_CONFIG_FILE}); to start from a base LLM also "
                "pass the CLIP vision model"
            )
        language_model = AutoModelForCausalLM.from_pretrained(str(source))
        vision_tower = CLIPVisionModel.from_pretrained(vision_model)
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path or str(source))
        model = MoExtendModel(
            language_model,
            vision_tower,
            image_token_id=_image_token_id(tokenizer),
            select_layer=select_layer,
            router_aux_loss_coef=router_aux_loss_coef,
            base_model=str(source),
            vision_model=vision_model,
        )
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path or model.base_model)
    if _image_token_id(tokenizer) != model.image_token_id:
        raise ValueError(
            f"tokenizer maps {IMAGE_TOKEN} to {_image_token_id(tokenizer)} but the model expects "
            f"{model.image_token_id}; use the tokenizer the model was trained with"
        )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.vision_model is None:
        raise ValueError(f"{source} does not name its CLIP vision model; pass vision_model")
    image_processor = CLIPImageProcessor.from_pretrained(model.vision_model)
    model.eval()
    return ModelBundle(model, tokenizer, image_processor, max_length)


def make_dataset(
    bundle: ModelBundle, samples: Sequence[ChatSample], *, prompt_only: bool = False
) -> ChatDataset:
    """Wrap ``samples`` for ``bundle``'s tokenizer, image processor and placeholder settings."""
    return ChatDataset(
        samples,
        bundle.tokenizer,
        bundle.image_processor,
        image_token_id=bundle.model.image_token_id,
        num_image_tokens=bundle.model.num_image_tokens,
        max_length=bundle.max_length,
        prompt_only=prompt_only,
    )


def _train(
    bundle: ModelBundle,
    samples: Sequence[ChatSample],
    trainable: Sequence[str],
    settings: TrainingSettings,
    output_dir: Path,
    description: str,
    run_dir: RunDir | None,
) -> TrainingSummary:
    return train_parameters(
        bundle.model,
        make_dataset(bundle, samples),
        ChatCollator(bundle.tokenizer.pad_token_id),
        trainable=trainable,
        settings=settings,
        output_dir=output_dir,
        description=description,
        run_dir=run_dir,
    )


def run_align(
    bundle: ModelBundle,
    samples: Sequence[ChatSample],
    settings: TrainingSettings,
    output_dir: str | Path,
    *,
    run_dir: RunDir | None = None,
) -> TrainingSummary:
    """Stage 1: train the projector on image-caption pairs and save to ``output_dir/model``."""
    output_dir = Path(output_dir)
    summary = _train(
        bundle, samples, bundle.model.projector_parameter_names(), settings, output_dir, "align", run_dir
    )
    bundle.model.save_pretrained(output_dir / MODEL_SUBDIR)
    return summary


@torch.no_grad()
def measure_expert_usage(
    model: MoExtendModel, dataset: ChatDataset, collator: ChatCollator, *, batch_size: int = 8
) -> dict[str, Any]:
    """Count top-k expert usage per MoE layer over ``dataset``.

    Returns:
        ``{"layers": [...], "top_k": counts (L, E), "legacy_ascending": counts (L, E)}`` where the second
        count takes ``argsort(p)[:k]`` (the least likely experts) as the official code does.
    """
    model.eval()
    layers = [layer.index for layer in find_moe_layers(model.language_model)]
    totals: dict[str, torch.Tensor | None] = {"top_k": None, "legacy_ascending": None}
    for start in range(0, len(dataset), batch_size):
        batch = collator([dataset[index] for index in range(start, min(start + batch_size, len(dataset)))])
        output = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            pixel_values=batch["pixel_values"],
        )
        for key, legacy in (("top_k", False), ("legacy_ascending", True)):
            counts = count_expert_usage(
                output.router_logits,
                top_k=model.top_k,
                attention_mask=batch["attention_mask"],
                legacy_ascending_argsort=legacy,
            )
            stacked = torch.stack([counts[index] for index in layers])
            previous = totals[key]
            totals[key] = stacked if previous is None else previous + stacked
    return {"layers": layers, **totals}


def split_probe_data(
    samples: Sequence[ChatSample], *, validation_size: int, seed: int = 42
) -> tuple[list[ChatSample], list[ChatSample]]:
    """Split samples at random into a router-training set and a usage-validation set.

    The validation set has ``validation_size`` samples, at most half of the data.
    """
    if len(samples) < 2:
        raise ValueError(f"router probing needs at least 2 samples, got {len(samples)}")
    size = min(validation_size, len(samples) // 2)
    order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(seed)).tolist()
    validation = [samples[index] for index in order[:size]]
    training = [samples[index] for index in order[size:]]
    return training, validation


@dataclasses.dataclass
class ProbeResult:
    """Usage counts before and after router probing, and the probed router weights by layer."""

    usage: dict[str, Any]
    probed_routers: dict[int, torch.Tensor]


def run_probe(
    bundle: ModelBundle,
    samples: Sequence[ChatSample],
    settings: TrainingSettings,
    output_dir: str | Path,
    *,
    validation_size: int = 10_000,
    run_dir: RunDir | None = None,
) -> ProbeResult:
    """Stage 2a: train every router on a training split and count expert usage before and after.

    Writes ``usage.json`` and the probed model (projector and router weights) to ``output_dir/model``,
    then restores the original router rows in ``bundle.model``.
    """
    output_dir = Path(output_dir)
    training, validation = split_probe_data(samples, validation_size=validation_size, seed=settings.seed)
    collator = ChatCollator(bundle.tokenizer.pad_token_id)
    validation_set = make_dataset(bundle, validation, prompt_only=True)
    original_routers = router_state(bundle.model.language_model)
    before = measure_expert_usage(bundle.model, validation_set, collator, batch_size=settings.batch_size)
    routers = bundle.model.router_parameter_names()
    summary = _train(bundle, training, routers, settings, output_dir, "probe", run_dir)
    after = measure_expert_usage(bundle.model, validation_set, collator, batch_size=settings.batch_size)
    usage = {
        "layers": before["layers"],
        "before": {key: before[key].tolist() for key in ("top_k", "legacy_ascending")},
        "after": {key: after[key].tolist() for key in ("top_k", "legacy_ascending")},
        "validation_samples": len(validation),
        "training_samples": len(training),
        "probe_losses": summary.losses,
    }
    (output_dir / USAGE_FILE).write_text(json.dumps(usage))
    previous_extra = set(bundle.model.extra_delta_names)
    bundle.model.extra_delta_names |= set(routers)
    bundle.model.save_pretrained(output_dir / MODEL_SUBDIR)
    probed = router_state(bundle.model.language_model)
    restore_routers(bundle.model.language_model, original_routers)
    bundle.model.extra_delta_names = previous_extra
    for param in bundle.model.parameters():
        param.requires_grad_(False)
    return ProbeResult(usage, probed)


def extend_from_usage(
    bundle: ModelBundle,
    usage: dict[str, Any],
    *,
    probed_routers: dict[int, torch.Tensor] | None = None,
    keep_probe_router: bool = False,
    legacy_ascending_argsort: bool = False,
    num_layers: int | None = None,
    num_new_experts: int = 1,
    calibration_hidden: int = 16,
) -> ExtensionPlan:
    """Stage 2b: select layers from usage counts and extend ``bundle.model`` in place.

    Args:
        bundle: the model after alignment, with the original routers.
        usage: the content of ``usage.json`` written by :func:`run_probe`.
        probed_routers: router weights after probing by layer; installed when ``keep_probe_router``.
        keep_probe_router: keep the probed router rows (official behaviour) instead of the original ones.
        legacy_ascending_argsort: select from the official ascending-argsort counts.
        num_layers: layers to extend; ``floor(L / 2)`` by default.
        num_new_experts: new experts per extended layer.
        calibration_hidden: hidden width of each calibration MLP.
    """
    routers = set(bundle.model.router_parameter_names())
    if not keep_probe_router and routers & bundle.model.extra_delta_names:
        raise ValueError(
            "this model carries probed router weights; extend the output of the align stage, or set "
            "keep_probe_router to keep the probed rows"
        )
    key = "legacy_ascending" if legacy_ascending_argsort else "top_k"
    plan = select_layers(
        torch.tensor(usage["before"][key]),
        torch.tensor(usage["after"][key]),
        layer_indices=usage["layers"],
        num_layers=num_layers,
        num_new_experts=num_new_experts,
    )
    if keep_probe_router:
        if probed_routers is None:
            raise ValueError("keep_probe_router needs the probed router weights")
        restore_routers(bundle.model.language_model, probed_routers)
        bundle.model.extra_delta_names |= set(bundle.model.router_parameter_names())
    bundle.model.extend(plan, calibration_hidden=calibration_hidden)
    return plan


def probed_router_state(probe_dir: str | Path) -> dict[int, torch.Tensor]:
    """Read the probed router weights from a probe output folder."""
    probed = MoExtendModel.from_pretrained(Path(probe_dir) / MODEL_SUBDIR)
    return router_state(probed.language_model)


def finetune_trainable_names(model: MoExtendModel) -> list[str]:
    """New experts, new router rows, calibration MLPs and projector: the stage-3 trainable set."""
    return model.new_parameter_names() + model.projector_parameter_names()


def run_finetune(
    bundle: ModelBundle,
    samples: Sequence[ChatSample],
    settings: TrainingSettings,
    output_dir: str | Path,
    *,
    run_dir: RunDir | None = None,
) -> TrainingSummary:
    """Stage 3: train the new experts, new router rows, calibration and projector; save the delta."""
    if bundle.model.plan is None:
        raise ValueError("fine-tuning needs an extended model; run the extend stage first")
    output_dir = Path(output_dir)
    summary = _train(
        bundle, samples, finetune_trainable_names(bundle.model), settings, output_dir, "finetune", run_dir
    )
    bundle.model.save_pretrained(output_dir / MODEL_SUBDIR)
    return summary
