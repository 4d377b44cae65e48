"""PSNR-prior labels: patch PSNR against hand-computed values and the three threshold rules."""

from __future__ import annotations

import math

import pytest
import torch
from basicsr.utils.matlab_functions import imresize

from dwsr.difficulty import (
    DifficultySettings,
    bicubic_upsample,
    difficulty_labels,
    expand_patch_map,
    median_db,
    patch_psnr,
    psnr_threshold,
)


def test_patch_psnr_hand_computed_values():
    target = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    prediction = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    prediction[..., 0:2, 0:2] = 0.1  # MSE 0.01 -> 20 dB
    # top-right patch exact -> capped
    prediction[..., 2, 0] = 0.1  # one of four pixels off by 0.1 -> MSE 0.0025 -> 26.0206 dB
    prediction[..., 2:4, 2:4] = 0.5  # MSE 0.25 -> 6.0206 dB
    psnr = patch_psnr(prediction, target, 2, channel="rgb", max_psnr=60.0)[0, 0]
    assert psnr.shape == (2, 2)
    assert psnr[0, 0].item() == pytest.approx(20.0)
    assert psnr[0, 1].item() == pytest.approx(60.0)
    assert psnr[1, 0].item() == pytest.approx(10 * math.log10(1 / 0.0025))
    assert psnr[1, 1].item() == pytest.approx(10 * math.log10(1 / 0.25))


def test_patch_psnr_partial_edge_patch_uses_its_pixels():
    target = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    prediction = target.clone()
    prediction[..., 2, 2] = 0.2  # the bottom-right patch is this single pixel: MSE 0.04
    prediction[..., 0:2, 2] = 0.1  # right edge patch of two pixels: MSE 0.01
    psnr = patch_psnr(prediction, target, 2, channel="rgb")[0, 0]
    assert psnr.shape == (2, 2)
    assert psnr[1, 1].item() == pytest.approx(10 * math.log10(1 / 0.04))
    assert psnr[0, 1].item() == pytest.approx(20.0)


def test_patch_psnr_y_channel_hand_computed():
    target = torch.full((1, 3, 2, 2), 0.5, dtype=torch.float64)
    prediction = target.clone()
    prediction[:, 0] += 0.1  # only red changes; BT.601 luma weight of red is 65.481 / 255
    psnr = patch_psnr(prediction, target, 2, channel="y")
    luma_error = 65.481 / 255.0 * 0.1
    assert psnr.item() == pytest.approx(10 * math.log10(1 / luma_error**2))


def test_exact_upsampling_is_capped_and_easy():
    flat = torch.full((1, 3, 16, 16), 0.4)
    lr = imresize(flat[0], 0.5)[None]
    upsampled = bicubic_upsample(lr, 2, "matlab")
    psnr = patch_psnr(upsampled, flat, 8, max_psnr=60.0)
    assert torch.allclose(psnr, torch.full_like(psnr, 60.0))
    labels = difficulty_labels(psnr, DifficultySettings(rule="fixed", threshold_db=30.0))
    assert labels.sum().item() == 0


@pytest.mark.parametrize("upsampler", ["matlab", "torch"])
def test_noisy_patch_psnr_below_flat(upsampler):
    generator = torch.Generator().manual_seed(0)
    hr = torch.full((1, 3, 16, 32), 0.5)
    hr[..., 16:] = torch.rand(1, 3, 16, 16, generator=generator)
    lr = imresize(hr[0], 0.5)[None]
    psnr = patch_psnr(bicubic_upsample(lr, 2, upsampler).clamp(0, 1), hr, 16)[0, 0]
    assert psnr.shape == (1, 2)
    assert psnr[0, 1] < psnr[0, 0] - 10


def test_threshold_rules_on_hand_made_set():
    psnr_map = torch.tensor([[[[10.0, 20.0], [30.0, 60.0]]]])
    fixed = difficulty_labels(psnr_map, DifficultySettings(rule="fixed", threshold_db=15.0))
    assert fixed.flatten().tolist() == [1.0, 0.0, 0.0, 0.0]
    mean_rule = difficulty_labels(psnr_map, DifficultySettings(rule="image_mean"))
    assert mean_rule.flatten().tolist() == [1.0, 1.0, 0.0, 0.0]  # mean is 30 and the rule is strict

    other = torch.tensor([[[[12.0, 14.0], [50.0, 52.0]]]])
    median = median_db(torch.cat([psnr_map.flatten(), other.flatten()]))
    assert median == 20.0  # lower middle of 10 12 14 20 30 50 52 60
    settings = DifficultySettings(rule="dataset_median", threshold_db=median)
    assert difficulty_labels(psnr_map, settings).flatten().tolist() == [1.0, 0.0, 0.0, 0.0]
    assert difficulty_labels(other, settings).flatten().tolist() == [1.0, 1.0, 0.0, 0.0]


def test_image_mean_threshold_is_per_image():
    psnr_map = torch.tensor([[[[10.0, 30.0]]], [[[40.0, 60.0]]]])
    thresholds = psnr_threshold(psnr_map, DifficultySettings(rule="image_mean"))
    assert thresholds.flatten().tolist() == [20.0, 50.0]


def test_expand_patch_map_repeats_and_crops():
    labels = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    mask = expand_patch_map(labels, 2, (3, 4))
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1]], dtype=torch.float32)
    assert torch.equal(mask[0, 0], expected)


def test_dataset_median_without_value_raises():
    settings = DifficultySettings(rule="dataset_median")
    with pytest.raises(ValueError, match="threshold_db"):
        difficulty_labels(torch.zeros(1, 1, 2, 2), settings)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"patch_size": 0}, "patch_size"),
        ({"rule": "median"}, "rule"),
        ({"rule": "fixed"}, "threshold_db"),
        ({"channel": "lab"}, "channel"),
        ({"upsampler": "lanczos"}, "upsampler"),
        ({"max_psnr": 0}, "max_psnr"),
    ],
)
def test_invalid_settings_raise(kwargs, field):
    with pytest.raises(ValueError, match=field):
        DifficultySettings(**kwargs)


def test_unknown_option_key_raises():
    with pytest.raises(ValueError, match="patchsize"):
        DifficultySettings.from_options({"patchsize": 8})
