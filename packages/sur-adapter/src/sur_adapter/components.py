"""Stable Diffusion components: loading real checkpoints and building tiny random ones in-process.

Training and inference need a tokenizer, a text encoder, a VAE, a conditional UNet and a noise scheduler.
:func:`load_components` reads them from a diffusers-format checkpoint (a Hugging Face id or a local
folder). :func:`build_tiny_components` builds small randomly initialised versions from configs, for tests
and CPU demonstrations. Its tokenizer is the BERT word-piece tokenizer of the bundled all-MiniLM-L6-v2
model, cut to CLIP's 77-token context.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

__all__ = [
    "TINY_MODEL_ID",
    "DiffusionComponents",
    "build_tiny_components",
    "encode_text",
    "load_components",
    "tokenize",
]

logger = logging.getLogger(__name__)

TINY_MODEL_ID = "tiny"
_CONTEXT_LENGTH = 77


@dataclass
class DiffusionComponents:
    """The parts of a Stable Diffusion checkpoint used by SUR-adapter.

    Attributes:
        tokenizer: Tokenizer of the text encoder; pads and truncates to ``tokenizer.model_max_length``.
        text_encoder: Frozen text encoder whose ``last_hidden_state`` (B, L, D) is the adapter input.
        vae: Frozen autoencoder that maps images in [-1, 1] to latents.
        unet: Frozen noise-prediction UNet conditioned on (B, L, D) embeddings.
        noise_scheduler: Training scheduler (DDPM).
        resolution: Image side length the UNet was trained for.
        model_id: Checkpoint id or ``"tiny"``.
    """

    tokenizer: Any
    text_encoder: Any
    vae: AutoencoderKL
    unet: UNet2DConditionModel
    noise_scheduler: DDPMScheduler
    resolution: int
    model_id: str

    @property
    def embed_dim(self) -> int:
        """Hidden size D of the text encoder, which is the adapter width."""
        return int(self.text_encoder.config.hidden_size)

    def inference_scheduler(self) -> DDIMScheduler:
        """Return a DDIM scheduler with the training scheduler's noise schedule."""
        return DDIMScheduler.from_config(self.noise_scheduler.config)

    def freeze(self) -> None:
        """Disable gradients of the text encoder, VAE and UNet and put them in eval mode."""
        for module in (self.text_encoder, self.vae, self.unet):
            module.requires_grad_(False)
            module.eval()

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> DiffusionComponents:
        """Move the three networks to ``device`` (and ``dtype`` when given) in place."""
        for module in (self.text_encoder, self.vae, self.unet):
            if dtype is None:
                module.to(device=device)
            else:
                module.to(device=device, dtype=dtype)
        return self


def build_tiny_components(*, seed: int = 0) -> DiffusionComponents:
    """Build a randomly initialised tiny UNet, VAE and CLIP text encoder (32x32 images, D = 32).

    The sizes follow the small configurations diffusers uses in its own Stable Diffusion pipeline tests.
    The global random state is left untouched.
    """
    tokenizer = _bundled_word_piece_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=16,
            in_channels=4,
            out_channels=4,
            layers_per_block=1,
            block_out_channels=(32, 64),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            block_out_channels=(32, 64),
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            latent_channels=4,
            sample_size=32,
        )
        text_config = CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=_CONTEXT_LENGTH,
            bos_token_id=tokenizer.cls_token_id,
            eos_token_id=tokenizer.sep_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        text_encoder = CLIPTextModel(text_config)
    scheduler = DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        steps_offset=1,
    )
    return DiffusionComponents(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        unet=unet,
        noise_scheduler=scheduler,
        resolution=32,
        model_id=TINY_MODEL_ID,
    )


def load_components(
    pretrained_model_name_or_path: str,
    *,
    revision: str | None = None,
    variant: str | None = None,
    seed: int = 0,
) -> DiffusionComponents:
    """Load tokenizer, text encoder, VAE, UNet and DDPM scheduler from a diffusers-format checkpoint.

    Args:
        pretrained_model_name_or_path: Hugging Face id (such as ``stable-diffusion-v1-5/stable-diffusion-v1-5``)
            or a local folder with ``tokenizer/``, ``text_encoder/``, ``vae/``, ``unet/`` and ``scheduler/``;
            ``"tiny"`` builds :func:`build_tiny_components` instead.
        revision: Hub revision.
        variant: Weight variant such as ``"fp16"``.
        seed: Seed of the tiny components.
    """
    if pretrained_model_name_or_path == TINY_MODEL_ID:
        return build_tiny_components(seed=seed)
    from transformers import CLIPTokenizer

    revision_kwargs: dict[str, Any] = {"revision": revision}
    tokenizer = CLIPTokenizer.from_pretrained(
        pretrained_model_name_or_path, subfolder="tokenizer", **revision_kwargs
    )
    text_encoder = CLIPTextModel.from_pretrained(
        pretrained_model_name_or_path, subfolder="text_encoder", variant=variant, **revision_kwargs
    )
    vae = AutoencoderKL.from_pretrained(
        pretrained_model_name_or_path, subfolder="vae", variant=variant, **revision_kwargs
    )
    unet = UNet2DConditionModel.from_pretrained(
        pretrained_model_name_or_path, subfolder="unet", variant=variant, **revision_kwargs
    )
    scheduler = DDPMScheduler.from_pretrained(
        pretrained_model_name_or_path, subfolder="scheduler", **revision_kwargs
    )
    resolution = int(unet.config.sample_size) * 2 ** (len(vae.config.block_out_channels) - 1)
    return DiffusionComponents(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        unet=unet,
        noise_scheduler=scheduler,
        resolution=resolution,
        model_id=pretrained_model_name_or_path,
    )


def tokenize(tokenizer, prompts: list[str]) -> torch.Tensor:
    """Tokenize prompts to (B, model_max_length) ids, padded and truncated as Stable Diffusion does."""
    return tokenizer(
        prompts,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids


def encode_text(components: DiffusionComponents, prompts: list[str]) -> torch.Tensor:
    """Return the text encoder's (B, L, D) last hidden state for ``prompts``, without gradients."""
    device = next(components.text_encoder.parameters()).device
    ids = tokenize(components.tokenizer, prompts).to(device)
    with torch.no_grad():
        return components.text_encoder(ids)[0]


def _bundled_word_piece_tokenizer():
    from transformers import AutoTokenizer

    from .teacher import BUNDLED_TEACHER, _resolve_teacher_path

    tokenizer = AutoTokenizer.from_pretrained(str(_resolve_teacher_path(BUNDLED_TEACHER)))
    tokenizer.model_max_length = _CONTEXT_LENGTH
    return tokenizer
