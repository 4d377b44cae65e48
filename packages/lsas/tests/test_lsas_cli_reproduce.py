"""Tests of the ``lsas`` console script and the smoke reproduction."""

import json

import pytest

from lsas.cli import main
from lsas.reproduce import reproduce
from qcore.reproduce import ReproductionContext
from qcore.rundir import RunDir

SMOKE_FLAGS = ["--model", "cifar_resnet_test", "--image-size", "16", "--batch-size", "16", "--epochs", "1"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("lsas_cli") / "run"
    code = main(["train", "--output", str(output), "--max-steps", "2", "--milestones", *SMOKE_FLAGS])
    assert code == 0
    return output


def test_train_writes_config_with_official_stage(trained_run, capsys):
    config = (trained_run / "config.yaml").read_text()
    assert "attention: lsas" in config
    assert "- 2" in config
    assert (trained_run / "checkpoints" / "last").is_dir()


def test_evaluate_reads_checkpoint(trained_run, capsys):
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(trained_run)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["dataset"] == "digits"
    assert 0.0 <= result["accuracy"] <= 100.0


def test_diagnose_writes_metrics_and_figure(trained_run, tmp_path, capsys):
    output = tmp_path / "diag"
    assert main(["diagnose", "--checkpoint", str(trained_run), "--images", "4", "--output", str(output)]) == 0
    rows = json.loads((output / "bias.json").read_text())
    assert len(rows) == 1
    assert rows[0]["images"] == 4
    assert 0.0 <= rows[0]["mask_coverage"] <= 1.0
    assert (output / "figures" / "attention_bias.png").is_file()


def test_bad_input_gives_one_line_and_exit_two(tmp_path, capsys):
    assert main(["train", "--output", str(tmp_path / "x"), "--attention", "lsas_order9", *SMOKE_FLAGS]) == 2
    assert "lsas_order9" in capsys.readouterr().err
    assert main(["diagnose", "--checkpoint", str(tmp_path / "missing")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("lsas: error: no checkpoint found")
    assert "\n" not in error


def test_smoke_reproduction(tmp_path):
    context = ReproductionContext(
        preset="smoke", run_dir=RunDir(tmp_path), seeds=(0,), data_root=None, device="cpu"
    )
    result = reproduce(context)
    rows = {row.model: row for row in result.rows}
    assert {"plain", "se", "lsas"} <= set(rows)
    assert rows["lsas"].role == "method"
    for name in ("plain", "se", "lsas"):
        assert "outside_share" in rows[name].metrics
        assert "mask_coverage" in rows[name].metrics
    assert rows["lsas"].params < rows["se"].params
    assert any(path.name == "attention_bias.png" and path.is_file() for path in result.figures)
    assert "Attention bias" in result.report_markdown
    assert (tmp_path / "report.md").read_text().strip() == result.report_markdown.strip()


def test_paper_preset_without_data_names_the_path(tmp_path):
    context = ReproductionContext(
        preset="paper", run_dir=RunDir(tmp_path), seeds=(0,), data_root=tmp_path / "data", device="cpu"
    )
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        reproduce(context)
