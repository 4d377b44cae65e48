"""Tiny, randomly initialised stand-ins for the real checkpoints, used by tests, smoke runs and the
CPU-sized reproduction. Nothing here downloads anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from transformers import CLIPImageProcessor, CLIPVisionConfig, PreTrainedTokenizerFast

__all__ = [
    "IMAGE_TOKEN",
    "MOE_FAMILIES",
    "build_tokenizer",
    "save_tiny_base",
    "tiny_clip_config",
    "tiny_corpus",
    "tiny_image_processor",
    "tiny_moe_config",
    "tiny_moe_model",
    "write_tiny_llava_data",
]

IMAGE_TOKEN = "<image>"
MOE_FAMILIES = ("mixtral", "qwen3_moe", "olmoe")


def tiny_moe_config(
    family: str = "mixtral",
    *,
    vocab_size: int = 300,
    hidden_size: int = 32,
    intermediate_size: int = 64,
    num_hidden_layers: int = 4,
    num_experts: int = 4,
    top_k: int = 2,
    norm_topk_prob: bool = True,
):
    """Return a small config of a supported MoE family (``mixtral``, ``qwen3_moe`` or ``olmoe``)."""
    common: dict[str, Any] = {
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "num_experts_per_tok": top_k,
        "max_position_embeddings": 512,
        "router_aux_loss_coef": 0.001,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
    }
    if family == "mixtral":
        from transformers import MixtralConfig

        return MixtralConfig(num_local_experts=num_experts, **common)
    if family == "qwen3_moe":
        from transformers import Qwen3MoeConfig

        return Qwen3MoeConfig(
            num_experts=num_experts,
            moe_intermediate_size=intermediate_size,
            norm_topk_prob=norm_topk_prob,
            **{"head_dim": hidden_size // 4, **common},
        )
    if family == "olmoe":
        from transformers import OlmoeConfig

        return OlmoeConfig(num_experts=num_experts, norm_topk_prob=norm_topk_prob, **common)
    raise ValueError(f"unknown MoE family {family!r}; valid families: {', '.join(MOE_FAMILIES)}")


def tiny_moe_model(family: str = "mixtral", *, seed: int = 0, **overrides):
    """Build a randomly initialised tiny causal LM of ``family`` in eval mode."""
    from transformers import AutoModelForCausalLM

    config = tiny_moe_config(family, **overrides)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config).eval()


def tiny_clip_config(*, hidden_size: int = 32, image_size: int = 32, patch_size: int = 8) -> CLIPVisionConfig:
    """Return a two-layer CLIP vision config (``(image_size / patch_size)^2`` patch tokens)."""
    return CLIPVisionConfig(
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch_size,
    )


def tiny_image_processor(image_size: int = 32) -> CLIPImageProcessor:
    """Return a CLIP image processor that resizes and centre-crops to ``image_size``."""
    return CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )


def build_tokenizer(corpus: Iterable[str], *, vocab_size: int = 300) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``corpus`` with ``<pad>``, ``<s>``, ``</s>``, ``<unk>`` (ids 0-3)
    and the image placeholder ``<image>`` as special tokens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    special = ["<pad>", "<s>", "</s>", "<unk>", IMAGE_TOKEN]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(corpus), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        additional_special_tokens=[IMAGE_TOKEN],
    )


def save_tiny_base(
    directory: str | Path,
    *,
    corpus: Iterable[str],
    family: str = "mixtral",
    vocab_size: int = 300,
    hidden_size: int = 32,
    intermediate_size: int = 64,
    num_hidden_layers: int = 4,
    num_experts: int = 4,
    vision_hidden_size: int = 32,
    image_size: int = 32,
    patch_size: int = 8,
    seed: int = 0,
    language_model: Any = None,
    tokenizer: PreTrainedTokenizerFast | None = None,
) -> tuple[Path, Path]:
    """Write a tiny base LLM with its tokenizer and a tiny CLIP vision tower with its image processor.

    Args:
        directory: parent folder; ``llm/`` and ``vision/`` are created inside.
        corpus: text the tokenizer is trained on (ignored when ``tokenizer`` is given).
        language_model: a model to save instead of a new random one (for example one pre-trained in
            process); its vocabulary must match the tokenizer.
        tokenizer: the tokenizer to save with ``language_model``.

    Returns:
        ``(llm_dir, vision_dir)``, loadable with ``from_pretrained``.
    """
    from transformers import CLIPVisionModel

    directory = Path(directory)
    llm_dir, vision_dir = directory / "llm", directory / "vision"
    if tokenizer is None:
        tokenizer = build_tokenizer(corpus, vocab_size=vocab_size)
    if language_model is None:
        language_model = tiny_moe_model(
            family,
            seed=seed,
            vocab_size=len(tokenizer),
            hidden_size=hidden_size,
            intermediate_size=intermediate_size,
            num_hidden_layers=num_hidden_layers,
            num_experts=num_experts,
        )
    language_model.save_pretrained(llm_dir)
    tokenizer.save_pretrained(llm_dir)
    torch.manual_seed(seed + 1)
    vision = CLIPVisionModel(
        tiny_clip_config(hidden_size=vision_hidden_size, image_size=image_size, patch_size=patch_size)
    )
    vision.save_pretrained(vision_dir)
    tiny_image_processor(image_size).save_pretrained(vision_dir)
    return llm_dir, vision_dir


_TINY_COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}
_TINY_SHAPES = ("square", "circle")


def tiny_corpus() -> list[str]:
    """Return sentences that cover the vocabulary of :func:`write_tiny_llava_data` and the chat markers."""
    sentences = [f"a {color} {shape}" for color in _TINY_COLORS for shape in _TINY_SHAPES]
    return [
        "[INST]Describe the image.[/INST]",
        "[INST]What colour is the shape?[/INST]",
        " ".join(sentences),
        *sentences,
    ]


def write_tiny_llava_data(folder: str | Path, *, count: int = 32, image_size: int = 32) -> Path:
    """Draw coloured squares and circles as PNG files and write a LLaVA-format ``data.json`` beside them.

    Returns:
        The path of ``data.json``.
    """
    from PIL import Image, ImageDraw

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    colors = list(_TINY_COLORS)
    records = []
    for index in range(count):
        color = colors[index % len(colors)]
        shape = _TINY_SHAPES[(index // len(colors)) % len(_TINY_SHAPES)]
        image = Image.new("RGB", (image_size, image_size), (0, 0, 0))
        draw = ImageDraw.Draw(image)
        box = (6, 6, image_size - 6, image_size - 6)
        if shape == "square":
            draw.rectangle(box, fill=_TINY_COLORS[color])
        else:
            draw.ellipse(box, fill=_TINY_COLORS[color])
        name = f"images/{index:04d}.png"
        image.save(folder / name)
        question = "Describe the image." if index % 2 == 0 else "What colour is the shape?"
        answer = f"a {color} {shape}" if index % 2 == 0 else color
        records.append(
            {
                "id": f"tiny-{index}",
                "image": name,
                "conversations": [
                    {"from": "human", "value": f"<image>\n{question}"},
                    {"from": "gpt", "value": answer},
                ],
            }
        )
    path = folder / "data.json"
    path.write_text(json.dumps(records, indent=1))
    return path
