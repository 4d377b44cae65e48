"""Ranking metrics by hand, validation-based selection, robustness perturbations, reproduction and CLI."""

import json
import math

import pytest
import torch
from recbole.evaluator.collector import DataStruct
from recbole.evaluator.metrics import MAP, NDCG, Precision, Recall

from mirror_gradient.cli import main
from mirror_gradient.pipeline import RunOutcome, select_hyper_parameters
from mirror_gradient.robustness import Perturbation, evaluate_under_perturbations, perturb_features
from mirror_gradient.trainer import MirrorGradientTrainer


@pytest.fixture(scope="module")
def ranking():
    # User A: hits at ranks 1 and 3, 2 held-out items. User B: hit at rank 2, 4 held-out items.
    hits = torch.tensor([[1, 0, 1], [0, 1, 0]])
    lengths = torch.tensor([[2], [4]])
    data = DataStruct()
    data.set("rec.topk", torch.cat([hits, lengths], dim=1))
    return data


CONFIG = {"topk": [2, 3], "metric_decimal_place": 6}


def test_recall_by_hand(ranking):
    result = Recall(CONFIG).calculate_metric(ranking)
    assert result["recall@2"] == pytest.approx((1 / 2 + 1 / 4) / 2, abs=1e-6)
    assert result["recall@3"] == pytest.approx((2 / 2 + 1 / 4) / 2, abs=1e-6)


def test_precision_by_hand(ranking):
    result = Precision(CONFIG).calculate_metric(ranking)
    assert result["precision@2"] == pytest.approx((1 / 2 + 1 / 2) / 2, abs=1e-6)
    assert result["precision@3"] == pytest.approx((2 / 3 + 1 / 3) / 2, abs=1e-6)


def test_ndcg_by_hand(ranking):
    def gain(rank):
        return 1 / math.log2(rank + 1)

    result = NDCG(CONFIG).calculate_metric(ranking)
    user_a_at_2 = gain(1) / (gain(1) + gain(2))
    user_b_at_2 = gain(2) / (gain(1) + gain(2))
    user_a_at_3 = (gain(1) + gain(3)) / (gain(1) + gain(2))
    user_b_at_3 = gain(2) / (gain(1) + gain(2) + gain(3))
    assert result["ndcg@2"] == pytest.approx((user_a_at_2 + user_b_at_2) / 2, abs=1e-6)
    assert result["ndcg@3"] == pytest.approx((user_a_at_3 + user_b_at_3) / 2, abs=1e-6)


def test_map_by_hand(ranking):
    result = MAP(CONFIG).calculate_metric(ranking)
    # Average precision at K divides by min(held-out items, K).
    user_a_at_2, user_b_at_2 = 1.0 / 2, (1 / 2) / 2
    user_a_at_3, user_b_at_3 = (1.0 + 2 / 3) / 2, (1 / 2) / 3
    assert result["map@2"] == pytest.approx((user_a_at_2 + user_b_at_2) / 2, abs=1e-6)
    assert result["map@3"] == pytest.approx((user_a_at_3 + user_b_at_3) / 2, abs=1e-6)


def fake_outcome(point, valid, test):
    return RunOutcome("VBPR", True, 0, point, {"recall@5": valid}, {"recall@5": test}, 1, 0.0, 0)


SCORES = {0.1: (0.30, 0.10), 0.3: (0.20, 0.40)}


def fake_run(point):
    return fake_outcome(point, *SCORES[point["mg_alpha2"]])


def test_selection_uses_validation_by_default():
    best, outcomes = select_hyper_parameters(fake_run, {"mg_alpha2": [0.1, 0.3]}, metric="recall@5")
    assert best == {"mg_alpha2": 0.1}
    assert len(outcomes) == 2


def test_selection_on_test_reproduces_authors_protocol():
    best, _ = select_hyper_parameters(
        fake_run, {"mg_alpha2": [0.1, 0.3]}, metric="recall@5", selection="test"
    )
    assert best == {"mg_alpha2": 0.3}


def test_selection_rejects_unknown_split():
    with pytest.raises(ValueError, match="selection"):
        select_hyper_parameters(fake_run, {"mg_alpha2": [0.1]}, metric="recall@5", selection="train")


def features():
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(11, 5, generator=generator)
    text = torch.randn(11, 3, generator=generator)
    image[0] = 0
    text[0] = 0
    return {"image": image, "text": text}


def test_gaussian_noise_scales_with_feature_std():
    clean = features()
    perturbed = perturb_features(clean, Perturbation("gaussian", 0.5), torch.Generator().manual_seed(1))
    for name in clean:
        assert torch.count_nonzero(perturbed[name][0]) == 0
        difference = perturbed[name][1:] - clean[name][1:]
        assert torch.all(difference != 0)
        ratio = difference.std() / (0.5 * clean[name][1:].std(dim=0).mean())
        assert 0.5 < ratio < 2.0


def test_swap_replaces_share_with_other_items():
    clean = features()
    perturbed = perturb_features(clean, Perturbation("swap", 0.3), torch.Generator().manual_seed(1))
    changed = [row for row in range(11) if not torch.equal(perturbed["image"][row], clean["image"][row])]
    assert len(changed) == 3
    assert 0 not in changed
    for row in changed:
        donors = [
            other for other in range(1, 11) if torch.equal(perturbed["image"][row], clean["image"][other])
        ]
        assert donors and row not in donors
        assert torch.equal(perturbed["text"][row], clean["text"][donors[0]])


@pytest.mark.parametrize(("kind", "level"), [("blur", 0.1), ("gaussian", 0.0), ("swap", 1.5)])
def test_invalid_perturbation_raises(kind, level):
    with pytest.raises(ValueError):
        Perturbation(kind, level)


def test_robustness_restores_clean_features(build_model):
    config, model, train_data, _, test_data = build_model("FREEDOM")
    trainer = MirrorGradientTrainer(config, model)
    trainer._train_epoch(train_data, 0)
    clean = {name: value.clone() for name, value in model.modality_features().items()}
    graph_before = model.item_graph.to_dense().clone()

    results = evaluate_under_perturbations(trainer, test_data, (Perturbation("swap", 0.5),))

    assert set(results) == {"clean", "swap-0.5"}
    for name, value in model.modality_features().items():
        assert torch.equal(value, clean[name])
    torch.testing.assert_close(model.item_graph.to_dense(), graph_before)


def test_reproduce_smoke(tmp_path):
    from mirror_gradient.reproduce import reproduce
    from qcore.reproduce import ReproductionContext
    from qcore.rundir import RunDir

    result = reproduce(
        ReproductionContext(
            preset="smoke", run_dir=RunDir(tmp_path), seeds=(0,), data_root=None, device="cpu"
        )
    )

    assert [row.role for row in result.rows] == ["baseline", "method"]
    for row in result.rows:
        assert 0.0 <= row.metrics[result.primary_metric] <= 1.0
        assert "ndcg@20_std" in row.metrics
    assert "robustness" in result.report_markdown
    assert (tmp_path / "report.md").is_file()


def test_reproduce_paper_without_data_names_path(tmp_path):
    from mirror_gradient.reproduce import reproduce
    from qcore.reproduce import DataNotFoundError, ReproductionContext
    from qcore.rundir import RunDir

    context = ReproductionContext(
        preset="paper", run_dir=RunDir(tmp_path / "run"), seeds=(0,), data_root=tmp_path
    )
    with pytest.raises(DataNotFoundError, match="sports"):
        reproduce(context)


def test_cli_train_evaluate_robustness(synthetic_data, tmp_path, capsys):
    common = ["--data", str(synthetic_data.feature_dir), "--dataset", "synthetic", "--output", str(tmp_path)]
    code = main(["train", *common, "--model", "VBPR", "--max-steps", "2", "--alpha2", "0.3"])
    assert code == 0
    results = json.loads((tmp_path / "train" / "results.json").read_text())
    assert "recall@20" in results["test"]
    assert "alpha2: 0.3" in (tmp_path / "train" / "config.yaml").read_text()

    checkpoint = results["checkpoint"]
    assert main(["evaluate", *common, "--checkpoint", checkpoint]) == 0
    evaluated = json.loads((tmp_path / "evaluate" / "results.json").read_text())
    assert evaluated["test"]["recall@20"] == pytest.approx(results["test"]["recall@20"])
    assert main(["robustness", *common, "--checkpoint", checkpoint]) == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["train", "--alpha2", "-1"], "mg_alpha2"),
        (["train", "--model", "VBRP"], "VBPR"),
        (["train", "--max-steps", "0"], "max-steps"),
        (["evaluate", "--checkpoint", "missing.pth"], "checkpoint"),
    ],
)
def test_cli_bad_input_exits_2(synthetic_data, tmp_path, capsys, arguments, message):
    common = ["--data", str(synthetic_data.feature_dir), "--dataset", "synthetic", "--output", str(tmp_path)]
    assert main([*arguments, *common]) == 2
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert last_line.startswith("mirror-gradient")
    assert message in last_line
