"""A small SURD-format dataset written from the photographs bundled with scikit-image.

Each image gets a short narrative caption (the "simple prompt", the ``text`` column) and a long
keyword-style description (the "complex prompt", the ``prompt`` column), mirroring the BLIP-caption and
user-prompt pairs of SURD. The prompts were written for this package.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from .data import METADATA_NAME

__all__ = ["EMBEDDED_SAMPLES", "write_embedded_dataset"]

logger = logging.getLogger(__name__)

# (scikit-image loader name, simple prompt, complex prompt)
EMBEDDED_SAMPLES: tuple[tuple[str, str, str], ...] = (
    (
        "astronaut",
        "a smiling woman in a space suit",
        "portrait of a smiling female astronaut in a white spacesuit, flag in the background, studio lighting, "
        "high detail, sharp focus, photorealistic",
    ),
    (
        "camera",
        "a man standing behind a camera",
        "black and white photograph of a photographer in a dark coat behind a vintage camera on a tripod, open "
        "field, overcast sky, film grain, high contrast",
    ),
    (
        "coffee",
        "a cup of coffee on a table",
        "top view of a white ceramic cup of espresso with crema on a saucer, silver spoon, red table, warm light, "
        "food photography, shallow depth of field",
    ),
    (
        "chelsea",
        "a cat looking to the side",
        "close-up of a ginger tabby cat looking sideways, soft window light, detailed fur, bokeh, 85mm lens, "
        "award winning pet photography",
    ),
    (
        "rocket",
        "a rocket waiting to launch",
        "space shuttle on the launch pad at dawn, service tower, clear blue sky, wide angle, documentary "
        "photograph, crisp detail",
    ),
    (
        "coins",
        "old coins lying in rows",
        "grayscale macro photograph of a grid of antique coins on a dark background, embossed profiles, even "
        "lighting, museum catalogue",
    ),
    (
        "horse",
        "the shape of a horse",
        "black silhouette of a standing horse on a plain white background, clean vector shape, high contrast, "
        "minimal",
    ),
    (
        "hubble_deep_field",
        "many galaxies in the night sky",
        "deep field telescope image, thousands of distant spiral and elliptical galaxies, black space, vivid "
        "colors, astrophotography, ultra detailed",
    ),
    (
        "immunohistochemistry",
        "cells seen under a microscope",
        "immunohistochemistry slide, brown stained cell nuclei on a blue background, light microscopy, 40x "
        "magnification, medical imaging",
    ),
    (
        "moon",
        "the surface of the moon",
        "grayscale photograph of the lunar surface, craters and maria, raking sunlight, telescope image, high "
        "resolution",
    ),
    (
        "page",
        "a page from an old book",
        "scanned page of an old book, uneven lighting, black serif text on yellowed paper, grayscale document "
        "scan",
    ),
    (
        "retina",
        "the inside of a human eye",
        "fundus photograph of a human retina, optic disc, branching red blood vessels, orange background, "
        "ophthalmology, high resolution",
    ),
    (
        "colorwheel",
        "a circle of many colors",
        "rgb color wheel, smooth hue gradient, saturated rainbow spectrum, white background, flat digital graphic",
    ),
    (
        "brick",
        "a wall made of bricks",
        "grayscale texture of a weathered brick wall, mortar lines, rough surface, seamless pattern, high detail",
    ),
    (
        "grass",
        "a patch of grass",
        "grayscale close-up texture of dense grass blades, natural pattern, top view, fine detail",
    ),
    (
        "gravel",
        "small stones on the ground",
        "grayscale texture of gravel pebbles, top-down view, scattered stones, sharp detail, seamless",
    ),
    (
        "clock",
        "a clock hanging on a wall",
        "grayscale photograph of an analog wall clock seen at an angle, motion blur, roman numerals, indoor "
        "light",
    ),
    (
        "checkerboard",
        "a board of black and white squares",
        "black and white checkerboard pattern, sharp squares, eight by eight grid, high contrast, flat graphic",
    ),
    (
        "shepp_logan_phantom",
        "a test picture for medical scans",
        "shepp-logan phantom, grayscale tomography slice, nested ellipses of different intensity, synthetic test "
        "image",
    ),
)


def write_embedded_dataset(root: str | Path, *, size: int = 64, limit: int | None = None) -> Path:
    """Write the bundled photographs and their prompts as a SURD-format folder.

    Args:
        root: Output folder; ``metadata.jsonl`` and one PNG per sample are written there.
        size: Side length of the square PNGs (centre crop, then bilinear resize).
        limit: Write only the first ``limit`` samples.

    Returns:
        ``root``.
    """
    import skimage.data

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    samples = EMBEDDED_SAMPLES if limit is None else EMBEDDED_SAMPLES[:limit]
    lines = []
    for name, simple_prompt, complex_prompt in samples:
        pixels = np.asarray(getattr(skimage.data, name)())
        image = _square_rgb(pixels).resize((size, size), Image.Resampling.BILINEAR)
        file_name = f"{name}.png"
        image.save(root / file_name)
        lines.append(json.dumps({"file_name": file_name, "text": simple_prompt, "prompt": complex_prompt}))
    (root / METADATA_NAME).write_text("\n".join(lines) + "\n", encoding="utf-8")
    logger.info("Wrote %d scikit-image samples to %s", len(lines), root)
    return root


def _square_rgb(pixels: np.ndarray) -> Image.Image:
    if pixels.dtype != np.uint8:
        low, high = float(pixels.min()), float(pixels.max())
        scale = (high - low) or 1.0
        pixels = ((pixels.astype(np.float64) - low) / scale * 255.0).round().astype(np.uint8)
    if pixels.ndim == 2:
        pixels = np.stack([pixels] * 3, axis=-1)
    pixels = pixels[..., :3]
    height, width = pixels.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return Image.fromarray(np.ascontiguousarray(pixels[top : top + side, left : left + side]))
