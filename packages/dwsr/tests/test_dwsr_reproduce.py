"""The qcore reproduction entry point: smoke preset end to end, and errors for missing data."""

from __future__ import annotations

import math

import pytest

from dwsr.reproduce import reproduce
from qcore.reproduce import DataNotFoundError, ReproductionContext
from qcore.rundir import RunDir


def test_smoke_preset_runs_end_to_end(tmp_path):
    context = ReproductionContext(
        preset="smoke", run_dir=RunDir(tmp_path), seeds=(0,), data_root=None, device="cpu"
    )
    result = reproduce(context)
    assert [row.role for row in result.rows] == ["reference", "baseline", "method"]
    for row in result.rows:
        for metric in ("psnr", "ssim", "psnr_easy", "psnr_hard", "ssim_easy", "ssim_hard"):
            assert math.isfinite(row.metrics[metric]), (row.model, metric)
    baseline, method = result.rows[1], result.rows[2]
    assert abs(baseline.params - method.params) / method.params < 0.1
    for figure in result.figures:
        assert figure.is_file()
    assert "dwsr_crops" in result.report_markdown
    assert (tmp_path / "experiments").is_dir()


def test_paper_preset_needs_data_root(tmp_path):
    context = ReproductionContext(preset="paper", run_dir=RunDir(tmp_path), seeds=(0,), data_root=None)
    with pytest.raises(DataNotFoundError, match="DIV2K"):
        reproduce(context)


def test_paper_preset_names_missing_benchmarks(tmp_path):
    data_root = tmp_path / "data"
    for scale in (2, 3, 4):
        (data_root / "DIV2K" / "DIV2K_train_LR_bicubic" / f"X{scale}").mkdir(parents=True)
    (data_root / "DIV2K" / "DIV2K_train_HR").mkdir(parents=True)
    context = ReproductionContext(
        preset="paper", run_dir=RunDir(tmp_path / "run"), seeds=(0,), data_root=data_root
    )
    with pytest.raises(DataNotFoundError) as raised:
        reproduce(context)
    message = str(raised.value)
    for name in ("Set5", "Set14", "BSD100", "Urban100"):
        assert str(data_root / name / "GTmod12") in message
    assert "DatasetPreparation" in message
