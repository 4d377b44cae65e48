"""Tests of the ``ras`` console script, the w diagnostics and the smoke reproduction."""

import json

import pytest
import torch

from qcore.reproduce import ReproductionContext
from qcore.rundir import RunDir
from ras.cli import main
from ras.diagnostics import init_gradient_report, shared_scale_summary, track_shared_scale
from ras.models import create_ras_resnet
from ras.reproduce import reproduce

SMOKE_FLAGS = ["--model", "cifar_resnet_test", "--image-size", "16", "--batch-size", "16", "--epochs", "1"]


def test_train_and_evaluate(tmp_path, capsys):
    output = tmp_path / "run"
    assert main(["train", "--output", str(output), "--max-steps", "2", "--milestones", *SMOKE_FLAGS]) == 0
    assert "attention: ras" in (output / "config.yaml").read_text()
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(output)]) == 0
    assert 0.0 <= json.loads(capsys.readouterr().out)["accuracy"] <= 100.0


def test_init_gradient_command(capsys):
    arguments = [
        "--model",
        "cifar_resnet_test",
        "--num-classes",
        "4",
        "--image-size",
        "16",
        "--sgd-steps",
        "2",
    ]
    assert main(["init-gradient", *arguments]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["w_abs_max_per_step"]) == 2
    assert report["w_grad_abs_max"] == 0.0
    assert report["w_grad_zero_share"] == 1.0
    assert report["b_grad_abs_max"] > 0.0


def test_bad_input_gives_one_line_and_exit_two(tmp_path, capsys):
    assert main(["init-gradient", "--model", "cifar_resnet_test", "--batch-size", "1"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("ras: error: batch_size must be at least 2")
    assert "\n" not in error


def test_shared_scale_summary():
    model = create_ras_resnet("cifar_resnet_test")
    with torch.no_grad():
        model.layer1[0].attn.affine.weight[0, :16] = -0.5
    summary = shared_scale_summary(model)
    assert summary["w_abs_max"] == 0.5
    assert summary["w_zero_share"] == pytest.approx(1 - 16 / (64 + 128 + 256))
    with pytest.raises(ValueError, match="no RAS"):
        shared_scale_summary(torch.nn.Linear(2, 2))


def test_init_gradient_report_restores_mode():
    model = create_ras_resnet("cifar_resnet_test", num_classes=3, weight_init=0.2)
    model.eval()
    report = init_gradient_report(model, image_size=16)
    assert not model.training
    assert report["w_grad_abs_max"] > 0.0
    assert report["modules"] == 3


def test_smoke_reproduction(tmp_path):
    context = ReproductionContext(
        preset="smoke", run_dir=RunDir(tmp_path), seeds=(0,), data_root=None, device="cpu"
    )
    result = reproduce(context)
    rows = {row.model: row for row in result.rows}
    assert {"plain", "se", "ras"} <= set(rows)
    assert rows["ras"].metrics["w_abs_max"] < 1e-3
    assert 0.0 <= rows["ras"].metrics["w_zero_share"] <= 1.0
    assert any(row.role == "reference" for row in result.rows)


def test_track_shared_scale_stays_small():
    torch.manual_seed(0)
    model = create_ras_resnet("cifar_resnet_test", num_classes=3)
    history = track_shared_scale(model, steps=2, image_size=16)
    assert len(history) == 2
    assert history[0] == 0.0
    assert history[1] < 1e-5
    with pytest.raises(ValueError, match="steps"):
        track_shared_scale(model, steps=0)
