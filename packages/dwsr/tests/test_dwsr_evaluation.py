"""Region metrics against BasicSR's whole-image metrics, and the scikit-image dataset layout."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from basicsr.metrics import calculate_psnr, calculate_ssim
from basicsr.metrics.metric_util import to_y_channel

from dwsr.data import MissingDataError, PairedFolder, check_folders, mod_crop
from dwsr.difficulty import DifficultySettings
from dwsr.evaluation import evaluate_folder, region_psnr, ssim_map


def _random_pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    generator = np.random.default_rng(seed)
    image = generator.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
    noise = generator.integers(-12, 13, size=image.shape)
    return image, np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)


def test_ssim_map_mean_equals_basicsr_ssim():
    image, other = _random_pair()
    expected = calculate_ssim(image, other, crop_border=0, test_y_channel=True)
    similarity = ssim_map(to_y_channel(image)[..., 0], to_y_channel(other)[..., 0])
    assert similarity.shape == (30, 38)
    assert float(similarity.mean()) == pytest.approx(expected, rel=1e-10)


def test_region_psnr_full_mask_equals_basicsr_psnr():
    image, other = _random_pair(1)
    image_y = to_y_channel(image)[..., 0]
    other_y = to_y_channel(other)[..., 0]
    full = np.ones(image_y.shape, dtype=bool)
    assert region_psnr(image_y, other_y, full) == pytest.approx(
        calculate_psnr(image, other, crop_border=0, test_y_channel=True), rel=1e-10
    )
    assert math.isnan(region_psnr(image_y, other_y, ~full))


def test_bicubic_evaluation_matches_basicsr(tiny_dataset):
    folder = PairedFolder("test", tiny_dataset["test"] / "GTmod12", tiny_dataset["test"] / "LRbicx2")
    settings = DifficultySettings(patch_size=4, rule="image_mean")
    means, images = evaluate_folder(None, folder, 2, settings, keep_images=True)
    (result,) = images
    gt_bgr = cv2.imread(str(tiny_dataset["test"] / "GTmod12" / "chelsea.png"))
    sr_bgr = np.ascontiguousarray(result.sr[:, :, ::-1])
    assert means["psnr"] == pytest.approx(calculate_psnr(sr_bgr, gt_bgr, crop_border=2, test_y_channel=True))
    assert 0.0 < means["hard_fraction"] < 1.0
    assert means["psnr_easy"] > means["psnr_hard"]
    assert result.extras["psnr_map"].shape == (12, 12)


def test_skimage_dataset_layout(tiny_dataset):
    train_names = {path.name for path in (tiny_dataset["train"] / "GTmod12").glob("*.png")}
    test_names = {path.name for path in (tiny_dataset["test"] / "GTmod12").glob("*.png")}
    assert train_names == {"astronaut.png", "coffee.png", "camera.png"}
    assert test_names == {"chelsea.png"}
    hr = cv2.imread(str(tiny_dataset["train"] / "GTmod12" / "camera.png"))
    lr = cv2.imread(str(tiny_dataset["train"] / "LRbicx2" / "camera.png"))
    assert hr.shape == (96, 96, 3)
    assert lr.shape == (48, 48, 3)


def test_check_folders_names_each_missing(tmp_path):
    folders = [PairedFolder("Set5", tmp_path / "Set5" / "GTmod12", tmp_path / "Set5" / "LRbicx2")]
    with pytest.raises(MissingDataError) as raised:
        check_folders(folders)
    assert str(tmp_path / "Set5" / "GTmod12") in str(raised.value)
    assert str(tmp_path / "Set5" / "LRbicx2") in str(raised.value)


def test_mod_crop_trims_bottom_right():
    image = np.zeros((25, 38, 3), dtype=np.uint8)
    assert mod_crop(image, 12).shape == (24, 36, 3)
