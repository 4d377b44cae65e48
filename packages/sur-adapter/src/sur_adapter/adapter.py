"""The SUR-adapter network that sits after a frozen text encoder.

Implements the adapter of "SUR-adapter: Enhancing Text-to-Image Pre-trained Diffusion Models with Large
Language Models" (Zhong, Huang et al., ACM MM 2023, arXiv 2305.05189). Given the text encoder's token
embeddings ``x`` of shape (B, L, D), the adapter computes

    h = TransformerEncoder(x)                      (depth post-norm layers)
    z = softmax(W_q h (W_k x)^T / sqrt(D)) x + x   (attention over the L tokens)
    a = MLP(z) + z
    o = fc(a)                                      (fc weight initialised to zero)
    y = beta * o + (1 - beta) * x

and returns ``(y, h, o)``. The module names match the authors' release so that their ``adapter.pt``
files load through :meth:`SURAdapter.load_official_state_dict`.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors.torch import load_file, save_file
from torch import nn

__all__ = [
    "ADAPTER_CONFIG_NAME",
    "ADAPTER_WEIGHTS_NAME",
    "AdapterAttention",
    "SURAdapter",
    "SURAdapterOutput",
    "make_llm_projection",
]

logger = logging.getLogger(__name__)

ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter.safetensors"
_FORMAT_TAG = "sur-adapter/1"


class SURAdapterOutput(NamedTuple):
    """Outputs of :class:`SURAdapter`, in the order ``(y, h, o)`` of the released code.

    Attributes:
        embeds: Adapted prompt embeddings ``y``, shape (B, L, D); they replace the text encoder output.
        transformer_states: Transformer-encoder output ``h``, shape (B, L, D); the LLM distillation target.
        fc_output: Output ``o`` of the zero-initialised output layer, shape (B, L, D).
    """

    embeds: torch.Tensor
    transformer_states: torch.Tensor
    fc_output: torch.Tensor


class AdapterAttention(nn.Module):
    """Token attention whose queries come from the transformer output and keys and values from the input.

    The values are the raw input tokens, so ``z = softmax(Q K^T / sqrt(D)) x + x``, followed by a residual
    two-layer MLP. With ``keep_value_layer=True`` an unused value projection is kept so that the
    authors' checkpoints, which contain it, load with ``strict=True``.
    """

    def __init__(self, embed_dim: int, *, keep_value_layer: bool = False) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.query_layer = nn.Linear(embed_dim, embed_dim)
        self.key_layer = nn.Linear(embed_dim, embed_dim)
        if keep_value_layer:
            # Unused in forward, as in the released code; kept only for strict checkpoint loading.
            self.value_layer = nn.Linear(embed_dim, embed_dim)
        self.output_layer = nn.Sequential(
            nn.Linear(embed_dim, embed_dim),
            nn.ReLU(),
            nn.Linear(embed_dim, embed_dim),
        )

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """Attend over tokens.

        Args:
            query: (B, L, D) transformer-encoder output.
            key: (B, L, D) adapter input.
            value: (B, L, D) adapter input, used as is.

        Returns:
            (B, L, D) tensor ``MLP(z) + z`` with ``z = softmax(Q K^T / sqrt(D)) value + value``.
        """
        queries = self.query_layer(query)
        keys = self.key_layer(key)
        scores = queries @ keys.transpose(-2, -1) / math.sqrt(self.embed_dim)
        weights = scores.softmax(dim=-1)
        mixed = weights @ value + value
        return self.output_layer(mixed) + mixed


class SURAdapter(nn.Module):
    """SUR-adapter applied to text-encoder embeddings of shape (B, L, D).

    Args:
        embed_dim: Width D of the text encoder's hidden states (768 for Stable Diffusion 1.x, 1024 for 2.x).
        llm_dim: Width of the LLM teacher vectors. When set, the adapter owns a trainable projection
            ``llm_projection`` from ``llm_dim`` to ``embed_dim`` that is saved with it. Leave it ``None``
            for an inference-only adapter or when the projection lives outside (official behaviour).
        depth: Number of transformer-encoder layers.
        nhead: Attention heads of each transformer-encoder layer.
        dim_feedforward: Hidden width of each transformer-encoder layer's feed-forward block.
        dropout: Dropout of the transformer-encoder layers (PyTorch's default, 0.1).
        adapter_weight: Mixing weight beta of ``y = beta * o + (1 - beta) * x``.
        zero_fc_bias: Initialise the output layer's bias to zero, so that ``y = (1 - beta) x`` at
            initialisation. The released code keeps PyTorch's uniform bias initialisation.
        keep_value_layer: Keep the unused value projection of the attention block.
        legacy_batch_first_bug: Build the transformer-encoder layers with ``batch_first=False`` while
            feeding (B, L, D) tensors, as the released code does. Self-attention then mixes the samples of a
            batch at each token position instead of the tokens of each sample.
        projection_seed: Seed of the generator that initialises ``llm_projection``.
    """

    def __init__(
        self,
        embed_dim: int,
        *,
        llm_dim: int | None = None,
        depth: int = 2,
        nhead: int = 8,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        adapter_weight: float = 0.1,
        zero_fc_bias: bool = False,
        keep_value_layer: bool = False,
        legacy_batch_first_bug: bool = False,
        projection_seed: int = 0,
    ) -> None:
        super().__init__()
        _check_arguments(embed_dim, llm_dim, depth, nhead, dim_feedforward, dropout, adapter_weight)
        self.config: dict[str, Any] = {
            "embed_dim": embed_dim,
            "llm_dim": llm_dim,
            "depth": depth,
            "nhead": nhead,
            "dim_feedforward": dim_feedforward,
            "dropout": dropout,
            "adapter_weight": adapter_weight,
            "zero_fc_bias": zero_fc_bias,
            "keep_value_layer": keep_value_layer,
            "legacy_batch_first_bug": legacy_batch_first_bug,
            "projection_seed": projection_seed,
        }
        self.embed_dim = embed_dim
        self.adapter_weight = adapter_weight

        layer = nn.TransformerEncoderLayer(
            d_model=embed_dim,
            nhead=nhead,
            dim_feedforward=dim_feedforward,
            dropout=dropout,
            batch_first=not legacy_batch_first_bug,
        )
        self.transformer_encoder = nn.TransformerEncoder(layer, num_layers=depth, enable_nested_tensor=False)
        self.attention = AdapterAttention(embed_dim, keep_value_layer=keep_value_layer)
        self.fc = nn.Linear(embed_dim, embed_dim)
        nn.init.zeros_(self.fc.weight)
        if zero_fc_bias:
            nn.init.zeros_(self.fc.bias)

        self.llm_projection: nn.Linear | None = None
        if llm_dim is not None:
            self.llm_projection = make_llm_projection(llm_dim, embed_dim, seed=projection_seed)

    @property
    def dtype(self) -> torch.dtype:
        """Parameter dtype; diffusers pipelines read it when moving components."""
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        """Parameter device; diffusers pipelines read it when moving components."""
        return next(self.parameters()).device

    def forward(self, x: torch.Tensor) -> SURAdapterOutput:
        """Adapt text-encoder embeddings.

        Args:
            x: (B, L, D) text-encoder hidden states (for Stable Diffusion, ``CLIPTextModel(ids)[0]``).

        Returns:
            :class:`SURAdapterOutput` with ``embeds`` ``y``, ``transformer_states`` ``h`` and
            ``fc_output`` ``o``, each (B, L, D).
        """
        if x.dim() != 3 or x.shape[-1] != self.embed_dim:
            raise ValueError(
                f"SURAdapter expects embeddings of shape (batch, tokens, {self.embed_dim}), got "
                f"{tuple(x.shape)}; build the adapter with embed_dim equal to the text encoder's hidden size."
            )
        transformer_states = self.transformer_encoder(x)
        attended = self.attention(query=transformer_states, key=x, value=x)
        fc_output = self.fc(attended)
        embeds = self.adapter_weight * fc_output + (1.0 - self.adapter_weight) * x
        return SURAdapterOutput(embeds, transformer_states, fc_output)

    def project_llm(self, vectors: torch.Tensor) -> torch.Tensor:
        """Project LLM teacher vectors of shape (B, llm_dim) to (B, 1, D) with ``llm_projection``."""
        if self.llm_projection is None:
            raise ValueError(
                "This adapter has no LLM projection; build it with llm_dim set to the teacher's vector size."
            )
        return self.llm_projection(vectors).unsqueeze(1)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``adapter_config.json`` and ``adapter.safetensors`` (the adapter alone) into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {name: tensor.detach().contiguous().cpu() for name, tensor in self.state_dict().items()}
        weights_path = directory / ADAPTER_WEIGHTS_NAME
        config_path = directory / ADAPTER_CONFIG_NAME
        temporary_weights = weights_path.with_suffix(".tmp")
        save_file(state, str(temporary_weights), metadata={"format": _FORMAT_TAG})
        temporary_weights.replace(weights_path)
        temporary_config = config_path.with_suffix(".tmp")
        temporary_config.write_text(json.dumps({"format": _FORMAT_TAG, **self.config}, indent=2) + "\n")
        temporary_config.replace(config_path)
        logger.info("Saved adapter to %s", directory)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, **overrides: Any) -> SURAdapter:
        """Load an adapter written by :meth:`save_pretrained`.

        Args:
            directory: Folder that contains ``adapter_config.json`` and ``adapter.safetensors``.
            **overrides: Constructor arguments that replace the saved ones, for example ``adapter_weight``.
        """
        directory = Path(directory)
        config_path = directory / ADAPTER_CONFIG_NAME
        weights_path = directory / ADAPTER_WEIGHTS_NAME
        for path in (config_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"Adapter file not found: {path}. Pass the folder written by SURAdapter.save_pretrained "
                    "(or by `sur-adapter train`, under its output folder's `adapter/`)."
                )
        try:
            config = json.loads(config_path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"Invalid adapter config {config_path}: {error}") from error
        if config.pop("format", None) != _FORMAT_TAG:
            raise ValueError(
                f"{config_path} was not written by SURAdapter.save_pretrained (format tag missing)."
            )
        config.update(overrides)
        embed_dim = config.pop("embed_dim")
        adapter = cls(embed_dim, **config)
        adapter.load_state_dict(load_file(str(weights_path)))
        adapter.eval()
        return adapter

    def load_official_state_dict(self, state_dict: dict[str, torch.Tensor], *, strict: bool = True) -> None:
        """Load a state dict saved by the authors' ``SUR_adapter_train.py`` (``adapter.pt``).

        Their module also registers the template ``encoder_layer`` that ``nn.TransformerEncoder`` copies,
        which contains unused weights, so those keys are dropped. Their ``attention.value_layer`` is dropped
        too unless this adapter was built with ``keep_value_layer=True``.
        """
        own_keys = set(self.state_dict())
        converted = {}
        for name, tensor in state_dict.items():
            if name.startswith("encoder_layer."):
                continue
            if name.startswith("attention.value_layer.") and name not in own_keys:
                continue
            converted[name] = tensor
        if self.llm_projection is not None:
            # The released checkpoints never contain the projection, so keep the current one.
            for name, tensor in self.llm_projection.state_dict().items():
                converted.setdefault(f"llm_projection.{name}", tensor)
        missing, unexpected = self.load_state_dict(converted, strict=False)
        if strict and (missing or unexpected):
            raise ValueError(
                "The official adapter state dict does not match this adapter: "
                f"missing keys {sorted(missing)}, unexpected keys {sorted(unexpected)}. Check embed_dim and "
                "depth against the checkpoint."
            )


def make_llm_projection(llm_dim: int, embed_dim: int, *, seed: int | None) -> nn.Linear:
    """Build the ``Linear(llm_dim, embed_dim)`` teacher projection with PyTorch's default init bounds.

    With ``seed=None`` the global random generator is used, which reproduces the unseeded projection of
    the released code.
    """
    projection = nn.Linear(llm_dim, embed_dim)
    generator = None
    if seed is not None:
        generator = torch.Generator().manual_seed(seed)
    bound = 1.0 / math.sqrt(llm_dim)
    with torch.no_grad():
        projection.weight.uniform_(-bound, bound, generator=generator)
        projection.bias.uniform_(-bound, bound, generator=generator)
    return projection


def _check_arguments(
    embed_dim: int,
    llm_dim: int | None,
    depth: int,
    nhead: int,
    dim_feedforward: int,
    dropout: float,
    adapter_weight: float,
) -> None:
    for name, value in (("embed_dim", embed_dim), ("depth", depth), ("nhead", nhead)):
        if value < 1:
            raise ValueError(f"SURAdapter {name} must be a positive integer, got {value}.")
    if dim_feedforward < 1:
        raise ValueError(f"SURAdapter dim_feedforward must be a positive integer, got {dim_feedforward}.")
    if llm_dim is not None and llm_dim < 1:
        raise ValueError(f"SURAdapter llm_dim must be a positive integer or None, got {llm_dim}.")
    if embed_dim % nhead != 0:
        raise ValueError(
            f"SURAdapter embed_dim ({embed_dim}) must be divisible by nhead ({nhead}); choose nhead among "
            f"{[n for n in range(1, min(embed_dim, 64) + 1) if embed_dim % n == 0]}."
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"SURAdapter dropout must be in [0, 1), got {dropout}.")
    if not 0.0 <= adapter_weight <= 1.0:
        raise ValueError(f"SURAdapter adapter_weight (beta) must be in [0, 1], got {adapter_weight}.")
