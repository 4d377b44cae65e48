"""Smoke tests of the asr command line: train, fold, evaluate the folded checkpoint, bad input."""

import json

from asr.cli import main
from qcore.checkpoint import load_checkpoint
from qcore.vision.resnet import create_cifar_resnet


def test_train_fold_and_evaluate(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(
        ["train", "--model", "cifar_resnet_test", "--dataset", "digits", "--image-size", "16", "--max-steps", "2",
         "--epochs", "1", "--batch-size", "16", "--output", str(run), "--device", "cpu"]
    )  # fmt: skip
    assert code == 0
    assert (run / "config.yaml").is_file()
    capsys.readouterr()

    folded = tmp_path / "folded"
    assert main(["fold", "--checkpoint", str(run), "--output", str(folded)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["folded_attention"] == "none"
    assert summary["folded_acc"] == summary["unfolded_acc"]

    checkpoint = load_checkpoint(folded)
    plain = create_cifar_resnet("cifar_resnet_test", num_classes=10)
    plain.load_state_dict(checkpoint.state_dict, strict=True)

    assert main(["evaluate", "--checkpoint", str(folded)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["accuracy"] == summary["folded_acc"]


def test_bench_folded_prints_ratios(tmp_path, capsys):
    code = main(
        ["bench-folded", "--model", "cifar_resnet_test", "--repeats", "1", "--num-classes", "10",
         "--output", str(tmp_path)]
    )  # fmt: skip
    assert code == 0
    rows = json.loads((tmp_path / "bench_folded.json").read_text())
    by_name = {row["variant"]: row for row in rows}
    assert by_name["asr_folded"]["params"] == by_name["plain"]["params"]
    assert by_name["asr_se_folded"]["params"] == by_name["se"]["params"]
    assert by_name["asr_unfolded"]["params"] > by_name["plain"]["params"]
    assert "latency_ms_vs_plain" in capsys.readouterr().out


def test_fold_of_missing_checkpoint_is_one_line_error(tmp_path, capsys):
    code = main(["fold", "--checkpoint", str(tmp_path / "missing"), "--output", str(tmp_path / "out")])
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("asr: error: no checkpoint found")
    assert "\n" not in error


def test_bench_folded_bad_batch_is_rejected(capsys):
    assert main(["bench-folded", "--batch-size", "0"]) == 2
    assert "--batch-size must be a positive integer" in capsys.readouterr().err


def test_unknown_attention_is_rejected(tmp_path, capsys):
    code = main(["train", "--attention", "asr_x", "--max-steps", "1", "--output", str(tmp_path)])
    assert code == 2
    assert "asr_se" in capsys.readouterr().err
