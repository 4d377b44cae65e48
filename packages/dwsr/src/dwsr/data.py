"""Folder layouts of the SR datasets, and a small paired dataset built from scikit-image's photographs.

The layout follows BasicSR's dataset preparation guide: each benchmark set has ``GTmod12`` (high-resolution
images cropped to a multiple of 12) and ``LRbicx{scale}`` (MATLAB-style bicubic downsampling) with equal
file names; DIV2K keeps its official names (``DIV2K_train_HR/0001.png``,
``DIV2K_train_LR_bicubic/X2/0001x2.png``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from basicsr.utils.matlab_functions import imresize

__all__ = [
    "BENCHMARK_SETS",
    "SKIMAGE_TEST_PHOTOS",
    "SKIMAGE_TRAIN_PHOTOS",
    "MissingDataError",
    "PairedFolder",
    "benchmark_folder",
    "build_skimage_dataset",
    "check_folders",
    "div2k_folder",
    "load_skimage_photo",
    "make_lr_folder",
    "mod_crop",
]

logger = logging.getLogger(__name__)

BENCHMARK_SETS = ("Set5", "Set14", "BSD100", "Urban100")

# Photographs bundled inside the scikit-image wheel (no download). The two lists share no scene.
SKIMAGE_TRAIN_PHOTOS = (
    "astronaut",
    "coffee",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "camera",
    "brick",
    "grass",
    "moon",
    "page",
)
SKIMAGE_TEST_PHOTOS = ("chelsea", "coins", "gravel", "clock", "text")

_HOW_TO_GET = (
    "Download DIV2K (DIV2K_train_HR and DIV2K_train_LR_bicubic) from https://data.vision.ee.ethz.ch/cvl/DIV2K/ "
    "and the benchmark sets (Set5, Set14, BSD100, Urban100 with GTmod12 and LRbicx2/3/4) as described in "
    "BasicSR's docs/DatasetPreparation.md; an LR folder can be made from an HR folder with "
    "`dwsr prepare --hr DIR --scale S --output DIR`."
)


class MissingDataError(FileNotFoundError):
    """A dataset folder that a run needs does not exist; the message names each folder and the source."""


@dataclass(frozen=True)
class PairedFolder:
    """A high-resolution folder and its low-resolution partner, paired by ``filename_tmpl``."""

    name: str
    gt: Path
    lq: Path
    filename_tmpl: str = "{}"

    def dataset_options(self, **extra: object) -> dict:
        """Return a BasicSR ``PairedImageDataset`` options dict for this folder pair."""
        return {
            "name": self.name,
            "type": "PairedImageDataset",
            "dataroot_gt": str(self.gt),
            "dataroot_lq": str(self.lq),
            "filename_tmpl": self.filename_tmpl,
            "io_backend": {"type": "disk"},
            **extra,
        }

    def pairs(self) -> list[tuple[Path, Path]]:
        """List ``(hr_path, lr_path)`` for every image of the high-resolution folder."""
        result = []
        for hr_path in sorted(self.gt.glob("*.png")):
            lr_path = self.lq / f"{self.filename_tmpl.format(hr_path.stem)}.png"
            if not lr_path.is_file():
                raise MissingDataError(
                    f"{lr_path} (the LR partner of {hr_path}) does not exist. {_HOW_TO_GET}"
                )
            result.append((hr_path, lr_path))
        return result


def benchmark_folder(data_root: Path, name: str, scale: int) -> PairedFolder:
    """Return the folder pair of benchmark ``name`` at ``scale`` under ``data_root`` (not checked)."""
    root = Path(data_root) / name
    return PairedFolder(name, root / "GTmod12", root / f"LRbicx{scale}")


def div2k_folder(data_root: Path, scale: int, split: str = "train") -> PairedFolder:
    """Return DIV2K's folder pair for ``split`` (``train`` or ``valid``) at ``scale`` (not checked)."""
    root = Path(data_root) / "DIV2K"
    return PairedFolder(
        f"DIV2K_{split}",
        root / f"DIV2K_{split}_HR",
        root / f"DIV2K_{split}_LR_bicubic" / f"X{scale}",
        filename_tmpl=f"{{}}x{scale}",
    )


def check_folders(folders: Sequence[PairedFolder]) -> None:
    """Raise :class:`MissingDataError` naming every missing or empty folder of ``folders``."""
    missing = []
    for folder in folders:
        for path in (folder.gt, folder.lq):
            if not path.is_dir() or not any(path.glob("*.png")):
                missing.append(str(path))
    if missing:
        raise MissingDataError(f"missing or empty dataset folder(s): {', '.join(missing)}. {_HOW_TO_GET}")


def mod_crop(image: np.ndarray, multiple: int) -> np.ndarray:
    """Crop ``image`` (H, W, C) at the bottom and right to a multiple of ``multiple`` in each side."""
    height = image.shape[0] - image.shape[0] % multiple
    width = image.shape[1] - image.shape[1] % multiple
    return image[:height, :width]


def _downscale(image_bgr_uint8: np.ndarray, scale: int) -> np.ndarray:
    lr = imresize(image_bgr_uint8.astype(np.float32) / 255.0, 1.0 / scale)
    return np.clip(np.round(lr * 255.0), 0, 255).astype(np.uint8)


def make_lr_folder(hr_folder: Path, output_folder: Path, scale: int, *, filename_tmpl: str = "{}") -> int:
    """Write the MATLAB-style bicubic downsampling of every PNG of ``hr_folder`` to ``output_folder``.

    Each HR image is first cropped to a multiple of ``scale``. Returns the number of images written.
    """
    hr_folder, output_folder = Path(hr_folder), Path(output_folder)
    paths = sorted(hr_folder.glob("*.png"))
    if not paths:
        raise MissingDataError(f"no PNG images in {hr_folder}")
    output_folder.mkdir(parents=True, exist_ok=True)
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"could not read image {path}")
        lr = _downscale(mod_crop(image, scale), scale)
        cv2.imwrite(str(output_folder / f"{filename_tmpl.format(path.stem)}.png"), lr)
    return len(paths)


def load_skimage_photo(name: str) -> np.ndarray:
    """Return scikit-image's bundled photograph ``name`` as a BGR uint8 array (H, W, 3), grey repeated."""
    import skimage.data

    image = getattr(skimage.data, name)()
    if image.dtype != np.uint8:
        raise ValueError(f"skimage.data.{name} is {image.dtype}, expected uint8")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3][:, :, ::-1])


def _center_crop(image: np.ndarray, size: int) -> np.ndarray:
    height, width = image.shape[:2]
    top = max((height - size) // 2, 0)
    left = max((width - size) // 2, 0)
    return image[top : top + size, left : left + size]


def _write_split(root: Path, photos: Sequence[str], crop: int, scales: Sequence[int]) -> None:
    gt_folder = root / "GTmod12"
    gt_folder.mkdir(parents=True, exist_ok=True)
    for name in photos:
        hr = mod_crop(_center_crop(load_skimage_photo(name), crop), 12)
        cv2.imwrite(str(gt_folder / f"{name}.png"), hr)
    for scale in scales:
        make_lr_folder(gt_folder, root / f"LRbicx{scale}", scale)


def build_skimage_dataset(
    root: Path,
    *,
    scales: Sequence[int] = (2, 3, 4),
    train_photos: Sequence[str] = SKIMAGE_TRAIN_PHOTOS,
    test_photos: Sequence[str] = SKIMAGE_TEST_PHOTOS,
    train_crop: int = 384,
    test_crop: int = 240,
) -> dict[str, Path]:
    """Write a paired SR dataset from scikit-image's bundled photographs under ``root``.

    Each photograph is centre-cropped to at most ``train_crop`` (training) or ``test_crop`` (held-out)
    pixels per side, cropped to a multiple of 12 and downsampled with BasicSR's MATLAB-style ``imresize``.
    Grey photographs are repeated over three channels. Existing complete folders are reused.

    Returns:
        ``{"train": root/"train", "test": root/"test"}``, each in the benchmark layout.
    """
    overlap = sorted(set(train_photos) & set(test_photos))
    if overlap:
        raise ValueError(f"train and test photographs must differ, both contain {overlap}")
    root = Path(root)
    splits = {"train": (train_photos, train_crop), "test": (test_photos, test_crop)}
    result = {}
    for split, (photos, crop) in splits.items():
        split_root = root / split
        expected = {f"{name}.png" for name in photos}
        folders = [split_root / "GTmod12"] + [split_root / f"LRbicx{scale}" for scale in scales]
        complete = all(
            folder.is_dir() and {p.name for p in folder.glob("*.png")} == expected for folder in folders
        )
        if not complete:
            logger.info("Writing %d %s photographs to %s", len(photos), split, split_root)
            _write_split(split_root, photos, crop, scales)
        result[split] = split_root
    return result
