"""LLaVA-format conversations: loading, preprocessing, tokenisation with answer-only labels, batching.

Input records follow LLaVA's JSON schema, ``{"id", "image", "conversations": [{"from": "human", "value":
"<image>\\n..."}, {"from": "gpt", "value": ...}, ...]}``, with ``image`` optional and relative to an image
folder. Roles ``human``/``user`` and ``gpt``/``assistant`` are accepted. As in the official preprocessing,
only the first question-answer pair is kept unless ``all_turns=True``.

Each pair is rendered as ``<s>[INST]{user}[/INST]{assistant}</s>`` (Mixtral-Instruct, no spaces). The
``<image>`` marker in the user text becomes ``num_image_tokens`` placeholder ids. Labels are ``-100`` on
the user text and the image span, and keep the assistant tokens and the closing ``</s>``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from moextend.losses import IGNORE_INDEX

__all__ = [
    "IMAGE_MARKER",
    "ChatCollator",
    "ChatDataset",
    "ChatSample",
    "ChatTemplate",
    "encode_conversation",
    "load_llava_json",
    "parse_llava_records",
]

logger = logging.getLogger(__name__)

IMAGE_MARKER = "<image>"
_USER_ROLES = {"human", "user"}
_ASSISTANT_ROLES = {"gpt", "assistant"}


@dataclasses.dataclass(frozen=True)
class ChatTemplate:
    """Text around the user turn. The defaults are Mixtral-Instruct's markers, encoded as plain text."""

    user_prefix: str = "[INST]"
    user_suffix: str = "[/INST]"


@dataclasses.dataclass
class ChatSample:
    """One conversation: an optional image (a path or an in-memory PIL image) and (user, assistant) pairs."""

    turns: list[tuple[str, str]]
    image: Path | Image.Image | None = None
    sample_id: str = ""


def _malformed(source: str, position: int, reason: str) -> ValueError:
    return ValueError(f"{source}: record {position} is malformed: {reason}")


def _parse_turns(record: Mapping[str, Any], source: str, position: int) -> list[tuple[str, str]]:
    conversations = record.get("conversations")
    if not isinstance(conversations, list) or not conversations:
        raise _malformed(source, position, "'conversations' must be a non-empty list of turns")
    roles_and_values = []
    for turn_number, turn in enumerate(conversations):
        if not isinstance(turn, Mapping) or "from" not in turn or "value" not in turn:
            raise _malformed(source, position, f"turn {turn_number} needs the keys 'from' and 'value'")
        role, value = str(turn["from"]).lower(), turn["value"]
        if role not in _USER_ROLES | _ASSISTANT_ROLES:
            raise _malformed(
                source,
                position,
                f"turn {turn_number} has role {turn['from']!r}; expected human/user or gpt/assistant",
            )
        if not isinstance(value, str):
            raise _malformed(source, position, f"turn {turn_number} has a non-string value")
        roles_and_values.append(("user" if role in _USER_ROLES else "assistant", value))
    if len(roles_and_values) % 2:
        raise _malformed(
            source, position, f"{len(roles_and_values)} turns; user and assistant turns must pair up"
        )
    pairs = []
    for turn_number in range(0, len(roles_and_values), 2):
        (first_role, question), (second_role, answer) = roles_and_values[turn_number : turn_number + 2]
        if first_role != "user" or second_role != "assistant":
            raise _malformed(
                source,
                position,
                f"turns {turn_number} and {turn_number + 1} are {first_role}, {second_role}; "
                "turns must alternate user, assistant",
            )
        if not answer.strip():
            raise _malformed(source, position, f"turn {turn_number + 1} has an empty assistant answer")
        if IMAGE_MARKER in answer:
            raise _malformed(
                source, position, f"turn {turn_number + 1} has {IMAGE_MARKER} in an assistant answer"
            )
        pairs.append((question, answer))
    return pairs


def parse_llava_records(
    records: Sequence[Mapping[str, Any]],
    *,
    image_folder: str | Path | None = None,
    all_turns: bool = False,
    check_images: bool = True,
    source: str = "<records>",
) -> list[ChatSample]:
    """Validate LLaVA records and turn them into :class:`ChatSample` objects.

    Args:
        records: the parsed JSON list.
        image_folder: folder the ``image`` fields are relative to.
        all_turns: keep every question-answer pair instead of only the first.
        check_images: fail now on image files that do not exist.
        source: name used in error messages.

    Raises:
        ValueError: a malformed record (which record and why).
        FileNotFoundError: a missing image (which record and which path).
    """
    if not isinstance(records, list):
        raise ValueError(f"{source}: expected a JSON list of records, got {type(records).__name__}")
    folder = Path(image_folder) if image_folder is not None else None
    samples = []
    for position, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise _malformed(source, position, "each record must be a JSON object")
        pairs = _parse_turns(record, source, position)
        if not all_turns:
            pairs = pairs[:1]
        markers = sum(question.count(IMAGE_MARKER) for question, _ in pairs)
        image = None
        if record.get("image"):
            image = Path(record["image"]) if folder is None else folder / record["image"]
            if check_images and not image.is_file():
                raise FileNotFoundError(
                    f"{source}: record {position} names image {record['image']!r}, but {image} does not exist; "
                    "check the image folder"
                )
            if markers == 0:
                question, answer = pairs[0]
                pairs[0] = (f"{IMAGE_MARKER}\n{question}", answer)
            elif markers > 1:
                raise _malformed(source, position, f"{markers} {IMAGE_MARKER} markers for one image")
        elif markers:
            raise _malformed(source, position, f"the text has {IMAGE_MARKER} but the record has no 'image'")
        samples.append(ChatSample(turns=pairs, image=image, sample_id=str(record.get("id", position))))
    return samples


def load_llava_json(
    path: str | Path,
    *,
    image_folder: str | Path | None = None,
    all_turns: bool = False,
    check_images: bool = True,
) -> list[ChatSample]:
    """Read a LLaVA-format JSON file (see :func:`parse_llava_records`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"conversation file {path} not found")
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    return parse_llava_records(
        records,
        image_folder=image_folder if image_folder is not None else path.parent,
        all_turns=all_turns,
        check_images=check_images,
        source=str(path),
    )


def _encode_text(tokenizer: Any, text: str, image_token_id: int, num_image_tokens: int) -> list[int]:
    ids: list[int] = []
    for index, piece in enumerate(text.split(IMAGE_MARKER)):
        if index > 0:
            ids.extend([image_token_id] * num_image_tokens)
        if piece:
            ids.extend(tokenizer(piece, add_special_tokens=False)["input_ids"])
    return ids


def encode_conversation(
    tokenizer: Any,
    turns: Sequence[tuple[str, str]],
    *,
    image_token_id: int,
    num_image_tokens: int,
    template: ChatTemplate | None = None,
    max_length: int | None = None,
    prompt_only: bool = False,
) -> tuple[list[int], list[int]]:
    """Tokenise a conversation into ``input_ids`` and answer-only ``labels``.

    Args:
        tokenizer: a Hugging Face tokenizer with ``bos_token_id`` and ``eos_token_id``.
        turns: (user, assistant) pairs.
        image_token_id: placeholder id each ``<image>`` expands to.
        num_image_tokens: placeholders per image.
        template: user-turn markers.
        max_length: truncate to this many tokens; an image span must stay whole.
        prompt_only: stop after the last ``[/INST]`` (for generation and router probing).

    Raises:
        ValueError: truncation would cut an image span.
    """
    template = template or ChatTemplate()
    input_ids = [tokenizer.bos_token_id]
    labels = [IGNORE_INDEX]
    for turn_number, (question, answer) in enumerate(turns):
        prompt = _encode_text(
            tokenizer,
            f"{template.user_prefix}{question}{template.user_suffix}",
            image_token_id,
            num_image_tokens,
        )
        input_ids += prompt
        labels += [IGNORE_INDEX] * len(prompt)
        if prompt_only and turn_number == len(turns) - 1:
            break
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        input_ids += answer_ids
        labels += answer_ids
    if max_length is not None and len(input_ids) > max_length:
        if image_token_id in input_ids[max_length:] and image_token_id in input_ids[:max_length]:
            raise ValueError(
                f"max_length={max_length} would cut an image span ({len(input_ids)} tokens); raise max_length"
            )
        input_ids, labels = input_ids[:max_length], labels[:max_length]
    return input_ids, labels


def load_image(image: Path | Image.Image) -> Image.Image:
    """Open ``image`` as RGB."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    try:
        with Image.open(image) as opened:
            return opened.convert("RGB")
    except FileNotFoundError as error:
        raise FileNotFoundError(f"image {image} not found") from error


class ChatDataset(torch.utils.data.Dataset):
    """Tokenises conversations on first access and processes their images.

    Args:
        samples: conversations.
        tokenizer: the LLM's tokenizer.
        image_processor: a ``CLIPImageProcessor``.
        image_token_id: placeholder id.
        num_image_tokens: placeholders per image.
        max_length: maximum sequence length.
        prompt_only: encode only up to the last user turn.
    """

    def __init__(
        self,
        samples: Sequence[ChatSample],
        tokenizer: Any,
        image_processor: Any,
        *,
        image_token_id: int,
        num_image_tokens: int,
        max_length: int = 1024,
        template: ChatTemplate | None = None,
        prompt_only: bool = False,
    ) -> None:
        self.samples = list(samples)
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.image_token_id = image_token_id
        self.num_image_tokens = num_image_tokens
        self.max_length = max_length
        self.template = template or ChatTemplate()
        self.prompt_only = prompt_only
        self._cache: dict[int, tuple[list[int], list[int]]] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | None]:
        sample = self.samples[index]
        if index not in self._cache:
            self._cache[index] = encode_conversation(
                self.tokenizer,
                sample.turns,
                image_token_id=self.image_token_id,
                num_image_tokens=self.num_image_tokens,
                template=self.template,
                max_length=self.max_length,
                prompt_only=self.prompt_only,
            )
        input_ids, labels = self._cache[index]
        pixel_values = None
        if sample.image is not None:
            image = load_image(sample.image)
            pixel_values = self.image_processor(images=image, return_tensors="pt")["pixel_values"][0]
        return {
            "input_ids": torch.tensor(input_ids, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
            "pixel_values": pixel_values,
        }


class ChatCollator:
    """Right-pads a list of dataset items into a batch.

    Returns ``input_ids``, ``attention_mask`` and ``labels`` of shape ``(B, S)`` (padding: ``pad_token_id``,
    0 and -100) and ``pixel_values`` ``(N, 3, h, w)`` for the N items with an image, or ``None``.
    """

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, items: Iterable[Mapping[str, Any]]) -> dict[str, torch.Tensor | None]:
        items = list(items)
        length = max(int(item["input_ids"].shape[0]) for item in items)
        input_ids = torch.full((len(items), length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(items), length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(items), length), dtype=torch.long)
        for row, item in enumerate(items):
            size = int(item["input_ids"].shape[0])
            input_ids[row, :size] = item["input_ids"]
            labels[row, :size] = item["labels"]
            attention_mask[row, :size] = 1
        images = [item["pixel_values"] for item in items if item.get("pixel_values") is not None]
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "pixel_values": torch.stack(images) if images else None,
        }
