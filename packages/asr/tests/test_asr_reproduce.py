"""Smoke run of the asr reproduction entry point."""

from asr.reproduce import reproduce
from qcore.reproduce import ReproductionContext
from qcore.rundir import RunDir


def test_smoke_reproduction_reports_folded_accuracy(tmp_path):
    result = reproduce(
        ReproductionContext(preset="smoke", run_dir=RunDir(tmp_path), seeds=(0,), device="cpu")
    )
    rows = {row.model: row for row in result.rows}
    assert {"plain", "se", "asr", "asr_se"} <= set(rows)
    assert rows["asr"].metrics["folded_params"] == rows["plain"].params
    assert rows["asr_se"].metrics["folded_params"] == rows["se"].params
    assert rows["asr"].metrics["folded_acc"] == rows["asr"].metrics["unfolded_acc"]
    assert rows["asr"].metrics["max_logit_difference"] < 1e-3
    assert any(row.role == "reference" for row in result.rows)
    assert "Stripe Observation" in result.report_markdown
    assert all(figure.is_file() for figure in result.figures)
