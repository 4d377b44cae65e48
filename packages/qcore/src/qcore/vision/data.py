"""Image-classification datasets for the attention packages, with deterministic augmentation.

``build_datasets`` returns map-style datasets of ``(image, label)`` pairs, where ``image`` is a normalised
float tensor (3, S, S). Training augmentation (random crop with zero padding, optional horizontal flip)
draws its randomness from a generator seeded by ``(seed, epoch, index)``, so a sample's augmented view
depends only on those three numbers. Training resumed in the middle of an epoch therefore receives exactly
the images an uninterrupted run would, whatever the worker count. Call ``set_epoch(epoch)`` on the
training set at the start of every epoch.

Sources:

- ``digits``: scikit-learn's bundled 8×8 handwritten digits (1,797 images, 10 classes), upsampled to
  ``image_size`` with bilinear interpolation and repeated to 3 channels. The train/test split is a fixed
  stratified 75/25 split (``random_state=0``) that does not depend on ``seed``.
- ``cifar10`` / ``cifar100``: the "python version" folders ``cifar-10-batches-py`` and ``cifar-100-python``
  from https://www.cs.toronto.edu/~kriz/cifar.html, normalised with the mean and std of the official
  training scripts.
- ``stl10``: the binary folder ``stl10_binary`` (labelled ``train`` and ``test`` splits, 96×96),
  normalised like CIFAR as in the LSAS and RAS reference code.
- ``imagefolder``: ``root/train/<class>/*`` and ``root/val/<class>/*``, resized (shorter side) and
  center-cropped to ``image_size``, normalised with the ImageNet mean and std.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

__all__ = [
    "CIFAR_MEAN",
    "CIFAR_STD",
    "DATASETS",
    "DatasetNotFoundError",
    "ImageFolderDataset",
    "TensorImageDataset",
    "augment_image",
    "build_datasets",
]

logger = logging.getLogger(__name__)

DATASETS = ("digits", "cifar10", "cifar100", "stl10", "imagefolder")

# Values of the official training scripts (bearpaw's pytorch-classification). The std values are not
# CIFAR-10's true per-channel std, but the published numbers were trained with them.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

CIFAR_HOW_TO_GET = (
    "Download the CIFAR 'python version' archive from https://www.cs.toronto.edu/~kriz/cifar.html "
    "and extract it into the data root."
)


class DatasetNotFoundError(FileNotFoundError):
    """Raised when a dataset folder or file is missing; the message names the path and how to get it."""


def augment_image(
    image: torch.Tensor,
    generator: torch.Generator,
    *,
    padding: int = 4,
    flip: bool = True,
    crop_size: int | None = None,
) -> torch.Tensor:
    """Return a random crop (zero padding ``padding``) and, if ``flip``, a random horizontal flip of ``image``.

    Args:
        image: Tensor (C, H, W), already normalised, so the zero padding is the normalised mean.
        generator: Source of the randomness.
        crop_size: Side of the square crop; ``None`` keeps the image's own height and width.
    """
    _, height, width = image.shape
    crop_height, crop_width = (height, width) if crop_size is None else (crop_size, crop_size)
    if padding > 0 or crop_size is not None:
        padded = F.pad(image, (padding, padding, padding, padding))
        top = int(torch.randint(0, height + 2 * padding - crop_height + 1, (), generator=generator))
        left = int(torch.randint(0, width + 2 * padding - crop_width + 1, (), generator=generator))
        image = padded[:, top : top + crop_height, left : left + crop_width]
    if flip and bool(torch.rand((), generator=generator) < 0.5):
        image = image.flip(-1)
    return image


class _AugmentedDataset(Dataset):
    """Shared epoch-seeded augmentation for the datasets below."""

    def __init__(
        self, *, augment: bool, flip: bool, padding: int, seed: int, crop_size: int | None = None
    ) -> None:
        self.augment = augment
        self.flip = flip
        self.padding = padding
        self.crop_size = crop_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of ``epoch`` (call once at the start of every epoch)."""
        self.epoch = int(epoch)

    def _maybe_augment(self, image: torch.Tensor, index: int) -> torch.Tensor:
        if not self.augment:
            return image
        generator = torch.Generator().manual_seed(_mix_seed(self.seed, self.epoch, index))
        return augment_image(image, generator, padding=self.padding, flip=self.flip, crop_size=self.crop_size)


def _mix_seed(*values: int) -> int:
    # A fixed integer hash of the tuple: reproducible across processes, unlike Python's hash().
    mixed = 0x9E3779B97F4A7C15
    for value in values:
        mixed = ((mixed ^ (int(value) & 0xFFFFFFFFFFFFFFFF)) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return mixed & 0x7FFFFFFFFFFFFFFF


class TensorImageDataset(_AugmentedDataset):
    """Images held in memory as a uint8 tensor (N, C, H, W), normalised on access.

    Args:
        images: uint8 tensor (N, C, H, W).
        labels: int64 tensor (N,).
        mean: Per-channel mean in [0, 1] units.
        std: Per-channel std in [0, 1] units.
        augment: Apply random crop and flip.
        flip: Include the horizontal flip in the augmentation.
        padding: Zero padding of the random crop, in pixels.
        seed: Augmentation seed.
        crop_size: Side of the random training crop (``None``: the image size).
        classes: Class names, index-aligned with the labels.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        augment: bool = False,
        flip: bool = True,
        padding: int = 4,
        seed: int = 0,
        classes: Sequence[str] | None = None,
        crop_size: int | None = None,
    ) -> None:
        super().__init__(augment=augment, flip=flip, padding=padding, seed=seed, crop_size=crop_size)
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(
                f"images must be a uint8 tensor (N, C, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
        self.images = images
        self.labels = labels.long()
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self.classes = (
            list(classes) if classes is not None else [str(i) for i in range(int(self.labels.max()) + 1)]
        )

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = (self.images[index].float() / 255.0 - self.mean) / self.std
        return self._maybe_augment(image, index), int(self.labels[index])


class ImageFolderDataset(_AugmentedDataset):
    """``root/<class>/<image>`` folder read with torchvision, resized and center-cropped to a square.

    Args:
        root: Folder with one subfolder per class.
        image_size: Side of the square output.
        augment: Apply random crop (padding ``image_size // 8``) and flip after resizing.
        seed: Augmentation seed.
    """

    def __init__(self, root: Path, *, image_size: int, augment: bool, seed: int) -> None:
        super().__init__(augment=augment, flip=True, padding=max(1, image_size // 8), seed=seed)
        from torchvision import datasets, transforms

        self.folder = datasets.ImageFolder(
            str(root),
            transform=transforms.Compose(
                [
                    transforms.Resize(image_size),
                    transforms.CenterCrop(image_size),
                    transforms.ToTensor(),
                    transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
                ]
            ),
        )
        self.classes = list(self.folder.classes)

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.folder[index]
        return self._maybe_augment(image, index), int(label)


def _digits(image_size: int, augment: bool, seed: int) -> tuple[Dataset, Dataset, int]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    # Pixel values are 0..16; scale to 0..255 and upsample to image_size.
    pixels = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    if image_size != pixels.shape[-1]:
        pixels = F.interpolate(pixels, size=(image_size, image_size), mode="bilinear", align_corners=False)
    images = (pixels.clamp(0, 1) * 255).round().to(torch.uint8).repeat(1, 3, 1, 1)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    train_index, test_index = train_test_split(
        np.arange(len(labels)), test_size=0.25, stratify=digits.target, random_state=0
    )
    train_images = images[torch.from_numpy(train_index)]
    mean = [float(train_images.float().mean() / 255.0)] * 3
    std = [float(train_images.float().std() / 255.0)] * 3
    classes = [str(c) for c in digits.target_names]
    # No horizontal flip for digits, because a mirrored digit is not a digit; the random crop stays.
    common: dict[str, Any] = {
        "mean": mean,
        "std": std,
        "flip": False,
        "padding": max(1, image_size // 8),
        "classes": classes,
    }
    train = TensorImageDataset(
        train_images, labels[torch.from_numpy(train_index)], augment=augment, seed=seed, **common
    )
    test = TensorImageDataset(
        images[torch.from_numpy(test_index)], labels[torch.from_numpy(test_index)], **common
    )
    return train, test, len(classes)


def _find_cifar_folder(root: Path, folder_name: str) -> Path:
    for candidate in (root / folder_name, root):
        if candidate.is_dir() and candidate.name == folder_name:
            return candidate
    raise DatasetNotFoundError(f"CIFAR folder not found: {root / folder_name}. {CIFAR_HOW_TO_GET}")


def _read_pickle(path: Path) -> dict:
    if not path.is_file():
        raise DatasetNotFoundError(
            f"CIFAR file not found: {path}; the folder is incomplete. {CIFAR_HOW_TO_GET}"
        )
    with path.open("rb") as handle:
        return pickle.load(handle, encoding="latin1")


def _cifar_arrays(files: list[Path], label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    data, labels = [], []
    for path in files:
        entry = _read_pickle(path)
        data.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(entry[label_key])
    return torch.from_numpy(np.concatenate(data)), torch.tensor(labels, dtype=torch.int64)


def _cifar(
    name: str, root: Path | None, image_size: int, augment: bool, seed: int
) -> tuple[Dataset, Dataset, int]:
    if root is None:
        raise DatasetNotFoundError(
            f"dataset {name!r} needs root=<folder with the CIFAR files>. {CIFAR_HOW_TO_GET}"
        )
    if image_size != 32:
        raise ValueError(f"CIFAR images are 32×32; got image_size={image_size}. Use image_size=32")
    if name == "cifar10":
        folder = _find_cifar_folder(root, "cifar-10-batches-py")
        train_files = [folder / f"data_batch_{i}" for i in range(1, 6)]
        test_files = [folder / "test_batch"]
        label_key, meta_file, names_key = "labels", folder / "batches.meta", "label_names"
    else:
        folder = _find_cifar_folder(root, "cifar-100-python")
        train_files, test_files = [folder / "train"], [folder / "test"]
        label_key, meta_file, names_key = "fine_labels", folder / "meta", "fine_label_names"
    train_images, train_labels = _cifar_arrays(train_files, label_key)
    test_images, test_labels = _cifar_arrays(test_files, label_key)
    num_classes = 10 if name == "cifar10" else 100
    classes = _read_pickle(meta_file)[names_key] if meta_file.is_file() else None
    common: dict[str, Any] = {"mean": CIFAR_MEAN, "std": CIFAR_STD, "classes": classes}
    train = TensorImageDataset(train_images, train_labels, augment=augment, seed=seed, **common)
    test = TensorImageDataset(test_images, test_labels, **common)
    logger.info("loaded %s from %s: %d train, %d test images", name, folder, len(train), len(test))
    return train, test, num_classes


STL10_HOW_TO_GET = (
    "Download stl10_binary.tar.gz from https://cs.stanford.edu/~acoates/stl10/ and extract it into the "
    "data root."
)


def _read_stl10_split(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    images_path, labels_path = folder / f"{split}_X.bin", folder / f"{split}_y.bin"
    for path in (images_path, labels_path):
        if not path.is_file():
            raise DatasetNotFoundError(f"STL-10 file not found: {path}. {STL10_HOW_TO_GET}")
    # The binary files store each image channel-major and column-major: (N, 3, W, H).
    images = np.fromfile(images_path, dtype=np.uint8).reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)
    labels = np.fromfile(labels_path, dtype=np.uint8).astype(np.int64) - 1
    return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels)


def _stl10(
    root: Path | None, image_size: int, augment: bool, seed: int, train_crop: int | None
) -> tuple[Dataset, Dataset, int]:
    if root is None:
        raise DatasetNotFoundError(
            f"dataset 'stl10' needs root=<folder with stl10_binary>. {STL10_HOW_TO_GET}"
        )
    if image_size != 96:
        raise ValueError(
            f"STL-10 images are 96×96; got image_size={image_size}. Use image_size=96, and train_crop=32 for "
            "the 32×32 training crops of the LSAS and RAS reference code"
        )
    folder = root / "stl10_binary" if (root / "stl10_binary").is_dir() else root
    train_images, train_labels = _read_stl10_split(folder, "train")
    test_images, test_labels = _read_stl10_split(folder, "test")
    names_file = folder / "class_names.txt"
    classes = names_file.read_text(encoding="utf-8").split() if names_file.is_file() else None
    # With train_crop the reference code's CIFAR transform applies: RandomCrop(train_crop, padding=4).
    padding = 4 if train_crop else image_size // 8
    common: dict[str, Any] = {"mean": CIFAR_MEAN, "std": CIFAR_STD, "classes": classes}
    train = TensorImageDataset(
        train_images,
        train_labels,
        augment=augment,
        seed=seed,
        padding=padding,
        crop_size=train_crop,
        **common,
    )
    test = TensorImageDataset(test_images, test_labels, **common)
    return train, test, 10


def _imagefolder(
    root: Path | None, image_size: int, augment: bool, seed: int
) -> tuple[Dataset, Dataset, int]:
    layout_hint = "Arrange the images as <root>/train/<class>/<image> and <root>/val/<class>/<image>."
    if root is None:
        raise DatasetNotFoundError(f"dataset 'imagefolder' needs root=<folder>. {layout_hint}")
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise DatasetNotFoundError(f"image folder not found: {root / split}. {layout_hint}")
    train = ImageFolderDataset(root / "train", image_size=image_size, augment=augment, seed=seed)
    test = ImageFolderDataset(root / "val", image_size=image_size, augment=False, seed=seed)
    if train.classes != test.classes:
        raise ValueError(
            f"class folders differ between {root / 'train'} and {root / 'val'}: "
            f"{train.classes} versus {test.classes}"
        )
    return train, test, len(train.classes)


def build_datasets(
    name: str,
    *,
    root: str | Path | None = None,
    image_size: int = 32,
    augment: bool = True,
    seed: int = 0,
    train_crop: int | None = None,
) -> tuple[Dataset, Dataset, int]:
    """Build the training and test sets of a named dataset.

    Args:
        name: ``"digits"``, ``"cifar10"``, ``"cifar100"``, ``"stl10"`` or ``"imagefolder"``.
        root: Data folder (ignored for ``digits``). For CIFAR it may be the extracted folder itself or
            its parent.
        image_size: Side of the square images returned (CIFAR supports only 32).
        augment: Random crop and flip on the training set (never on the test set).
        seed: Seed of the training augmentation.
        train_crop: STL-10 only: train on random ``train_crop``-pixel crops (padding 4) and test on whole
            images, the STL-10 protocol of the LSAS and RAS reference code (with batch 16 and ``drop_last``).

    Returns:
        ``(train_dataset, test_dataset, num_classes)``.

    Raises:
        DatasetNotFoundError: A required folder or file is missing.
        ValueError: ``name`` or ``image_size`` is invalid.
    """
    if name not in DATASETS:
        raise ValueError(f"invalid dataset {name!r}; valid values: {', '.join(DATASETS)}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"invalid image_size={image_size!r}: must be an integer >= 8")
    root_path = Path(root).expanduser() if root is not None else None
    if train_crop is not None and name != "stl10":
        raise ValueError(f"train_crop applies to stl10 only, got dataset {name!r}")
    if name == "digits":
        return _digits(image_size, augment, seed)
    if name in ("cifar10", "cifar100"):
        return _cifar(name, root_path, image_size, augment, seed)
    if name == "stl10":
        return _stl10(root_path, image_size, augment, seed, train_crop)
    return _imagefolder(root_path, image_size, augment, seed)
