"""Tests of SPEM training: the penalised loss, the CLI and the reproduction entry point."""

from __future__ import annotations

import json
from importlib.metadata import entry_points

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch.utils.data import DataLoader

from qcore.reproduce import ReproductionContext
from qcore.rundir import RunDir
from qcore.vision.data import TensorImageDataset, build_datasets
from qcore.vision.resnet import create_cifar_resnet
from qcore.vision.train import TrainConfig, train_classifier
from spenet.cli import main
from spenet.reproduce import reproduce

TINY = ["--model", "cifar_resnet_test", "--image-size", "16", "--batch-size", "16", "--device", "cpu"]


@pytest.fixture(scope="module")
def tiny_data():
    train, test, _ = build_datasets("digits", image_size=16, seed=0)
    common = {"mean": train.mean.flatten().tolist(), "std": train.std.flatten().tolist()}
    return (
        TensorImageDataset(train.images[:32], train.labels[:32], augment=False, **common),
        TensorImageDataset(test.images[:40], test.labels[:40], **common),
    )


def test_training_loss_is_ce_plus_penalty(tmp_path, tiny_data):
    torch.manual_seed(0)
    model = create_cifar_resnet("cifar_resnet_test", attn_layer="spem")
    config = TrainConfig(epochs=1, max_steps=1, batch_size=16, image_size=16, device="cpu", save_best=False)
    results = train_classifier(model, config, tmp_path, datasets=tiny_data)
    record = results["history"][0]
    # Three SPEM blocks with ‖(0.5, 0.5)‖² = 0.5 each before the first update.
    assert record["train_aux"] == pytest.approx(1.5)
    assert record["train_loss"] == pytest.approx(record["train_ce"] + 0.1 * 1.5, rel=1e-6)

    model.eval()
    _, test = tiny_data
    with torch.no_grad():
        logits = torch.cat([model(images) for images, _ in DataLoader(test, batch_size=40)])
    plain_ce = F.cross_entropy(logits, test.labels)
    assert record["test_loss"] == pytest.approx(float(plain_ce), rel=1e-5)


def test_cli_train_writes_config_and_evaluates(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--output", str(run), "--max-steps", "1", *TINY]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 1
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["attention"] == "spem"
    assert resolved["aux_loss_weight"] == 0.1
    assert main(["evaluate", "--checkpoint", str(run / "checkpoints" / "last")]) == 0
    assert json.loads(capsys.readouterr().out)["samples"] == 450


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--attention", "spen", *TINY], "Did you mean 'spem'"),
        (["train", "--aux-loss-weight", "-0.1", *TINY], "aux_loss_weight"),
        (
            ["train", "--model", "cifar_resnet_test", "--attention-kwargs", "{bad", "--device", "cpu"],
            "not JSON",
        ),
    ],
)
def test_cli_bad_input_exits_2(tmp_path, capsys, argv, message):
    assert main([*argv, "--output", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert message in error
    assert error.count("\n") == 1


def test_cli_bench(capsys):
    argv = ["bench", "--model", "cifar_resnet_test", "--batch-size", "2", "--repeats", "1"]
    assert main(argv) == 0
    output = capsys.readouterr().out
    assert "| spem |" in output
    assert "params_vs_se" in output


def test_reproduce_smoke(tmp_path):
    context = ReproductionContext(preset="smoke", run_dir=RunDir(tmp_path), seeds=(0,), device="cpu")
    result = reproduce(context)
    assert result.package == "spenet"
    assert [row.model for row in result.rows] == ["plain", "se", "spem"]
    assert [row.role for row in result.rows] == ["baseline", "baseline", "method"]
    spem_row = result.rows[2]
    # One bottleneck per stage with 64, 128 and 256 output channels; SPEM adds 4C + 2 parameters each.
    assert spem_row.params == result.rows[0].params + sum(4 * channels + 2 for channels in (64, 128, 256))
    assert 0 <= spem_row.metrics["best_acc"] <= 100
    assert (tmp_path / "report.md").is_file()


def test_reproduce_paper_needs_cifar(tmp_path):
    from qcore.reproduce import DataNotFoundError

    context = ReproductionContext(preset="paper", run_dir=RunDir(tmp_path), seeds=(0,), data_root=tmp_path)
    with pytest.raises(DataNotFoundError, match="cifar-100-python"):
        reproduce(context)


def test_entry_point_registered():
    names = {entry.name: entry.value for entry in entry_points(group="qcore.reproductions")}
    assert names.get("spenet") == "spenet.reproduce:reproduce"
