"""Tests of the shared attention CLI, the reproduction runner and the benchmark helper."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from qcore.reproduce import ReproductionContext, ResultRow
from qcore.rundir import RunDir
from qcore.vision.benchmark import benchmark_attention_variants
from qcore.vision.cli import build_attention_cli
from qcore.vision.reproduction import Variant, run_attention_reproduction

TINY = ["--model", "cifar_resnet_test", "--image-size", "16", "--batch-size", "16", "--device", "cpu"]


@pytest.fixture(scope="module")
def main():
    return build_attention_cli("attn-test", method_names=["se"], default_method="se")


def test_cli_train_then_evaluate(tmp_path, main, capsys):
    config_file = tmp_path / "recipe.yaml"
    config_file.write_text(yaml.safe_dump({"lr": 0.05, "epochs": 3, "max_steps": 5}))
    run = tmp_path / "run"
    code = main(["train", "--config", str(config_file), "--output", str(run), "--max-steps", "1", *TINY])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 1
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["lr"] == 0.05
    assert resolved["max_steps"] == 1
    assert resolved["attention"] == "se"

    assert main(["evaluate", "--checkpoint", str(run)]) == 0
    evaluation = json.loads(capsys.readouterr().out)
    assert evaluation["samples"] == 450
    assert 0 <= evaluation["accuracy"] <= 100


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--attention", "sse", *TINY], "unknown attention"),
        (["train", "--lr", "-1", *TINY], "lr"),
        (["train", "--config", "missing.yaml"], "config file not found"),
        (["evaluate", "--checkpoint", "nowhere"], "no checkpoint found"),
        (["train", "--dataset", "cifar10", *TINY], "needs root"),
    ],
)
def test_cli_bad_input_exits_2(tmp_path, main, capsys, argv, message):
    assert main([*argv, "--output", str(tmp_path)] if argv[0] == "train" else argv) == 2
    error = capsys.readouterr().err
    assert message in error
    assert "Traceback" not in error


def test_cli_bench(main, capsys, tmp_path):
    argv = [
        "bench",
        "--model",
        "cifar_resnet_test",
        "--batch-size",
        "2",
        "--repeats",
        "1",
        "--output",
        str(tmp_path),
    ]
    assert main(argv) == 0
    assert "params_vs_plain" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "bench.json").read_text())) == 2


def test_benchmark_ratios():
    rows = benchmark_attention_variants(
        {"se": "se"}, model="cifar_resnet_test", batch_size=2, repeats=1, warmup=0
    )
    by_name = {row["variant"]: row for row in rows}
    assert list(by_name) == ["plain", "se"]
    assert by_name["plain"]["params_vs_plain"] == 1.0
    assert by_name["se"]["params"] > by_name["plain"]["params"]
    assert by_name["se"]["params_vs_se"] == 1.0
    assert by_name["se"]["flops_vs_plain"] >= 1.0


def test_smoke_reproduction_and_cache(tmp_path):
    cache = tmp_path / "cache"
    context = ReproductionContext(
        preset="smoke", run_dir=RunDir(tmp_path / "pkg"), seeds=(0,), device="cpu", cache_dir=cache
    )
    reference = ResultRow(model="published SE", role="reference", metrics={"best_acc": 75.0})
    variants = {"plain": None, "se": "se", "half": Variant(attn_layer="se", attn_stages=[2])}
    result = run_attention_reproduction(context, package="demo", variants=variants, references=[reference])
    roles = {row.model: row.role for row in result.rows}
    assert roles == {"plain": "baseline", "se": "baseline", "half": "method", "published SE": "reference"}
    plain = result.rows[0]
    assert 0 <= plain.metrics["best_acc"] <= 100
    assert plain.params < result.rows[1].params
    assert result.figures[0].is_file()
    assert "published SE" in result.report_markdown
    assert set(result.curves) == {"plain", "se", "half"}
    cached = sorted(cache.rglob("*.json"))
    # plain, se and the stage-masked variant are name-only specs, so all three are cached.
    assert len(cached) == 3

    again = run_attention_reproduction(
        ReproductionContext(preset="smoke", run_dir=RunDir(tmp_path / "other"), seeds=(0,), cache_dir=cache),
        package="other",
        variants={"plain": None},
    )
    assert again.rows[0].metrics == plain.metrics
    assert not (tmp_path / "other" / "runs").exists()


def test_paper_preset_needs_data(tmp_path):
    from qcore.reproduce import DataNotFoundError

    context = ReproductionContext(preset="paper", run_dir=RunDir(tmp_path), seeds=(0,), data_root=tmp_path)
    with pytest.raises(DataNotFoundError, match="cifar-100-python"):
        run_attention_reproduction(context, package="demo", variants={"plain": None})


def test_cli_train_is_reproducible(tmp_path, main, capsys):
    from qcore.checkpoint import load_checkpoint

    for name in ("first", "second"):
        assert (
            main(["train", "--output", str(tmp_path / name), "--max-steps", "1", "--seed", "3", *TINY]) == 0
        )
    capsys.readouterr()
    first = load_checkpoint(tmp_path / "first" / "checkpoints" / "last").state_dict
    second = load_checkpoint(tmp_path / "second" / "checkpoints" / "last").state_dict
    for key, tensor in first.items():
        assert torch.equal(tensor, second[key]), key
