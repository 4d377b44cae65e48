"""Console script and reproduction entry point on the tiny components."""

from __future__ import annotations

import json

import pytest
import yaml

from qcore.reproduce import DataNotFoundError, ReproductionContext
from qcore.rundir import RunDir
from sur_adapter.cli import main
from sur_adapter.config import TrainConfig
from sur_adapter.reproduce import reproduce
from sur_adapter.teacher import save_prompt_vectors


def test_train_then_generate(tmp_path, data_root, teacher_vectors, capsys):
    vectors_file = save_prompt_vectors(teacher_vectors, tmp_path / "vectors.pt", official_format=True)
    config_file = tmp_path / "train.yaml"
    config_file.write_text(yaml.safe_dump({"train_batch_size": 2, "learning_rate": 5e-4}))
    output = tmp_path / "run"
    status = main(
        [
            "train",
            "--preset",
            "tiny",
            "--config",
            str(config_file),
            "--data-root",
            str(data_root),
            "--teacher-vectors",
            str(vectors_file),
            "--output-dir",
            str(output),
            "--max-steps",
            "1",
            "--validation-steps",
            "1",
            "--validation-inference-steps",
            "2",
            "--resolution",
            "16",
            "--learning-rate",
            "1e-3",
        ]
    )
    assert status == 0
    resolved = TrainConfig.load(output / "config.yaml")
    assert resolved.train_batch_size == 2
    assert resolved.learning_rate == 1e-3
    assert resolved.max_train_steps == 1
    assert (output / "validation" / "step-000001.png").is_file()
    capsys.readouterr()

    image = tmp_path / "samples.png"
    status = main(
        [
            "generate",
            "--adapter",
            str(output / "adapter"),
            "--prompt",
            "a cat",
            "--steps",
            "2",
            "--height",
            "16",
            "--width",
            "16",
            "--compare",
            "--output",
            str(image),
        ]
    )
    assert status == 0
    assert image.is_file()


def test_bad_input_is_one_line_and_status_2(tmp_path, capsys):
    status = main(
        [
            "train",
            "--data-root",
            str(tmp_path / "missing"),
            "--output-dir",
            str(tmp_path / "run"),
            "--max-steps",
            "1",
        ]
    )
    assert status == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("sur-adapter train: error: Data folder not found")
    assert "\n" not in error
    assert main(["train", "--adapter-weight", "2", "--output-dir", str(tmp_path / "run")]) == 2
    assert "adapter_weight" in capsys.readouterr().err


def test_cache_features_exports_official_format(tmp_path, data_root, capsys):
    export = tmp_path / "39.pt"
    status = main(
        [
            "cache-features",
            "--data-root",
            str(data_root),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--export",
            str(export),
        ]
    )
    assert status == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == {"prompts": 4, "dim": 384, "cache": summary["cache"]}
    assert export.is_file()


def test_reproduce_smoke(tmp_path):
    context = ReproductionContext(
        preset="smoke", run_dir=RunDir(tmp_path), seeds=(0,), data_root=None, device="cpu"
    )
    result = reproduce(context)
    assert [row.model for row in result.rows] == ["no adapter", "sur-adapter", "sur-adapter (official code)"]
    for row in result.rows:
        assert row.metrics["simple_complex_distance"] > 0
    assert result.figures and result.figures[0].is_file()


def test_reproduce_paper_without_data(tmp_path):
    context = ReproductionContext(
        preset="paper", run_dir=RunDir(tmp_path / "run"), data_root=tmp_path, device="cpu"
    )
    with pytest.raises(DataNotFoundError, match=r"SURD/metadata\.jsonl.*zhongshsh/SURD"):
        reproduce(context)
