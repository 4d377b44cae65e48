"""Three-stage training on the tiny model: falling loss, and the smoke preset of the reproduction."""

from __future__ import annotations

from moextend.data import ChatCollator
from moextend.extend import ExtensionPlan
from moextend.reproduce import reproduce
from moextend.stages import finetune_trainable_names, load_bundle, make_dataset, run_align
from moextend.training import TrainingSettings, train_parameters
from qcore.reproduce import ReproductionContext
from qcore.rundir import RunDir

from .conftest import color_samples


def _mean(values):
    return sum(values) / len(values)


def test_loss_decreases_over_stage_one_and_three(tiny_base, tmp_path):
    llm_dir, vision_dir = tiny_base
    bundle = load_bundle(llm_dir, vision_model=str(vision_dir))
    samples = color_samples(16)
    align = run_align(
        bundle,
        samples,
        TrainingSettings(learning_rate=1e-2, max_steps=20, batch_size=8, log_steps=0),
        tmp_path,
    )
    assert _mean(align.losses[-5:]) < _mean(align.losses[:5])

    bundle.model.extend(ExtensionPlan(layers=[0, 2], source_experts=[[0], [1]]))
    summary = train_parameters(
        bundle.model,
        make_dataset(bundle, samples),
        ChatCollator(bundle.tokenizer.pad_token_id),
        trainable=finetune_trainable_names(bundle.model),
        settings=TrainingSettings(learning_rate=1e-2, max_steps=30, batch_size=8, log_steps=0),
    )
    assert _mean(summary.losses[-5:]) < _mean(summary.losses[:5])


def test_reproduce_smoke(tmp_path):
    context = ReproductionContext(
        preset="smoke", run_dir=RunDir(tmp_path), seeds=(0,), data_root=None, device="cpu"
    )
    result = reproduce(context)
    assert result.primary_metric == "caption_accuracy"
    assert {row.role for row in result.rows} == {"method", "baseline", "reference"}
    method = next(row for row in result.rows if row.role == "method")
    baseline = next(row for row in result.rows if row.role == "baseline")
    assert 0.0 <= method.metrics["caption_accuracy"] <= 1.0
    assert method.params < baseline.params
    assert (tmp_path / "moextend_results.json").is_file()
    assert "MoExtend" in result.report_markdown


def test_reproduce_paper_without_data_names_the_file(tmp_path):
    import pytest

    from qcore.reproduce import DataNotFoundError

    context = ReproductionContext(
        preset="paper", run_dir=RunDir(tmp_path), seeds=(0,), data_root=tmp_path, device="cpu"
    )
    with pytest.raises(DataNotFoundError, match=r"blip_laion_cc_sbu_558k\.json"):
        reproduce(context)


def test_benchmark_rows_and_ratios():
    from moextend.benchmark import BenchmarkSize, format_results, run_benchmark

    size = BenchmarkSize(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_experts=4,
        batch_size=2,
        sequence_length=8,
    )
    rows = run_benchmark(size=size, repeats=1)
    by_name = {row["model"]: row for row in rows}
    assert set(by_name) == {
        "original block forward",
        "extended block forward",
        "full fine-tuning step",
        "MoExtend step",
    }
    moextend = by_name["MoExtend step"]
    assert moextend["trainable_ratio"] < 0.5
    assert moextend["saved_activation_bytes_ratio"] < 1.0
    assert moextend["grad_and_optimizer_bytes_ratio"] == moextend["trainable_ratio"]
    assert "MoExtend step" in format_results(rows)
