"""SURD-format data: an image folder with ``metadata.jsonl`` of simple and complex prompts.

Each line of ``metadata.jsonl`` is ``{"file_name": ..., "text": <simple prompt>, "prompt": <complex
prompt>}``, the layout of the SURD dataset released with SUR-adapter (arXiv 2305.05189) and of a Hugging
Face ``imagefolder``. SURD lists some ``file_name`` values without an extension; those are resolved by
trying the common image extensions.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms

__all__ = ["IMAGE_EXTENSIONS", "METADATA_NAME", "SURDataset", "SURRecord", "collate_records", "read_metadata"]

logger = logging.getLogger(__name__)

METADATA_NAME = "metadata.jsonl"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
_REQUIRED_KEYS = ("file_name", "text", "prompt")


@dataclass(frozen=True)
class SURRecord:
    """One training sample: the image path, the simple prompt (``text``) and the complex prompt."""

    image_path: Path
    text: str
    prompt: str


def read_metadata(root: str | Path) -> list[SURRecord]:
    """Read and validate ``root/metadata.jsonl``.

    Raises:
        FileNotFoundError: The folder, the metadata file or an image is missing.
        ValueError: A line is not valid JSON, lacks a key, or has an empty or non-string value.
    """
    root = Path(root)
    metadata_path = root / METADATA_NAME
    if not root.is_dir():
        raise FileNotFoundError(
            f"Data folder not found: {root}. Pass a folder with images and {METADATA_NAME}."
        )
    if not metadata_path.is_file():
        raise FileNotFoundError(
            f"{metadata_path} not found. A SURD-format folder needs one JSON object per line with the keys "
            f"{list(_REQUIRED_KEYS)}; unzip SURD.zip there or write it with `sur-adapter make-data`."
        )
    records = []
    for line_number, line in enumerate(metadata_path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{metadata_path}, line {line_number}: invalid JSON ({error.msg}).") from error
        if not isinstance(entry, dict):
            raise ValueError(
                f"{metadata_path}, line {line_number}: expected a JSON object, got {type(entry).__name__}."
            )
        missing = [key for key in _REQUIRED_KEYS if key not in entry]
        if missing:
            raise ValueError(
                f"{metadata_path}, line {line_number}: missing key(s) {missing}; each line needs {list(_REQUIRED_KEYS)} "
                "(text is the simple prompt, prompt the complex one)."
            )
        for key in _REQUIRED_KEYS:
            if not isinstance(entry[key], str) or not entry[key].strip():
                raise ValueError(
                    f"{metadata_path}, line {line_number}: {key} must be a non-empty string, got {entry[key]!r}."
                )
        image_path = _resolve_image(root, entry["file_name"])
        if image_path is None:
            raise FileNotFoundError(
                f"{metadata_path}, line {line_number}: image {entry['file_name']!r} not found in {root} "
                f"(also tried the extensions {list(IMAGE_EXTENSIONS)})."
            )
        records.append(SURRecord(image_path=image_path, text=entry["text"], prompt=entry["prompt"]))
    if not records:
        raise ValueError(f"{metadata_path} lists no samples.")
    return records


class SURDataset(Dataset):
    """Images with their simple and complex prompts, preprocessed as for Stable Diffusion fine-tuning.

    Images are resized (bilinear) so the short side is ``resolution``, cropped to a square (centre or
    random), optionally flipped horizontally, and normalised to [-1, 1].

    Args:
        root: Folder with the images and ``metadata.jsonl``.
        resolution: Output side length.
        center_crop: Crop the centre; otherwise crop at a random position.
        random_flip: Flip horizontally with probability 0.5.
    """

    def __init__(
        self, root: str | Path, *, resolution: int, center_crop: bool = True, random_flip: bool = True
    ):
        if resolution < 8:
            raise ValueError(f"resolution must be at least 8 pixels, got {resolution}.")
        self.root = Path(root)
        self.records = read_metadata(self.root)
        steps = [
            transforms.Resize(resolution, interpolation=transforms.InterpolationMode.BILINEAR),
            transforms.CenterCrop(resolution) if center_crop else transforms.RandomCrop(resolution),
        ]
        if random_flip:
            steps.append(transforms.RandomHorizontalFlip())
        steps += [transforms.ToTensor(), transforms.Normalize([0.5], [0.5])]
        self.transform = transforms.Compose(steps)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        try:
            with Image.open(record.image_path) as image:
                pixels = self.transform(image.convert("RGB"))
        except OSError as error:
            raise ValueError(f"Cannot read image {record.image_path}: {error}") from error
        return {"pixel_values": pixels, "text": record.text, "prompt": record.prompt}

    @property
    def simple_prompts(self) -> list[str]:
        """The ``text`` column in file order."""
        return [record.text for record in self.records]

    @property
    def complex_prompts(self) -> list[str]:
        """The ``prompt`` column in file order."""
        return [record.prompt for record in self.records]


def collate_records(batch: list[dict]) -> dict:
    """Stack pixel values to (B, 3, H, W) and keep the prompts as lists."""
    return {
        "pixel_values": torch.stack([item["pixel_values"] for item in batch]),
        "text": [item["text"] for item in batch],
        "prompt": [item["prompt"] for item in batch],
    }


def _resolve_image(root: Path, file_name: str) -> Path | None:
    candidate = root / file_name
    if candidate.is_file():
        return candidate
    if candidate.suffix.lower() not in IMAGE_EXTENSIONS:
        for extension in IMAGE_EXTENSIONS:
            with_extension = candidate.with_name(candidate.name + extension)
            if with_extension.is_file():
                return with_extension
    return None
