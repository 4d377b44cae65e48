import json

import pytest
import torch
from torch import nn

from qcore.bench import compare, count_flops, count_parameters, median_time, peak_memory
from qcore.report import markdown_table
from qcore.rundir import RunDir
from qcore.testing import assert_all_parameters_get_gradients, assert_only_changed, snapshot_parameters


def test_rundir_metrics_skip_partial_last_line(tmp_path):
    run = RunDir(tmp_path / "run")
    run.log_metrics(1, loss=0.5)
    run.log_metrics(2, loss=float("nan"))
    with run.metrics_path.open("a") as stream:
        stream.write('{"step": 3, "lo')
    records = run.read_metrics()
    assert records == [{"step": 1, "loss": 0.5}, {"step": 2, "loss": None}]


def test_rundir_truncate_metrics_after_resume(tmp_path):
    run = RunDir(tmp_path)
    for step in range(5):
        run.log_metrics(step, value=step)
    run.truncate_metrics(after_step=2)
    assert [r["step"] for r in run.read_metrics()] == [0, 1, 2]


def test_rundir_results_are_valid_json(tmp_path):
    run = RunDir(tmp_path)
    run.write_results({"acc": 0.5, "bad": float("inf"), "shape": torch.tensor([1, 2])})
    assert json.loads((tmp_path / "results.json").read_text()) == {"acc": 0.5, "bad": None, "shape": [1, 2]}


def test_count_parameters_counts_shared_once():
    linear = nn.Linear(3, 3)
    model = nn.Sequential(linear, linear)
    assert count_parameters(model) == 12
    linear.bias.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 9


def test_count_flops_of_linear_layer():
    model = nn.Linear(8, 4, bias=False)
    # One (2, 8) x (8, 4) matrix product: 2 * 8 * 4 multiply-adds, two FLOPs each.
    assert count_flops(model, torch.randn(2, 8)) == 2 * 2 * 8 * 4


def test_median_time_and_peak_memory_are_positive():
    assert median_time(lambda: sum(range(1000)), warmup=1, repeats=3) > 0
    assert peak_memory(lambda: torch.ones(8_000_000).sum()) >= 0


def test_compare_adds_ratio_columns():
    rows = [{"model": "plain", "latency": 2.0}, {"model": "se", "latency": 3.0}]
    out = compare(rows, baseline="plain", metrics=["latency"])
    assert out[1]["latency_ratio"] == pytest.approx(1.5)
    with pytest.raises(ValueError, match="baseline 'x'"):
        compare(rows, baseline="x", metrics=["latency"])


def test_markdown_table_formats_cells():
    table = markdown_table([{"a": 1234, "b": 0.123456, "c": None}])
    assert table.splitlines()[2] == "| 1,234 | 0.1235 | – |"


def test_gradient_helper_finds_unused_parameter():
    model = nn.ModuleDict({"used": nn.Linear(2, 2), "unused": nn.Linear(2, 2)})
    with pytest.raises(AssertionError, match="unused"):
        assert_all_parameters_get_gradients(model, model["used"](torch.randn(1, 2)).sum())


def test_only_changed_helper_flags_frozen_update():
    model = nn.ModuleDict({"adapter": nn.Linear(2, 2), "base": nn.Linear(2, 2)})
    before = snapshot_parameters(model)
    with torch.no_grad():
        model["adapter"].weight.add_(1)
    assert_only_changed(before, model, ["adapter."])
    with torch.no_grad():
        model["base"].bias.add_(1)
    with pytest.raises(AssertionError, match=r"base\.bias"):
        assert_only_changed(before, model, ["adapter."])
