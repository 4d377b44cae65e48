"""Smoke tests of the sem command line and reproduction entry point."""

import json

from qcore.reproduce import ReproductionContext
from qcore.rundir import RunDir
from sem.cli import main
from sem.reproduce import reproduce


def test_train_with_switched_operator_and_evaluate(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(
        ["train", "--model", "cifar_resnet_test", "--dataset", "digits", "--image-size", "16", "--max-steps", "2",
         "--epochs", "1", "--batch-size", "16", "--output", str(run), "--device", "cpu",
         "--attention-kwargs", '{"use_eca": false}']
    )  # fmt: skip
    assert code == 0
    assert (run / "config.yaml").is_file()
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(run)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0.0 <= result["accuracy"] <= 100.0


def test_bad_switch_is_one_line_error(tmp_path, capsys):
    code = main(
        ["train", "--model", "cifar_resnet_test", "--max-steps", "1", "--output", str(tmp_path),
         "--attention-kwargs", '{"use_se": false, "use_eca": false, "use_ie": false}']
    )  # fmt: skip
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert "at least one operator" in error
    assert "\n" not in error


def test_smoke_reproduction_compares_plain_se_and_sem(tmp_path):
    result = reproduce(
        ReproductionContext(preset="smoke", run_dir=RunDir(tmp_path), seeds=(0,), device="cpu")
    )
    rows = {row.model: row for row in result.rows}
    assert {"plain", "se", "sem"} <= set(rows)
    assert rows["sem"].role == "method"
    assert rows["sem"].params > rows["se"].params > rows["plain"].params
    assert all("best_acc" in row.metrics for row in result.rows)
