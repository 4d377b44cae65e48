"""Image grids for validation and demonstration images."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

__all__ = ["image_grid"]


def image_grid(rows: Sequence[Sequence[Image.Image]], *, padding: int = 2) -> Image.Image:
    """Paste images into a grid, one inner sequence per row, on a white background."""
    if not rows or not rows[0]:
        raise ValueError("image_grid needs at least one row with one image.")
    width, height = rows[0][0].size
    columns = max(len(row) for row in rows)
    grid = Image.new(
        "RGB",
        (columns * width + (columns + 1) * padding, len(rows) * height + (len(rows) + 1) * padding),
        "white",
    )
    for row_index, row in enumerate(rows):
        for column_index, image in enumerate(row):
            position = (padding + column_index * (width + padding), padding + row_index * (height + padding))
            grid.paste(image.convert("RGB").resize((width, height)), position)
    return grid
