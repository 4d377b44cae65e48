"""The dwsr console script: label, bench, prepare and its error handling."""

from __future__ import annotations

import json

import pytest

from dwsr import cli
from dwsr.bench import EDSR_BASELINE, run_benchmark


def test_label_writes_figure_and_summary(tmp_path, capsys):
    code = cli.main(["label", "--skimage", "text", "page", "--scale", "2", "--output", str(tmp_path)])
    assert code == 0
    summary = json.loads((tmp_path / "labels.json").read_text())
    assert summary["rule"] == "dataset_median"
    assert summary["threshold_db"] == summary["median_db"]
    assert set(summary["images"]) == {"text", "page"}
    for entry in summary["images"].values():
        assert 0.0 < entry["hard_fraction"] < 1.0
    assert (tmp_path / "text_difficulty.png").stat().st_size > 0
    assert "median patch PSNR" in capsys.readouterr().out


def test_label_fixed_rule_needs_threshold(tmp_path, capsys):
    code = cli.main(["label", "--skimage", "camera", "--rule", "fixed", "--output", str(tmp_path)])
    assert code == 2
    assert "--threshold-db" in capsys.readouterr().err


def test_label_missing_image_fails_cleanly(tmp_path, capsys):
    code = cli.main(["label", "--images", str(tmp_path / "missing.png"), "--output", str(tmp_path)])
    assert code == 2
    error = capsys.readouterr().err
    assert "missing.png" in error
    assert len(error.strip().splitlines()) == 1


def test_unknown_subcommand_exits_2():
    assert cli.main(["fly"]) == 2


def test_prepare_makes_lr_folder(tmp_path, tiny_dataset):
    output = tmp_path / "made"
    code = cli.main(
        ["prepare", "--hr", str(tiny_dataset["train"] / "GTmod12"), "--scale", "3", "--output", str(output)]
    )
    assert code == 0
    assert sorted(p.name for p in (output / "LRbicx3").iterdir()) == [
        "astronaut.png",
        "camera.png",
        "coffee.png",
    ]


def test_benchmark_rows_and_ratios():
    tiny = {"num_feat": 8, "num_block": 1, "num_feat_recognition": 4, "num_block_recognition": 1}
    rows = run_benchmark(scale=2, lr_size=8, warmup=0, repeats=1, network=tiny)
    names = [row["model"] for row in rows]
    assert names[0] == EDSR_BASELINE
    assert names[1] == "DWSR"
    assert rows[0]["params_ratio"] == pytest.approx(1.0)
    dwsr_row, single_row = rows[1], rows[2]
    assert abs(dwsr_row["params"] - single_row["params"]) / dwsr_row["params"] < 0.1
    assert dwsr_row["gflops"] > 0
    assert dwsr_row["seconds_per_megapixel"] > 0
