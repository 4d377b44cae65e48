"""Model backbones behind one interface: generate a response and score candidate continuations.

Two kinds of Hugging Face model are supported: a causal language model (text games only) and a
LLaVA-style vision-language model (``LlavaForConditionalGeneration``), whose prompt carries the image as
a run of image tokens. Tiny randomly initialised versions of both are built in code for tests and the
offline demo; :func:`load_backbone` loads real checkpoints with ``from_pretrained``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from PIL import Image

__all__ = [
    "BACKBONE_FILE",
    "CausalLMBackbone",
    "HumorModel",
    "build_tiny_backbone",
    "load_backbone",
]

logger = logging.getLogger(__name__)

BACKBONE_FILE = "clot_backbone.json"
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IGNORE_INDEX = -100


@runtime_checkable
class HumorModel(Protocol):
    """Model interface that self-refinement, inference and evaluation use."""

    def generate(
        self,
        prompt: str,
        image: str | None = None,
        *,
        max_new_tokens: int = 32,
        do_sample: bool = True,
        temperature: float = 1.0,
        top_p: float = 0.9,
    ) -> str:
        """Return one response to ``prompt`` (and ``image``)."""
        ...

    def score_continuations(
        self, prompt: str, image: str | None, continuations: Sequence[str]
    ) -> list[float]:
        """Return the summed log-likelihood of each continuation after the prompt."""
        ...


def _resize_normalize(image_size: int, mean: Sequence[float], std: Sequence[float]) -> Callable:
    mean_tensor = torch.tensor(mean).view(3, 1, 1)
    std_tensor = torch.tensor(std).view(3, 1, 1)

    def transform(image: Image.Image) -> torch.Tensor:
        resized = image.convert("RGB").resize((image_size, image_size), Image.Resampling.BICUBIC)
        array = torch.frombuffer(bytearray(resized.tobytes()), dtype=torch.uint8)
        tensor = array.view(image_size, image_size, 3).permute(2, 0, 1).float() / 255.0
        return (tensor - mean_tensor) / std_tensor

    return transform


class CausalLMBackbone:
    """A causal LM or LLaVA-style model with its tokenizer, prompt format and image preprocessing.

    Args:
        model: ``PreTrainedModel`` (or a peft model around one).
        tokenizer: Its tokenizer; it needs a pad token.
        image_transform: Maps a PIL image to a ``(3, H, W)`` tensor. ``None`` for text-only models.
        image_token: Placeholder token that the model expands into image features.
        num_image_tokens: How many copies of the placeholder one image occupies (LLaVA's
            ``image_seq_length``).
        max_length: Maximum tokens of prompt plus target; longer examples lose the end of the target.
        settings: Extra values written to ``clot_backbone.json`` by :meth:`save_pretrained`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        *,
        image_transform: Callable[[Image.Image], torch.Tensor] | None = None,
        image_token: str | None = None,
        num_image_tokens: int = 0,
        max_length: int = 512,
        settings: dict | None = None,
    ) -> None:
        if tokenizer.pad_token_id is None:
            raise ValueError(
                "the tokenizer has no pad token; set tokenizer.pad_token before building a backbone."
            )
        self.model = model
        self.tokenizer = tokenizer
        self.image_transform = image_transform
        self.image_token = image_token
        self.image_token_id = tokenizer.convert_tokens_to_ids(image_token) if image_token else None
        self.num_image_tokens = num_image_tokens
        self.max_length = max_length
        self.settings = dict(settings or {})
        self.use_chat_template = bool(getattr(tokenizer, "chat_template", None))

    # ----------------------------------------------------------------------------------------------
    # Encoding

    @property
    def supports_images(self) -> bool:
        return (
            self.image_transform is not None and self.image_token_id is not None and self.num_image_tokens > 0
        )

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _user_text(self, prompt: str, has_image: bool) -> str:
        content = f"{self.image_token}\n{prompt}" if has_image else prompt
        if self.use_chat_template:
            messages = [{"role": "user", "content": content}]
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return f"USER: {content}\nASSISTANT:"

    def prompt_ids(self, prompt: str, image: str | None) -> list[int]:
        """Tokenize the user turn, expanding the image placeholder into ``num_image_tokens`` tokens."""
        if image is not None and not self.supports_images:
            raise ValueError(
                f"this backbone is text-only and cannot take image {image!r}; use a LLaVA-style model."
            )
        ids = self.tokenizer(self._user_text(prompt, image is not None), add_special_tokens=False)[
            "input_ids"
        ]
        if self.tokenizer.bos_token_id is not None and not self.use_chat_template:
            ids = [self.tokenizer.bos_token_id, *ids]
        if image is None:
            return ids
        expanded: list[int] = []
        for token in ids:
            expanded.extend([token] * self.num_image_tokens if token == self.image_token_id else [token])
        return expanded

    def target_ids(self, target: str) -> list[int]:
        separator = "" if self.use_chat_template else " "
        ids = self.tokenizer(separator + target, add_special_tokens=False)["input_ids"]
        if self.tokenizer.eos_token_id is not None:
            ids.append(self.tokenizer.eos_token_id)
        return ids

    def pixel_values(self, image: str | None) -> torch.Tensor | None:
        if image is None:
            return None
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"image not found: {path}.")
        with Image.open(path) as opened:
            return self.image_transform(opened.convert("RGB"))

    def encode_example(self, prompt: str, target: str, image: str | None) -> dict:
        """Encode one training example; labels are ``-100`` on the prompt."""
        prompt_ids = self.prompt_ids(prompt, image)
        target_ids = self.target_ids(target)
        input_ids = (prompt_ids + target_ids)[: self.max_length]
        labels = ([IGNORE_INDEX] * len(prompt_ids) + target_ids)[: self.max_length]
        if all(label == IGNORE_INDEX for label in labels):
            raise ValueError(
                f"the prompt alone has {len(prompt_ids)} tokens, over max_length={self.max_length}; "
                "raise max_length."
            )
        return {"input_ids": input_ids, "labels": labels, "pixel_values": self.pixel_values(image)}

    def collate(self, examples: Sequence[dict]) -> dict[str, torch.Tensor]:
        """Right-pad a list of encoded examples into a batch."""
        length = max(len(example["input_ids"]) for example in examples)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(examples), length), pad, dtype=torch.long)
        labels = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(examples), length), dtype=torch.long)
        for row, example in enumerate(examples):
            size = len(example["input_ids"])
            input_ids[row, :size] = torch.tensor(example["input_ids"])
            labels[row, :size] = torch.tensor(example["labels"])
            attention_mask[row, :size] = 1
        batch = {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}
        images = [example["pixel_values"] for example in examples if example["pixel_values"] is not None]
        if images:
            batch["pixel_values"] = torch.stack(images)
        return batch

    # ----------------------------------------------------------------------------------------------
    # Inference

    @torch.no_grad()
    def generate(
        self,
        prompt: str,
        image: str | None = None,
        *,
        max_new_tokens: int = 32,
        do_sample: bool = True,
        temperature: float = 1.0,
        top_p: float = 0.9,
    ) -> str:
        """Generate one response; sampling draws from torch's global generator, so seed it first."""
        ids = torch.tensor([self.prompt_ids(prompt, image)], device=self.device)
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        pixel_values = self.pixel_values(image)
        if pixel_values is not None:
            inputs["pixel_values"] = pixel_values.unsqueeze(0).to(self.device, dtype=self.model.dtype)
        sampling = (
            {"do_sample": True, "temperature": temperature, "top_p": top_p}
            if do_sample
            else {"do_sample": False}
        )
        was_training = self.model.training
        self.model.eval()
        output = self.model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
            **sampling,
        )
        self.model.train(was_training)
        return self.tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True).strip()

    @torch.no_grad()
    def score_continuations(
        self, prompt: str, image: str | None, continuations: Sequence[str]
    ) -> list[float]:
        """Return the summed log-probability of each continuation (without EOS) after the prompt."""
        if not continuations:
            return []
        prompt_ids = self.prompt_ids(prompt, image)
        pixel_values = self.pixel_values(image)
        separator = "" if self.use_chat_template else " "
        examples = []
        for text in continuations:
            target = self.tokenizer(separator + text, add_special_tokens=False)["input_ids"]
            if not target:
                raise ValueError(f"continuation {text!r} tokenizes to nothing.")
            examples.append(
                {
                    "input_ids": prompt_ids + target,
                    "labels": [IGNORE_INDEX] * len(prompt_ids) + target,
                    "pixel_values": pixel_values,
                }
            )
        batch = {key: value.to(self.device) for key, value in self.collate(examples).items()}
        if "pixel_values" in batch:
            batch["pixel_values"] = batch["pixel_values"].to(self.model.dtype)
        labels = batch.pop("labels")
        was_training = self.model.training
        self.model.eval()
        logits = self.model(**batch).logits.float()
        self.model.train(was_training)
        log_probs = torch.log_softmax(logits[:, :-1], dim=-1)
        shifted = labels[:, 1:]
        mask = shifted != IGNORE_INDEX
        gathered = log_probs.gather(-1, shifted.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return (gathered * mask).sum(dim=1).tolist()

    # ----------------------------------------------------------------------------------------------
    # Saving

    def save_pretrained(self, directory: str | Path) -> Path:
        """Save the base model, tokenizer and prompt settings so :func:`load_backbone` restores them."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        settings = {
            **self.settings,
            "image_token": self.image_token,
            "num_image_tokens": self.num_image_tokens,
            "max_length": self.max_length,
        }
        (directory / BACKBONE_FILE).write_text(json.dumps(settings, indent=1), encoding="utf-8")
        return directory


def build_tiny_backbone(
    texts: Sequence[str],
    *,
    multimodal: bool = True,
    architecture: str = "qwen2",
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    vocab_size: int = 2000,
    image_size: int = 32,
    patch_size: int = 8,
    max_length: int = 384,
    seed: int = 0,
) -> CausalLMBackbone:
    """Build a randomly initialised tiny backbone with a byte-level BPE tokenizer trained on ``texts``.

    Args:
        texts: Corpus for the tokenizer, normally every prompt and target of the instruction set.
        multimodal: Build a LLaVA model (CLIP vision tower, projector, language model); otherwise a plain
            causal LM.
        architecture: ``"qwen2"`` or ``"llama"`` for the language model.
    """
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlamaForCausalLM,
        LlavaConfig,
        LlavaForConditionalGeneration,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    from clot.tokenizer import IMAGE_TOKEN, train_byte_bpe_tokenizer

    if architecture not in ("qwen2", "llama"):
        raise ValueError(f"unknown architecture {architecture!r}; valid: qwen2, llama.")
    tokenizer = train_byte_bpe_tokenizer(texts, vocab_size=vocab_size)
    text_kwargs = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "num_key_value_heads": max(1, num_heads // 2),
        "max_position_embeddings": max(512, max_length),
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "tie_word_embeddings": True,
    }
    config_class, model_class = (
        (Qwen2Config, Qwen2ForCausalLM) if architecture == "qwen2" else (LlamaConfig, LlamaForCausalLM)
    )
    text_config = config_class(**text_kwargs)

    torch.manual_seed(seed)
    settings = {"tiny": True, "architecture": architecture, "multimodal": multimodal}
    if not multimodal:
        return CausalLMBackbone(model_class(text_config), tokenizer, max_length=max_length, settings=settings)

    num_image_tokens = (image_size // patch_size) ** 2
    vision_config = CLIPVisionConfig(
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=1,
        num_attention_heads=num_heads,
        image_size=image_size,
        patch_size=patch_size,
    )
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=num_image_tokens,
        projector_hidden_act="gelu",
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    settings.update({"image_size": image_size, "image_mean": list(_CLIP_MEAN), "image_std": list(_CLIP_STD)})
    return CausalLMBackbone(
        LlavaForConditionalGeneration(config),
        tokenizer,
        image_transform=_resize_normalize(image_size, _CLIP_MEAN, _CLIP_STD),
        image_token=IMAGE_TOKEN,
        num_image_tokens=num_image_tokens,
        max_length=max_length,
        settings=settings,
    )


def load_backbone(
    name_or_path: str | Path,
    *,
    kind: str = "auto",
    dtype: torch.dtype | str | None = None,
    device: str = "cpu",
    max_length: int = 1024,
) -> CausalLMBackbone:
    """Load a backbone saved by :meth:`CausalLMBackbone.save_pretrained` or a Hub checkpoint.

    Args:
        name_or_path: Local folder or Hub id, e.g. ``llava-hf/llava-1.5-7b-hf`` or
            ``Qwen/Qwen2.5-0.5B-Instruct``.
        kind: ``"llava"``, ``"text"`` or ``"auto"`` (LLaVA when the config's model type is ``llava``).
        dtype: Weight dtype, e.g. ``torch.bfloat16`` on a GPU.
        device: Where to put the model.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlavaForConditionalGeneration

    if kind not in ("auto", "llava", "text"):
        raise ValueError(f"unknown backbone kind {kind!r}; valid: auto, llava, text.")
    config = AutoConfig.from_pretrained(name_or_path)
    if kind == "auto":
        kind = "llava" if config.model_type == "llava" else "text"
    settings_path = Path(name_or_path) / BACKBONE_FILE
    settings = json.loads(settings_path.read_text(encoding="utf-8")) if settings_path.is_file() else {}

    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model_class = LlavaForConditionalGeneration if kind == "llava" else AutoModelForCausalLM
    model = model_class.from_pretrained(name_or_path, dtype=dtype).to(device)
    max_length = settings.get("max_length", max_length)

    if kind == "text":
        return CausalLMBackbone(model, tokenizer, max_length=max_length, settings=settings)

    if "image_size" in settings:
        transform = _resize_normalize(settings["image_size"], settings["image_mean"], settings["image_std"])
    else:
        from transformers import AutoImageProcessor

        processor = AutoImageProcessor.from_pretrained(name_or_path)

        def transform(image: Image.Image) -> torch.Tensor:
            return processor(images=image, return_tensors="pt")["pixel_values"][0]

    image_token = settings.get("image_token") or tokenizer.convert_ids_to_tokens(config.image_token_id)
    num_image_tokens = settings.get("num_image_tokens") or config.image_seq_length
    return CausalLMBackbone(
        model,
        tokenizer,
        image_transform=transform,
        image_token=image_token,
        num_image_tokens=num_image_tokens,
        max_length=max_length,
        settings=settings,
    )
