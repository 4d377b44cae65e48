"""Vision-language wrapper around a frozen MoE LLM: CLIP vision tower -> projector -> image placeholders.

Images enter as ``pixel_values`` beside ``input_ids``. Each image occupies ``num_image_tokens`` consecutive
placeholder ids in ``input_ids``. The embeddings at those positions are replaced by the projected patch
features of the CLIP vision tower (CLS dropped), in the order the images appear in the batch. The placeholder id may lie
outside the LLM vocabulary: it is never looked up in the embedding table, so no pretrained tensor is
resized or changed.

Checkpoints are "base model + delta": ``save_pretrained`` writes the ids or paths of the base LLM and
vision tower, the extension plan and a safetensors file with the tensors that differ from the base.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from moextend.extend import (
    ExtensionPlan,
    extend_model,
    extended_blocks,
    find_moe_layers,
    record_router_logits,
)
from moextend.losses import answer_cross_entropy, load_balancing_loss

__all__ = ["DELTA_FILE", "MODEL_CONFIG_FILE", "MoExtendModel", "MoExtendOutput", "build_projector"]

logger = logging.getLogger(__name__)

MODEL_CONFIG_FILE = "moextend_config.json"
DELTA_FILE = "delta.safetensors"


def build_projector(vision_size: int, text_size: int) -> nn.Sequential:
    """LLaVA's ``mlp2x_gelu`` projector: Linear(vision, text) -> GELU -> Linear(text, text), with biases."""
    return nn.Sequential(nn.Linear(vision_size, text_size), nn.GELU(), nn.Linear(text_size, text_size))


@dataclasses.dataclass
class MoExtendOutput:
    """Forward result: total loss, its parts, logits ``(B, S, V)`` and router logits per MoE layer."""

    loss: torch.Tensor | None
    ce_loss: torch.Tensor | None
    aux_loss: torch.Tensor | None
    logits: torch.Tensor
    router_logits: dict[int, torch.Tensor]


class MoExtendModel(nn.Module):
    """A causal MoE LLM with a frozen CLIP vision tower and a trainable projector.

    Args:
        language_model: a transformers causal LM of a supported MoE family.
        vision_tower: a ``CLIPVisionModel``; it is frozen and run without gradients.
        image_token_id: id of the image placeholder in ``input_ids``.
        select_layer: hidden layer of the vision tower whose patch features are used (-2 as in LLaVA-1.5;
            the official MoExtend code uses -1).
        router_aux_loss_coef: weight of the load-balancing term (0.001).
        base_model: id or path the LLM was loaded from, written into checkpoints.
        vision_model: id or path the vision tower was loaded from.
    """

    def __init__(
        self,
        language_model: Any,
        vision_tower: Any,
        *,
        image_token_id: int,
        select_layer: int = -2,
        router_aux_loss_coef: float = 0.001,
        base_model: str | None = None,
        vision_model: str | None = None,
    ) -> None:
        super().__init__()
        self.language_model = language_model
        self.vision_tower = vision_tower
        vision_config = vision_tower.config
        self.mm_projector = build_projector(vision_config.hidden_size, language_model.config.hidden_size)
        self.image_token_id = int(image_token_id)
        num_layers = vision_config.num_hidden_layers
        if not -num_layers - 1 <= select_layer <= num_layers:
            raise ValueError(
                f"select_layer={select_layer} is outside the {num_layers + 1} hidden states of the vision tower"
            )
        self.select_layer = select_layer
        self.router_aux_loss_coef = router_aux_loss_coef
        self.base_model = base_model or getattr(language_model, "name_or_path", None) or None
        self.vision_model = vision_model or getattr(vision_tower, "name_or_path", None) or None
        self.plan: ExtensionPlan | None = None
        self.calibration_hidden = 16
        # Names of frozen-by-default tensors that were changed on purpose (probed routers) and belong
        # in the delta checkpoint.
        self.extra_delta_names: set[str] = set()
        self.vision_tower.requires_grad_(False)
        self.vision_tower.eval()

    @property
    def num_image_tokens(self) -> int:
        """Placeholder positions per image: the number of patches of the vision tower."""
        config = self.vision_tower.config
        return (config.image_size // config.patch_size) ** 2

    @property
    def top_k(self) -> int:
        """Experts per token of the language model."""
        return int(self.language_model.config.num_experts_per_tok)

    def train(self, mode: bool = True) -> MoExtendModel:
        super().train(mode)
        self.vision_tower.eval()
        return self

    # Extension -------------------------------------------------------------------------------------------

    def extend(self, plan: ExtensionPlan, *, calibration_hidden: int = 16, initialize: bool = True) -> None:
        """Swap extended MoE blocks into the layers of ``plan`` (see :func:`moextend.extend.extend_model`)."""
        if self.plan is not None:
            raise ValueError("this model is already extended; build a new one from the base to re-extend")
        extend_model(self.language_model, plan, calibration_hidden=calibration_hidden, initialize=initialize)
        self.plan = plan
        self.calibration_hidden = calibration_hidden

    def router_parameter_names(self) -> list[str]:
        """State-dict names of the pretrained router weights of every MoE layer."""
        names: list[str] = []
        for layer in find_moe_layers(self.language_model):
            weight = layer.block.gate.weight
            names.extend(name for name, param in self.named_parameters() if param is weight)
        return names

    def new_parameter_names(self) -> list[str]:
        """State-dict names of the new experts, new router rows and calibration MLPs."""
        new_ids = {
            id(p) for block in extended_blocks(self.language_model).values() for p in block.new_parameters()
        }
        return [name for name, param in self.named_parameters() if id(param) in new_ids]

    def projector_parameter_names(self) -> list[str]:
        """State-dict names of the projector parameters."""
        return [f"mm_projector.{name}" for name, _ in self.mm_projector.named_parameters()]

    def set_trainable(self, names: Iterable[str]) -> int:
        """Freeze every parameter except ``names``; return the number of trainable scalars."""
        selected = set(names)
        unknown = selected - {name for name, _ in self.named_parameters()}
        if unknown:
            raise ValueError(f"unknown parameter names: {sorted(unknown)[:5]}")
        total = 0
        for name, param in self.named_parameters():
            param.requires_grad_(name in selected)
            total += param.numel() if name in selected else 0
        return total

    # Forward ---------------------------------------------------------------------------------------------

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Project the patch features of images ``(N, 3, h, w)`` to ``(N, P, hidden_size)``."""
        with torch.no_grad():
            outputs = self.vision_tower(pixel_values=pixel_values, output_hidden_states=True)
            features = outputs.hidden_states[self.select_layer][:, 1:].detach()
        projector_dtype = self.mm_projector[0].weight.dtype
        return self.mm_projector(features.to(projector_dtype))

    def embed_inputs(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None) -> torch.Tensor:
        """Embed ``input_ids (B, S)`` and write image features into the placeholder positions.

        Raises:
            ValueError: the number of placeholders differs from ``images * num_image_tokens``.
        """
        placeholder = input_ids == self.image_token_id
        embedding = self.language_model.get_input_embeddings()
        embeds = embedding(input_ids.masked_fill(placeholder, 0))
        num_placeholders = int(placeholder.sum())
        num_images = 0 if pixel_values is None else int(pixel_values.shape[0])
        expected = num_images * self.num_image_tokens
        if num_placeholders != expected:
            raise ValueError(
                f"input_ids contain {num_placeholders} image placeholder tokens (id {self.image_token_id}) "
                f"but {num_images} images need {expected} ({self.num_image_tokens} each); expand each "
                "image placeholder with the data collator"
            )
        if pixel_values is None or num_images == 0:
            return embeds
        features = self.encode_images(pixel_values).to(embeds.dtype)
        return embeds.masked_scatter(placeholder.unsqueeze(-1).expand_as(embeds), features)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> MoExtendOutput:
        """Run the LLM on text and images.

        Args:
            input_ids: ``(B, S)`` with image placeholders already expanded.
            attention_mask: ``(B, S)``; ``None`` means every position is real.
            pixel_values: ``(N, 3, h, w)``, one per image in batch order.
            labels: ``(B, S)`` with ``-100`` on positions that carry no loss.
        """
        inputs_embeds = self.embed_inputs(input_ids, pixel_values)
        with record_router_logits(self.language_model) as router_logits:
            outputs = self.language_model(
                inputs_embeds=inputs_embeds,
                attention_mask=attention_mask,
                use_cache=False,
                output_router_logits=False,
            )
        router_logits = dict(sorted(router_logits.items()))
        ce_loss = aux_loss = loss = None
        if labels is not None:
            ce_loss = answer_cross_entropy(outputs.logits, labels)
            aux_loss = load_balancing_loss(router_logits, top_k=self.top_k, attention_mask=attention_mask)
            loss = ce_loss + self.router_aux_loss_coef * aux_loss
        return MoExtendOutput(loss, ce_loss, aux_loss, outputs.logits, router_logits)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        *,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **generate_kwargs: Any,
    ) -> torch.Tensor:
        """Generate a continuation; returns only the new token ids ``(B, new)``."""
        inputs_embeds = self.embed_inputs(input_ids, pixel_values)
        if attention_mask is None:
            attention_mask = torch.ones(input_ids.shape, dtype=torch.long, device=input_ids.device)
        return self.language_model.generate(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, **generate_kwargs
        )

    # Checkpoints -----------------------------------------------------------------------------------------

    def delta_names(self) -> list[str]:
        """Names of the tensors a checkpoint stores: the projector, the new parameters and any pretrained
        tensor that was changed on purpose (``extra_delta_names``)."""
        names = (
            set(self.projector_parameter_names()) | set(self.new_parameter_names()) | self.extra_delta_names
        )
        return sorted(names)

    def delta_state_dict(self) -> dict[str, torch.Tensor]:
        """Return the delta tensors, detached and contiguous."""
        params = dict(self.named_parameters())
        return {name: params[name].detach().contiguous() for name in self.delta_names()}

    def config_dict(self) -> dict[str, Any]:
        """Return what :meth:`from_pretrained` needs besides the delta tensors."""
        return {
            "format": "moextend-delta",
            "version": 1,
            "base_model": self.base_model,
            "vision_model": self.vision_model,
            "image_token_id": self.image_token_id,
            "select_layer": self.select_layer,
            "router_aux_loss_coef": self.router_aux_loss_coef,
            "calibration_hidden": self.calibration_hidden,
            "plan": None if self.plan is None else self.plan.to_dict(),
            "extra_delta_names": sorted(self.extra_delta_names),
        }

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``moextend_config.json`` and ``delta.safetensors`` to ``directory``.

        Raises:
            ValueError: the base LLM or vision tower has no id or path to reload it from.
        """
        if not self.base_model or not self.vision_model:
            raise ValueError(
                "cannot save a delta checkpoint without the base ids: load the LLM and vision tower with "
                "from_pretrained, or pass base_model= and vision_model= to MoExtendModel"
            )
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        temporary = directory / (DELTA_FILE + ".tmp")
        save_file(self.delta_state_dict(), str(temporary), metadata={"format": "pt"})
        temporary.replace(directory / DELTA_FILE)
        config_temporary = directory / (MODEL_CONFIG_FILE + ".tmp")
        config_temporary.write_text(json.dumps(self.config_dict(), indent=2))
        config_temporary.replace(directory / MODEL_CONFIG_FILE)
        return directory

    def load_delta(self, state: dict[str, torch.Tensor]) -> None:
        """Copy delta tensors into this model.

        Raises:
            ValueError: a name is unknown or a shape differs.
        """
        params = dict(self.named_parameters())
        unknown = sorted(set(state) - set(params))
        if unknown:
            raise ValueError(f"delta checkpoint has tensors this model lacks: {unknown[:5]}")
        with torch.no_grad():
            for name, tensor in state.items():
                if params[name].shape != tensor.shape:
                    raise ValueError(
                        f"shape mismatch for {name}: checkpoint {tuple(tensor.shape)}, "
                        f"model {tuple(params[name].shape)}"
                    )
                params[name].copy_(tensor)

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        *,
        base_model: str | None = None,
        vision_model: str | None = None,
        torch_dtype: torch.dtype | None = None,
    ) -> MoExtendModel:
        """Load the base LLM and vision tower, apply the saved extension and load the delta.

        Args:
            directory: a folder written by :meth:`save_pretrained`.
            base_model: override of the base LLM id or path stored in the checkpoint.
            vision_model: override of the vision tower id or path.
            torch_dtype: dtype of the loaded weights.
        """
        from transformers import AutoModelForCausalLM, CLIPVisionModel

        directory = Path(directory)
        config_path = directory / MODEL_CONFIG_FILE
        if not config_path.is_file():
            raise FileNotFoundError(
                f"{config_path} not found; pass a folder written by MoExtendModel.save_pretrained"
            )
        config = json.loads(config_path.read_text())
        if config.get("format") != "moextend-delta":
            raise ValueError(
                f"{config_path} is not a MoExtend delta checkpoint (format={config.get('format')!r})"
            )
        base = base_model or config["base_model"]
        vision = vision_model or config["vision_model"]
        dtype_kwargs: dict[str, Any] = {} if torch_dtype is None else {"dtype": torch_dtype}
        language_model = AutoModelForCausalLM.from_pretrained(base, **dtype_kwargs)
        vision_tower = CLIPVisionModel.from_pretrained(vision, **dtype_kwargs)
        model = cls(
            language_model,
            vision_tower,
            image_token_id=config["image_token_id"],
            select_layer=config["select_layer"],
            router_aux_loss_coef=config["router_aux_loss_coef"],
            base_model=base,
            vision_model=vision,
        )
        if torch_dtype is not None:
            model.mm_projector.to(torch_dtype)
        if config["plan"] is not None:
            model.extend(
                ExtensionPlan.from_dict(config["plan"]),
                calibration_hidden=config["calibration_hidden"],
                initialize=False,
            )
        model.extra_delta_names = set(config.get("extra_delta_names", []))
        model.load_delta(load_file(str(directory / DELTA_FILE)))
        logger.info("loaded %s on top of %s", directory, base)
        return model
