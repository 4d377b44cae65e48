"""Tests of qcore.vision.data: digits, CIFAR folders, image folders and deterministic augmentation."""

from __future__ import annotations

import pickle
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from qcore.vision.data import DatasetNotFoundError, TensorImageDataset, augment_image, build_datasets


@pytest.fixture(scope="module")
def digits():
    return build_datasets("digits", image_size=32, augment=True, seed=3)


def test_digits_shapes_and_split(digits):
    train, test, num_classes = digits
    assert num_classes == 10
    assert (len(train), len(test)) == (1347, 450)
    image, label = train[0]
    assert image.shape == (3, 32, 32)
    assert image.dtype == torch.float32
    assert 0 <= label < 10
    assert torch.equal(image[0], image[1])


def test_digits_split_is_stratified_and_fixed(digits):
    train, test, _ = digits
    train_counts = Counter(train.labels.tolist())
    test_counts = Counter(test.labels.tolist())
    for label in range(10):
        total = train_counts[label] + test_counts[label]
        assert abs(test_counts[label] - 0.25 * total) <= 1
    _, other_test, _ = build_datasets("digits", image_size=16, seed=99)
    assert torch.equal(other_test.labels, test.labels)


def test_digits_test_set_is_not_augmented(digits):
    _, test, _ = digits
    test.set_epoch(5)
    first = test[7][0]
    test.set_epoch(6)
    assert torch.equal(first, test[7][0])


def test_augmentation_depends_on_seed_epoch_index(digits):
    train, _, _ = digits
    train.set_epoch(0)
    first = train[10][0]
    assert torch.equal(first, train[10][0])
    views = []
    for epoch in range(1, 6):
        train.set_epoch(epoch)
        views.append(train[10][0])
    assert any(not torch.equal(first, view) for view in views)


def test_augment_image_crop_and_flip():
    image = torch.arange(16.0).view(1, 4, 4)
    generator = torch.Generator().manual_seed(0)
    out = augment_image(image, generator, padding=0, flip=True)
    assert torch.equal(out, image) or torch.equal(out, image.flip(-1))
    padded = augment_image(image, torch.Generator().manual_seed(1), padding=2, flip=False)
    assert padded.shape == image.shape
    # Every crop of the zero-padded image keeps a contiguous window of the original values.
    assert set(padded.unique().tolist()) - {0.0} <= set(image.unique().tolist())


def _write_pickle(path, obj):
    with open(path, "wb") as handle:
        pickle.dump(obj, handle)


def test_cifar10_folder(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        _write_pickle(
            folder / f"data_batch_{i}",
            {"data": rng.integers(0, 255, (4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 3]},
        )
    _write_pickle(
        folder / "test_batch", {"data": rng.integers(0, 255, (3, 3072), dtype=np.uint8), "labels": [9, 8, 7]}
    )
    _write_pickle(folder / "batches.meta", {"label_names": [f"c{i}" for i in range(10)]})
    train, test, num_classes = build_datasets("cifar10", root=tmp_path)
    assert (len(train), len(test), num_classes) == (20, 3, 10)
    assert test[0][1] == 9
    assert train.classes[3] == "c3"
    same_train, _, _ = build_datasets("cifar10", root=folder, augment=False)
    raw = torch.from_numpy(_read_first(folder / "data_batch_1")).float() / 255.0
    expected = (raw - torch.tensor([0.4914, 0.4822, 0.4465]).view(3, 1, 1)) / torch.tensor(
        [0.2023, 0.1994, 0.2010]
    ).view(3, 1, 1)
    torch.testing.assert_close(same_train[0][0], expected)


def _read_first(path):
    with open(path, "rb") as handle:
        return pickle.load(handle)["data"][0].reshape(3, 32, 32)


def test_cifar100_folder(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    data = np.zeros((2, 3072), dtype=np.uint8)
    _write_pickle(folder / "train", {"data": data, "fine_labels": [5, 99], "coarse_labels": [0, 1]})
    _write_pickle(folder / "test", {"data": data, "fine_labels": [42, 0], "coarse_labels": [0, 1]})
    train, test, num_classes = build_datasets("cifar100", root=tmp_path)
    assert num_classes == 100
    assert [train[i][1] for i in range(2)] == [5, 99]
    assert test[0][1] == 42


def test_missing_cifar_names_path(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="cifar-100-python") as error:
        build_datasets("cifar100", root=tmp_path)
    assert "cs.toronto.edu" in str(error.value)
    with pytest.raises(DatasetNotFoundError, match="root="):
        build_datasets("cifar10")
    incomplete = tmp_path / "cifar-10-batches-py"
    incomplete.mkdir()
    with pytest.raises(DatasetNotFoundError, match="data_batch_1"):
        build_datasets("cifar10", root=tmp_path)


def test_imagefolder(tmp_path):
    for split in ("train", "val"):
        for name in ("cat", "dog"):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (40, 30), color=(i * 100, 50, 200)).save(
                    tmp_path / split / name / f"{i}.png"
                )
    train, test, num_classes = build_datasets("imagefolder", root=tmp_path, image_size=24)
    assert num_classes == 2
    assert (len(train), len(test)) == (4, 4)
    assert train[0][0].shape == (3, 24, 24)
    assert train.classes == ["cat", "dog"]


def test_imagefolder_missing_split(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetNotFoundError, match="val"):
        build_datasets("imagefolder", root=tmp_path)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="valid values"):
        build_datasets("mnist")
    with pytest.raises(ValueError, match="image_size"):
        build_datasets("digits", image_size=4)
    with pytest.raises(ValueError, match="uint8"):
        TensorImageDataset(torch.zeros(2, 3, 4, 4), torch.zeros(2), mean=[0] * 3, std=[1] * 3)


def _write_stl10(folder, count, rng):
    folder.mkdir(parents=True)
    for split in ("train", "test"):
        images = rng.integers(0, 255, (count, 3, 96, 96), dtype=np.uint8)
        # Stored column-major per channel, as in the official binary files.
        images.transpose(0, 1, 3, 2).tofile(folder / f"{split}_X.bin")
        np.array([1, 10, 3][:count], dtype=np.uint8).tofile(folder / f"{split}_y.bin")
    return images


def test_stl10_binary_folder(tmp_path):
    rng = np.random.default_rng(0)
    test_images = _write_stl10(tmp_path / "stl10_binary", 3, rng)
    train, test, num_classes = build_datasets("stl10", root=tmp_path, image_size=96)
    assert (len(train), len(test), num_classes) == (3, 3, 10)
    assert [test[i][1] for i in range(3)] == [0, 9, 2]
    assert torch.equal(test.images[1], torch.from_numpy(test_images[1]))
    assert train[0][0].shape == (3, 96, 96)


def test_stl10_official_crop_protocol(tmp_path):
    _write_stl10(tmp_path / "stl10_binary", 2, np.random.default_rng(1))
    train, test, _ = build_datasets("stl10", root=tmp_path, image_size=96, train_crop=32)
    assert train[0][0].shape == (3, 32, 32)
    assert test[0][0].shape == (3, 96, 96)
    with pytest.raises(ValueError, match="image_size=96"):
        build_datasets("stl10", root=tmp_path)
    with pytest.raises(ValueError, match="stl10 only"):
        build_datasets("digits", train_crop=32)
    with pytest.raises(DatasetNotFoundError, match=r"train_X\.bin"):
        build_datasets("stl10", root=tmp_path / "missing", image_size=96)
