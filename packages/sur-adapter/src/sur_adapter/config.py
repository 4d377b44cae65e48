"""Training configuration of SUR-adapter, with the authors' ``run.sh`` values as defaults.

The ``tiny`` preset replaces the checkpoint with in-process random components and the teacher with the
bundled all-MiniLM-L6-v2 encoder so that a run finishes on a CPU in minutes.
"""

from __future__ import annotations

import dataclasses

from qcore.config import Config, check_positive, check_range, option

from .teacher import BUNDLED_TEACHER, POOLINGS

__all__ = ["PRESETS", "TrainConfig", "preset_config"]

PRESETS = ("paper", "tiny")


@dataclasses.dataclass(kw_only=True)
class TrainConfig(Config):
    """Everything a SUR-adapter training run reads."""

    # Models and data.
    pretrained_model: str = option(
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        help="diffusers-format Stable Diffusion checkpoint (Hub id or folder); 'tiny' builds random tiny components",
    )
    data_root: str | None = option(
        None, help="SURD-format folder (images + metadata.jsonl); None writes the bundled scikit-image set"
    )
    output_dir: str = option(
        "runs/sur-adapter", help="folder for checkpoints, metrics, validation images and the adapter"
    )
    teacher: str = option(
        "huggyllama/llama-13b",
        help=f"Hugging Face causal LM or encoder used as the LLM teacher ('{BUNDLED_TEACHER}' is bundled)",
    )
    teacher_layer: int = option(
        40, help="index into the teacher's hidden_states (0 = embeddings, -1 = last block)"
    )
    teacher_pooling: str = option(
        "mean", help="how the teacher's token states become one vector", choices=POOLINGS
    )
    teacher_vectors: str | None = option(
        None, help="precomputed {prompt: vector} .pt file (the authors' prompt2vec format); skips the teacher"
    )
    teacher_batch_size: int = option(8, help="prompts per teacher forward pass")
    feature_cache_dir: str | None = option(
        None, help="teacher-vector cache folder; None uses <output_dir>/teacher-cache"
    )
    resolution: int | None = option(
        512, help="training image side in pixels; None uses the UNet's native size"
    )
    center_crop: bool = option(True, help="crop the image centre (otherwise a random crop)")
    random_flip: bool = option(True, help="flip training images horizontally with probability 0.5")

    # Adapter.
    adapter_weight: float = option(0.1, help="beta in y = beta * fc(a) + (1 - beta) * x")
    depth: int = option(2, help="transformer-encoder layers of the adapter")
    nhead: int = option(8, help="attention heads of each adapter transformer-encoder layer")
    dim_feedforward: int = option(2048, help="feed-forward width of each adapter transformer-encoder layer")
    dropout: float = option(0.1, help="dropout of the adapter transformer-encoder layers")
    zero_fc_bias: bool = option(
        False, help="zero the output layer's bias so y = (1 - beta) x at initialisation"
    )
    keep_value_layer: bool = option(
        False, help="keep the unused value projection (strict loading of official files)"
    )

    # Losses.
    llm_weight: float = option(1e-5, help="weight of the LLM distillation term L_llm")
    prompt_weight: float = option(1e-5, help="weight of the complex-prompt distillation term L_prompt")
    prediction_type: str | None = option(
        None, help="override the scheduler's prediction type", choices=(None, "epsilon", "v_prediction")
    )
    snr_gamma: float | None = option(None, help="gamma of min-SNR loss weighting; None for plain MSE")
    noise_offset: float = option(0.0, help="scale of the per-channel noise offset")

    # Official-code behaviours (all off by default, because they are defects).
    legacy_detach_condition: bool = option(
        False,
        help="detach the adapted embeddings before the UNet, so the diffusion loss does not train the adapter",
    )
    legacy_batch_first_bug: bool = option(
        False,
        help="build the adapter's transformer layers with batch_first=False, mixing samples instead of tokens",
    )
    legacy_llm_projection: bool = option(
        False, help="use a frozen, unseeded, unsaved teacher projection instead of a trained, saved one"
    )

    # Optimisation.
    train_batch_size: int = option(1, help="samples per micro-batch")
    gradient_accumulation_steps: int = option(4, help="micro-batches per optimizer step")
    max_train_steps: int = option(5000, help="optimizer steps")
    learning_rate: float = option(1e-5, help="AdamW learning rate")
    lr_scheduler: str = option(
        "constant",
        help="diffusers learning-rate schedule",
        choices=(
            "constant",
            "constant_with_warmup",
            "linear",
            "cosine",
            "cosine_with_restarts",
            "polynomial",
        ),
    )
    lr_warmup_steps: int = option(0, help="warm-up optimizer steps")
    adam_beta1: float = option(0.9, help="AdamW beta1")
    adam_beta2: float = option(0.999, help="AdamW beta2")
    weight_decay: float = option(1e-2, help="AdamW decoupled weight decay")
    adam_epsilon: float = option(1e-8, help="AdamW epsilon")
    max_grad_norm: float = option(1.0, help="gradient clipping norm")
    mixed_precision: str = option(
        "no", help="accelerate mixed precision of the frozen parts", choices=("no", "fp16", "bf16")
    )
    gradient_checkpointing: bool = option(False, help="recompute UNet activations in the backward pass")
    seed: int = option(0, help="seed of data order, noise, timesteps and adapter initialisation")
    device: str = option("auto", help="'auto', 'cpu' or 'cuda'", choices=("auto", "cpu", "cuda"))

    # Checkpoints and validation.
    checkpointing_steps: int = option(100, help="save a resumable checkpoint every N optimizer steps")
    checkpoints_total_limit: int | None = option(
        None, help="keep at most this many checkpoints; None keeps all"
    )
    resume_from_checkpoint: str | None = option(None, help="checkpoint folder to resume from, or 'latest'")
    validation_steps: int = option(100, help="save validation images every N optimizer steps (0 disables)")
    validation_prompts: tuple[str, ...] = option(
        (), help="prompts of the validation images; empty uses the first four simple prompts"
    )
    validation_inference_steps: int = option(25, help="DDIM steps of validation images")
    guidance_scale: float = option(7.5, help="classifier-free guidance scale of validation images")

    def validate(self) -> None:
        super().validate()
        for name in (
            "teacher_batch_size",
            "depth",
            "nhead",
            "dim_feedforward",
            "train_batch_size",
            "gradient_accumulation_steps",
            "max_train_steps",
            "learning_rate",
            "checkpointing_steps",
            "validation_inference_steps",
        ):
            check_positive(name, getattr(self, name))
        if self.resolution is not None:
            check_positive("resolution", self.resolution)
        check_range("adapter_weight", self.adapter_weight, 0.0, 1.0)
        check_range("dropout", self.dropout, 0.0, 0.99)
        for name in (
            "llm_weight",
            "prompt_weight",
            "noise_offset",
            "weight_decay",
            "max_grad_norm",
            "lr_warmup_steps",
        ):
            check_range(name, getattr(self, name), 0.0, float("inf"))
        if self.validation_steps < 0:
            raise ValueError(
                f"invalid validation_steps={self.validation_steps!r}: must be 0 (off) or positive"
            )
        if self.snr_gamma is not None:
            check_positive("snr_gamma", self.snr_gamma)


def preset_config(preset: str, **overrides) -> TrainConfig:
    """Return the ``paper`` (authors' ``run.sh``) or ``tiny`` (CPU demonstration) config with overrides."""
    if preset not in PRESETS:
        raise ValueError(f"invalid preset={preset!r}. Valid values: {', '.join(map(repr, PRESETS))}")
    values: dict = {}
    if preset == "tiny":
        values = {
            "pretrained_model": "tiny",
            "teacher": BUNDLED_TEACHER,
            "teacher_layer": -1,
            "resolution": None,
            "nhead": 4,
            "dim_feedforward": 64,
            "train_batch_size": 4,
            "gradient_accumulation_steps": 1,
            "max_train_steps": 200,
            "learning_rate": 1e-4,
            "checkpointing_steps": 100,
            "validation_steps": 100,
            "validation_inference_steps": 4,
            "device": "cpu",
        }
    values.update(overrides)
    return TrainConfig.from_dict(values)
