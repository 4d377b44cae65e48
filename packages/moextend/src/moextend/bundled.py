"""Real images, captions and text that ship with installed packages, for the CPU-sized reproduction.

- scikit-learn's handwritten digits (1,797 8x8 greyscale scans, UCI), upscaled to RGB, each captioned with
  a sentence naming its digit;
- about twenty scikit-image sample photographs with hand-written one-line captions;
- English text from the dataset descriptions bundled with scikit-learn, for pre-training the tiny LLM and
  measuring forgetting on held-out paragraphs.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from moextend.data import IMAGE_MARKER, ChatSample

__all__ = [
    "DIGIT_NAMES",
    "digit_answer",
    "digit_samples",
    "photo_captions",
    "photo_samples",
    "text_corpus",
]

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_QUESTION = "What digit is written here?"
CAPTION_QUESTION = "Describe the image."

# Captions written for the scikit-image sample images (names of functions in skimage.data).
_PHOTO_CAPTIONS = {
    "astronaut": "an astronaut in a white space suit",
    "camera": "a man standing with a camera on a tripod",
    "coffee": "a cup of coffee on a saucer",
    "chelsea": "a cat looking to the side",
    "rocket": "a rocket on the launch pad",
    "coins": "old coins on a flat surface",
    "horse": "the silhouette of a horse",
    "hubble_deep_field": "galaxies in the deep sky",
    "immunohistochemistry": "stained tissue under a microscope",
    "moon": "the surface of the moon",
    "page": "a printed page of text",
    "text": "text written on a sign",
    "brick": "a brick wall",
    "grass": "a patch of grass",
    "gravel": "a patch of gravel",
    "checkerboard": "a black and white checkerboard",
    "retina": "the retina of an eye",
    "logo": "a logo on a plain background",
    "clock": "a clock on a wall",
    "colorwheel": "a wheel of colours",
    "microaneurysms": "blood vessels of an eye",
}


def digit_answer(label: int) -> str:
    """Return the answer sentence for digit ``label``."""
    return f"This is the digit {DIGIT_NAMES[label]}."


def _digit_image(pixels: np.ndarray, size: int) -> Image.Image:
    grey = (np.clip(pixels, 0, 16) * (255 / 16)).astype(np.uint8).reshape(8, 8)
    return Image.fromarray(grey, mode="L").resize((size, size), Image.Resampling.BILINEAR).convert("RGB")


def digit_samples(
    split: str = "train", *, size: int = 32, limit: int | None = None, caption: bool = False
) -> tuple[list[ChatSample], list[int]]:
    """Return digit conversations and their labels.

    Args:
        split: ``"train"`` (the first 1,500 digits) or ``"test"`` (the remaining 297).
        size: side of the RGB image in pixels.
        limit: keep only this many samples.
        caption: ask for a description (alignment data) instead of the digit question.
    """
    from sklearn.datasets import load_digits

    if split not in ("train", "test"):
        raise ValueError(f"invalid split={split!r}; valid values: 'train', 'test'")
    digits = load_digits()
    rows = list(range(0, 1500) if split == "train" else range(1500, len(digits.target)))[:limit]
    question = CAPTION_QUESTION if caption else DIGIT_QUESTION
    samples, labels = [], []
    for row in rows:
        label = int(digits.target[row])
        samples.append(
            ChatSample(
                turns=[(f"{IMAGE_MARKER}\n{question}", digit_answer(label))],
                image=_digit_image(digits.data[row], size),
                sample_id=f"digits-{row}",
            )
        )
        labels.append(label)
    return samples, labels


def photo_captions() -> dict[str, str]:
    """Return the caption of each scikit-image sample photograph."""
    return dict(_PHOTO_CAPTIONS)


def _photo(name: str) -> Image.Image:
    import skimage.data

    array = getattr(skimage.data, name)()
    if array.dtype != np.uint8:
        array = (255 * (array.astype(np.float64) / max(float(array.max()), 1e-8))).astype(np.uint8)
    image = Image.fromarray(array)
    return image.convert("RGB")


def photo_samples(*, size: int = 32) -> list[ChatSample]:
    """Return one caption conversation per scikit-image photograph that loads offline."""
    samples = []
    for name, caption in _PHOTO_CAPTIONS.items():
        try:
            image = _photo(name)
        except (ImportError, OSError, ValueError):
            # Some versions fetch a few images on demand; those are skipped offline.
            continue
        image.thumbnail((4 * size, 4 * size))
        sentence = f"This is {caption}."
        samples.append(
            ChatSample(
                turns=[(f"{IMAGE_MARKER}\n{CAPTION_QUESTION}", sentence)],
                image=image,
                sample_id=f"photo-{name}",
            )
        )
    return samples


def text_corpus() -> list[str]:
    """Return paragraphs of English prose from scikit-learn's bundled dataset descriptions."""
    import sklearn.datasets

    folder = Path(sklearn.datasets.__file__).parent / "descr"
    paragraphs = []
    for path in sorted(folder.glob("*.rst")):
        text = path.read_text(encoding="utf-8")
        for block in re.split(r"\n\s*\n", text):
            cleaned = " ".join(block.split())
            # Keep prose: skip headings, tables, directives and reference lists.
            if len(cleaned) < 80 or cleaned.startswith((".. ", "=", "-", "|", ":", "*")) or "====" in cleaned:
                continue
            paragraphs.append(cleaned)
    return paragraphs
