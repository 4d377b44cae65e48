"""DWSRModel: losses, staged schedule, saving and loading, built from Python options dicts."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from basicsr.models import build_model
from basicsr.utils.matlab_functions import imresize
from skimage import data as skimage_data

from dwsr.archs import DWSRNet
from dwsr.difficulty import DifficultySettings
from dwsr.losses import DWSRMaskBCELoss
from dwsr.models import compute_label_mask, parse_stages, scale_stage_iters

from .conftest import TINY_NETWORK, tiny_options


def _skimage_batch(size: int = 32) -> dict[str, torch.Tensor]:
    photos = []
    for name, (top, left) in (("astronaut", (100, 180)), ("coffee", (150, 250))):
        image = getattr(skimage_data, name)()[top : top + size, left : left + size]
        photos.append(torch.from_numpy(image).permute(2, 0, 1).float() / 255.0)
    gt = torch.stack(photos)
    lq = torch.stack([imresize(image, 0.5).clamp(0, 1) for image in gt])
    return {"lq": lq, "gt": gt}


def _snapshot(network) -> dict[str, torch.Tensor]:
    return {name: parameter.detach().clone() for name, parameter in network.named_parameters()}


def _changed(before, network) -> set[str]:
    return {
        name for name, parameter in network.named_parameters() if not torch.equal(before[name], parameter)
    }


def test_stages_update_only_their_parts(tmp_path):
    torch.manual_seed(0)
    model = build_model(tiny_options(tmp_path))
    batch = _skimage_batch()
    network = model.net_g
    expected_prefixes = {
        1: ("recognition.",),
        2: ("easy_way.", "hard_way."),
        3: ("recognition.", "easy_way.", "hard_way."),
    }
    for current_iter, prefixes in expected_prefixes.items():
        before = _snapshot(network)
        model.feed_data(batch)
        model.optimize_parameters(current_iter)
        changed = _changed(before, network)
        allowed = {name for name in before if name.startswith(prefixes)}
        assert changed <= allowed, f"iter {current_iter} changed {sorted(changed - allowed)}"
        assert changed == allowed, f"iter {current_iter} left {sorted(allowed - changed)} unchanged"


def test_stage_losses_are_logged(tmp_path):
    torch.manual_seed(0)
    model = build_model(tiny_options(tmp_path))
    model.feed_data(_skimage_batch())
    model.optimize_parameters(1)
    assert set(model.log_dict) == {"l_recog", "hard_fraction", "mask_accuracy"}
    model.optimize_parameters(2)
    assert {"l_pix", "l_easy", "l_hard"} <= set(model.log_dict)
    model.optimize_parameters(3)
    assert {"l_pix", "l_easy", "l_hard", "l_recog"} <= set(model.log_dict)
    assert all(math.isfinite(value) for value in model.log_dict.values())


def test_recognition_loss_matches_weighted_bce(tmp_path):
    torch.manual_seed(0)
    options = tiny_options(tmp_path)
    options["train"]["recognition_opt"]["loss_weight"] = 0.5
    model = build_model(options)
    batch = _skimage_batch()
    model.feed_data(batch)
    network = model.net_g
    with torch.no_grad():
        logits = network.recognition(batch["lq"])
    target = compute_label_mask(batch["lq"], batch["gt"], 2, model.difficulty)
    expected = 0.5 * F.binary_cross_entropy_with_logits(logits, target)
    model.optimize_parameters(1)
    assert model.log_dict["l_recog"] == pytest.approx(expected.item(), rel=1e-5)


def test_way_losses_match_masked_l1(tmp_path):
    torch.manual_seed(0)
    options = tiny_options(tmp_path)
    options["train"]["easy_opt"]["loss_weight"] = 2.0
    model = build_model(options)
    batch = _skimage_batch()
    model.feed_data(batch)
    with torch.no_grad():
        outputs = model.net_g.forward_ways(batch["lq"])
    mask = compute_label_mask(batch["lq"], batch["gt"], 2, model.difficulty)
    easy_weight = (1 - mask).expand_as(outputs.easy)
    expected_easy = 2.0 * ((outputs.easy - batch["gt"]).abs() * easy_weight).sum() / easy_weight.sum()
    hard_weight = mask.expand_as(outputs.hard)
    expected_hard = ((outputs.hard - batch["gt"]).abs() * hard_weight).sum() / hard_weight.sum()
    model.optimize_parameters(2)  # the "ways" stage computes the way losses before its update
    assert model.log_dict["l_easy"] == pytest.approx(expected_easy.item(), rel=1e-5)
    assert model.log_dict["l_hard"] == pytest.approx(expected_hard.item(), rel=1e-5)


def test_all_easy_batch_gives_zero_hard_loss(tmp_path):
    options = tiny_options(tmp_path)
    options["train"]["difficulty"] = {"patch_size": 4, "rule": "fixed", "threshold_db": -1.0}
    model = build_model(options)
    model.feed_data(_skimage_batch())
    model.optimize_parameters(2)
    assert model.log_dict["l_hard"] == 0.0
    assert model.log_dict["hard_fraction"] == 0.0


def test_label_mask_shape_and_values():
    batch = _skimage_batch()
    mask = compute_label_mask(
        batch["lq"], batch["gt"], 2, DifficultySettings(patch_size=8, rule="image_mean")
    )
    assert mask.shape == (2, 1, 32, 32)
    assert set(mask.unique().tolist()) == {0.0, 1.0}


def test_save_and_reload_gives_same_outputs(tmp_path):
    torch.manual_seed(0)
    options = tiny_options(tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "training_states").mkdir()
    model = build_model(options)
    model.feed_data(_skimage_batch())
    model.optimize_parameters(1)
    model.save(epoch=0, current_iter=1)
    checkpoint = torch.load(tmp_path / "models" / "net_g_1.pth")  # default weights_only
    state = torch.load(tmp_path / "training_states" / "1.state")
    assert state["iter"] == 1
    fresh = DWSRNet(**{k: v for k, v in TINY_NETWORK.items() if k != "type"})
    fresh.load_state_dict(checkpoint["params"])
    x = torch.rand(1, 3, 8, 8)
    model.net_g.eval()
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(model.net_g(x), fresh(x))


def test_dataset_median_rule_reads_training_folder(tmp_path, tiny_dataset):
    options = tiny_options(tmp_path, tiny_dataset)
    options["train"]["difficulty"] = {"patch_size": 8, "rule": "dataset_median"}
    model = build_model(options)
    assert model.difficulty.threshold_db is not None
    assert 10.0 < model.difficulty.threshold_db < 60.0


def test_dataset_median_without_folder_raises(tmp_path):
    options = tiny_options(tmp_path)
    options["train"]["difficulty"] = {"patch_size": 8, "rule": "dataset_median"}
    with pytest.raises(ValueError, match="dataroot_gt"):
        build_model(options)


def test_stage_lengths_must_match_total_iter(tmp_path):
    options = tiny_options(tmp_path)
    options["train"]["total_iter"] = 10
    with pytest.raises(ValueError, match="total_iter is 10"):
        build_model(options)


def test_stage_with_unconfigured_loss_raises(tmp_path):
    options = tiny_options(tmp_path)
    del options["train"]["hard_opt"]
    with pytest.raises(ValueError, match="hard_opt"):
        build_model(options)


def test_single_way_network_rejected(tmp_path):
    options = tiny_options(tmp_path)
    options["network_g"] = {
        "type": "EDSR",
        "num_in_ch": 3,
        "num_out_ch": 3,
        "num_feat": 4,
        "num_block": 1,
        "upscale": 2,
    }
    with pytest.raises(TypeError, match="DWSRNet"):
        build_model(options)


def test_parse_stages_defaults_to_one_joint_stage():
    (stage,) = parse_stages(None, 7)
    assert stage.iters == 7
    assert stage.train == ("recognition", "easy_way", "hard_way")
    assert stage.losses == ("pixel", "easy", "hard", "recognition")


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        ({"iters": 3, "train": ["body"], "losses": "all"}, "train"),
        ({"iters": 3, "train": "all", "losses": ["perceptual"]}, "losses"),
        ({"iters": 3, "train": "all", "losses": "all", "fusion_mask": "oracle"}, "fusion_mask"),
        ({"iters": -1, "train": "all", "losses": "all"}, "iters"),
        ({"iters": 3, "train": "all", "losses": "all", "lr": 1}, "unknown key"),
    ],
)
def test_parse_stages_rejects_bad_entries(stage, message):
    with pytest.raises(ValueError, match=message):
        parse_stages([stage], 3)


def test_scale_stage_iters_keeps_proportions():
    assert scale_stage_iters([50000, 150000, 100000], 6) == [1, 3, 2]
    assert sum(scale_stage_iters([1, 1, 1], 10)) == 10


def test_mask_bce_loss_weight_and_pos_weight():
    logits = torch.tensor([[[[0.3, -1.2]]]])
    target = torch.tensor([[[[1.0, 0.0]]]])
    loss = DWSRMaskBCELoss(loss_weight=0.25, pos_weight=2.0)(logits, target)
    by_hand = (
        0.25
        * (
            2.0 * -math.log(torch.sigmoid(torch.tensor(0.3)).item())
            - math.log(1 - torch.sigmoid(torch.tensor(-1.2)).item())
        )
        / 2
    )
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)


def test_tiny_options_is_not_shared(tmp_path):
    first = tiny_options(tmp_path)
    first["network_g"]["num_feat"] = 99
    assert tiny_options(tmp_path)["network_g"]["num_feat"] == copy.deepcopy(TINY_NETWORK)["num_feat"]
