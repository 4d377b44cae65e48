import json

import pytest

from clot.cli import main
from clot.reproduce import reproduce
from qcore.reproduce import DataNotFoundError, ReproductionContext
from qcore.rundir import RunDir


def test_smoke_preset_runs_every_stage(tmp_path):
    context = ReproductionContext(
        preset="smoke", run_dir=RunDir(tmp_path), seeds=(0,), data_root=None, device="cpu"
    )
    result = reproduce(context)
    assert [row.role for row in result.rows] == ["reference", "baseline", "method"]
    for row in result.rows:
        assert 0.0 <= row.metrics["avg"] <= 1.0
        assert 0.0 <= row.metrics["acc_3T1"] <= 1.0
    run = tmp_path / "seed0"
    for name in ("config.yaml", "instructions_stage1.jsonl", "instructions_refined.jsonl", "results.json"):
        assert (run / name).is_file()
    assert (run / "adapter_stage1" / "adapter_config.json").is_file()
    assert (run / "adapter_stage2" / "adapter_config.json").is_file()
    counts = json.loads((run / "refine_counts.json").read_text())
    assert counts["kept"] + counts["dropped_human_won"] + counts["dropped_no_candidates"] == 2
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"stage1_loss", "stage2_loss"} <= {key for record in metrics for key in record}
    assert "CLoT" in result.report_markdown


def test_paper_preset_needs_data(tmp_path):
    context = ReproductionContext(preset="paper", run_dir=RunDir(tmp_path), data_root=tmp_path / "missing")
    with pytest.raises(DataNotFoundError, match="CLoT-Oogiri-GO"):
        reproduce(context)


def test_cli_bad_input_exits_2(tmp_path, capsys):
    assert main(["train", "--run-dir", str(tmp_path / "run"), "--data-root", str(tmp_path / "none")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("clot: error:")
    assert "CLoT-Oogiri-GO" in error
    assert main(["evaluate", "--run-dir", str(tmp_path / "run"), "--set", "lora_rnak=4"]) == 2
    assert "lora_rank" in capsys.readouterr().err
    assert main(["refine", "--run-dir", str(tmp_path / "empty")]) == 2
    assert "clot train" in capsys.readouterr().err


def test_cli_sample_data_and_build(tmp_path):
    assert main(["sample-data", str(tmp_path / "data")]) == 0
    assert (tmp_path / "data" / "jp.jsonl").is_file()
    output = tmp_path / "instructions.jsonl"
    argv = ["build-instructions", "--run-dir", str(tmp_path / "run"), "--data-root", str(tmp_path / "data")]
    assert main([*argv, "--output", str(output), "--set", "languages=[en, ja]"]) == 0
    records = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert {record["language"] for record in records} == {"en", "ja"}
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "- ja" in saved
