"""Tests of Grad-CAM and the attention-bias measures on hand-checkable cases."""

import math

import pytest
import torch
from torch import nn

from lsas.attention_bias import (
    attention_bias_metrics,
    boxes_to_masks,
    collect_masked_images,
    diagnose_attention_bias,
    grad_cam,
    intensity_masks,
    plot_attention_overlays,
)


class _PoolLinear(nn.Module):
    """Features = the input itself (layer ``features``), then GAP and a linear head with fixed weights."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.features = nn.Identity()
        self.head = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        with torch.no_grad():
            self.head.weight.copy_(weight)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


def test_grad_cam_linear_head_by_hand():
    # For logits = W · GAP(A), dy_c/dA_k = W_ck / (h w) everywhere, so the map is ReLU(Σ_k W_ck A_k) / max.
    weight = torch.tensor([[2.0, -1.0], [0.0, 1.0]])
    model = _PoolLinear(weight)
    torch.manual_seed(0)
    images = torch.rand(3, 2, 4, 4)
    maps, targets = grad_cam(model, images, "features", targets=torch.tensor([0, 0, 1]))
    for index, target in enumerate(targets.tolist()):
        expected = torch.relu(weight[target, 0] * images[index, 0] + weight[target, 1] * images[index, 1])
        expected = expected / expected.max()
        torch.testing.assert_close(maps[index], expected)


def test_grad_cam_uses_predicted_class_by_default():
    model = _PoolLinear(torch.tensor([[1.0], [-1.0]]))
    images = torch.rand(2, 1, 3, 3)
    _, targets = grad_cam(model, images, model.features)
    assert targets.tolist() == [0, 0]


def test_grad_cam_on_square_gives_known_bias():
    # A bright square on zeros: the map equals the square, so nothing lies outside and all of it is covered.
    model = _PoolLinear(torch.tensor([[1.0]]))
    image = torch.zeros(1, 1, 8, 8)
    image[0, 0, 2:5, 3:7] = 1.0
    mask = image[:, 0] > 0
    report = diagnose_attention_bias(model, image, mask, "features")
    assert report.outside_share.tolist() == [0.0]
    assert report.mask_coverage.tolist() == [1.0]
    # A mask shifted off the square: every unit of map mass lies outside and nothing of the mask is covered.
    shifted = torch.zeros_like(mask)
    shifted[0, 6:8, 0:2] = True
    report = diagnose_attention_bias(model, image, shifted, "features")
    assert report.outside_share.tolist() == [1.0]
    assert report.mask_coverage.tolist() == [0.0]


def test_grad_cam_upsamples_to_input_size():
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2, 3),
    )
    maps, _ = grad_cam(model, torch.rand(2, 1, 8, 8), "1")
    assert maps.shape == (2, 8, 8)
    assert torch.all(maps >= 0)
    assert torch.all(maps <= 1)


def test_grad_cam_leaves_model_state_alone():
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1),
        nn.BatchNorm2d(2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2, 3),
    )
    model.train()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    grad_cam(model, torch.rand(2, 1, 5, 5), "1")
    assert model.training
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0, msg=name)
    assert all(p.grad is None for p in model.parameters())


def test_grad_cam_unknown_layer_is_rejected():
    with pytest.raises(ValueError, match="not found"):
        grad_cam(_PoolLinear(torch.ones(1, 1)), torch.rand(1, 1, 2, 2), "missing")


def test_metrics_by_hand():
    maps = torch.tensor([[[1.0, 0.5], [0.25, 0.0]]])
    mask = torch.tensor([[[True, False], [True, False]]])
    metrics = attention_bias_metrics(maps, mask, threshold=0.5)
    # Mass outside = 0.5 of a total 1.75; the mask has 2 pixels, of which 1 (value 1.0) reaches 0.5.
    assert metrics["outside_share"].item() == pytest.approx(0.5 / 1.75)
    assert metrics["mask_coverage"].item() == pytest.approx(0.5)


def test_metrics_undefined_cases_are_nan():
    maps = torch.zeros(1, 2, 2)
    mask = torch.zeros(1, 2, 2, dtype=torch.bool)
    metrics = attention_bias_metrics(maps, mask)
    assert math.isnan(metrics["outside_share"].item())
    assert math.isnan(metrics["mask_coverage"].item())


def test_metrics_reject_bad_inputs():
    with pytest.raises(ValueError, match="shape"):
        attention_bias_metrics(torch.zeros(1, 2, 2), torch.zeros(1, 3, 3))
    with pytest.raises(ValueError, match="binary"):
        attention_bias_metrics(torch.zeros(1, 2, 2), torch.full((1, 2, 2), 0.3))
    with pytest.raises(ValueError, match="threshold"):
        attention_bias_metrics(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2), threshold=0.0)


def test_intensity_masks_ignore_affine_normalisation():
    torch.manual_seed(3)
    raw = torch.rand(2, 1, 6, 6).expand(2, 3, 6, 6)
    normalised = (raw - torch.tensor([0.4, 0.5, 0.6])[:, None, None]) / torch.tensor([0.2, 0.3, 0.25])[
        :, None, None
    ]
    expected = raw[:, 0] > 0.5 * (
        raw[:, 0].amax(dim=(1, 2), keepdim=True) - raw[:, 0].amin(dim=(1, 2), keepdim=True)
    ) + raw[:, 0].amin(dim=(1, 2), keepdim=True)
    assert torch.equal(intensity_masks(normalised[:, :1]), expected)
    assert intensity_masks(normalised).shape == (2, 6, 6)


def test_boxes_to_masks():
    masks = boxes_to_masks([[(1, 0, 3, 2)], [], [(0, 0, 1, 1), (3, 3, 10, 10)]], height=4, width=4)
    assert masks.shape == (3, 4, 4)
    assert masks[0].sum() == 4
    assert masks[0, 0:2, 1:3].all()
    assert masks[1].sum() == 0
    assert masks[2].sum() == 1 + 1
    with pytest.raises(ValueError, match="empty"):
        boxes_to_masks([[(2, 0, 1, 1)]], height=4, width=4)


def test_report_summary_skips_nan():
    model = _PoolLinear(torch.tensor([[1.0]]))
    images = torch.zeros(2, 1, 4, 4)
    images[0, 0, 0, 0] = 1.0
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, 0, 0] = True
    masks[1, 0, 0] = True
    summary = diagnose_attention_bias(model, images, masks, "features", batch_size=1).summary()
    assert summary["outside_share"] == 0.0
    assert summary["mask_coverage"] == 0.5
    assert summary["images"] == 2


def test_overlay_figure_is_written(tmp_path):
    images = torch.rand(3, 3, 8, 8)
    masks = images[:, 0] > 0.5
    path = plot_attention_overlays(
        images, {"a": torch.rand(3, 8, 8), "b": torch.rand(3, 8, 8)}, masks, path=tmp_path / "f" / "x.png"
    )
    assert path.exists()
    assert path.stat().st_size > 0


def test_collect_masked_images_from_pairs_masks_and_boxes():
    image = torch.zeros(3, 4, 4)
    image[:, 1:3, 1:3] = 1.0
    pairs = [(image, 1), (image * 2, 0)]
    images, masks, labels = collect_masked_images(pairs, count=5)
    assert images.shape == (2, 3, 4, 4)
    assert labels.tolist() == [1, 0]
    assert masks[0].sum() == 4
    assert masks[0, 1:3, 1:3].all()

    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[0, 0] = True
    boxes = torch.tensor([[0.0, 0.0, 2.0, 1.0]])
    _, masks, _ = collect_masked_images([(image, 0, mask), (image, 0, boxes)], count=2)
    assert masks[0].sum() == 1
    assert masks[1].sum() == 2
    with pytest.raises(ValueError, match="third field"):
        collect_masked_images([(image, 0, torch.zeros(3))], count=1)
