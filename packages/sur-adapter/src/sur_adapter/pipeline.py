"""Text-to-image inference with a SUR-adapter after Stable Diffusion's text encoder.

Two ways to use a trained adapter:

* :class:`SURStableDiffusionPipeline`, a ``StableDiffusionPipeline`` with an ``adapter`` component that
  transforms the prompt embeddings right after prompt encoding;
* :func:`encode_prompt_with_adapter` with an unchanged ``StableDiffusionPipeline``: it returns
  ``prompt_embeds`` and ``negative_prompt_embeds`` to pass to the pipeline call.
"""

from __future__ import annotations

import logging
from typing import ClassVar

import torch
from diffusers import StableDiffusionPipeline

from .adapter import SURAdapter

__all__ = ["SURStableDiffusionPipeline", "apply_adapter", "encode_prompt_with_adapter"]

logger = logging.getLogger(__name__)


def apply_adapter(
    adapter: SURAdapter,
    prompt_embeds: torch.Tensor,
    negative_prompt_embeds: torch.Tensor | None = None,
    *,
    adapter_on_uncond: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the adapter on prompt embeddings as the authors' pipeline does.

    With ``adapter_on_uncond`` and negative embeddings, the adapter receives the classifier-free-guidance batch
    ``[negative; positive]`` in one call, which matters only for an adapter with
    ``legacy_batch_first_bug=True`` whose attention mixes the samples of a batch.

    Args:
        adapter: Trained adapter; its dtype may differ from the embeddings'.
        prompt_embeds: (B, L, D) positive embeddings.
        negative_prompt_embeds: (B, L, D) unconditional embeddings, or ``None`` without guidance.
        adapter_on_uncond: Also adapt the unconditional half; ``False`` adapts only ``prompt_embeds``.

    Returns:
        ``(prompt_embeds, negative_prompt_embeds)`` with the input dtypes.
    """
    adapter_dtype = next(adapter.parameters()).dtype
    dtype = prompt_embeds.dtype
    if negative_prompt_embeds is not None and adapter_on_uncond:
        joined = torch.cat([negative_prompt_embeds, prompt_embeds]).to(adapter_dtype)
        adapted = adapter(joined).embeds.to(dtype)
        split = negative_prompt_embeds.shape[0]
        return adapted[split:], adapted[:split]
    adapted = adapter(prompt_embeds.to(adapter_dtype)).embeds.to(dtype)
    return adapted, negative_prompt_embeds


@torch.no_grad()
def encode_prompt_with_adapter(
    pipe: StableDiffusionPipeline,
    adapter: SURAdapter,
    prompt: str | list[str],
    *,
    negative_prompt: str | list[str] | None = None,
    num_images_per_prompt: int = 1,
    do_classifier_free_guidance: bool = True,
    adapter_on_uncond: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Encode prompts with a stock ``StableDiffusionPipeline`` and apply the adapter.

    Pass the results as ``pipe(prompt_embeds=..., negative_prompt_embeds=..., guidance_scale=...)``; keep
    ``do_classifier_free_guidance`` consistent with ``guidance_scale > 1``.
    """
    prompt_embeds, negative_prompt_embeds = pipe.encode_prompt(
        prompt,
        pipe._execution_device,
        num_images_per_prompt,
        do_classifier_free_guidance,
        negative_prompt,
    )
    adapter.to(pipe._execution_device)
    return apply_adapter(
        adapter,
        prompt_embeds,
        negative_prompt_embeds if do_classifier_free_guidance else None,
        adapter_on_uncond=adapter_on_uncond,
    )


class SURStableDiffusionPipeline(StableDiffusionPipeline):
    """``StableDiffusionPipeline`` whose prompt embeddings pass through a SUR-adapter.

    Embeddings given through ``prompt_embeds`` and ``negative_prompt_embeds`` go through the adapter too,
    so pass text-encoder outputs, not already adapted ones. ``save_pretrained`` of the pipeline skips the
    adapter (diffusers saves only components of known libraries); save it with
    :meth:`SURAdapter.save_pretrained`.

    Args:
        adapter: Trained adapter, or ``None`` for plain Stable Diffusion.
        adapter_on_uncond: Apply the adapter to the unconditional half of the guidance batch too, as the
            authors' pipeline does.
        Other arguments are those of ``StableDiffusionPipeline``; the safety checker is optional.
    """

    _optional_components: ClassVar[list[str]] = [*StableDiffusionPipeline._optional_components, "adapter"]

    def __init__(
        self,
        vae,
        text_encoder,
        tokenizer,
        unet,
        scheduler,
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker: bool = False,
        adapter: SURAdapter | None = None,
        adapter_on_uncond: bool = True,
    ):
        super().__init__(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            safety_checker=safety_checker,
            feature_extractor=feature_extractor,
            image_encoder=image_encoder,
            requires_safety_checker=requires_safety_checker,
        )
        if adapter is not None:
            adapter.eval()
        self.register_modules(adapter=adapter)
        self.register_to_config(adapter_on_uncond=adapter_on_uncond)

    def encode_prompt(
        self,
        prompt,
        device,
        num_images_per_prompt,
        do_classifier_free_guidance,
        negative_prompt=None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        lora_scale: float | None = None,
        clip_skip: int | None = None,
    ):
        """Encode prompts as ``StableDiffusionPipeline.encode_prompt`` does, then apply the adapter."""
        prompt_embeds, negative_prompt_embeds = super().encode_prompt(
            prompt,
            device,
            num_images_per_prompt,
            do_classifier_free_guidance,
            negative_prompt,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
            lora_scale=lora_scale,
            clip_skip=clip_skip,
        )
        if self.adapter is None:
            return prompt_embeds, negative_prompt_embeds
        if not do_classifier_free_guidance:
            return apply_adapter(self.adapter, prompt_embeds)[0], negative_prompt_embeds
        return apply_adapter(
            self.adapter,
            prompt_embeds,
            negative_prompt_embeds,
            adapter_on_uncond=self.config.adapter_on_uncond,
        )
