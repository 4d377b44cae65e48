import json

import pytest

from qcore.registry import Registry
from qcore.reproduce import (
    DataNotFoundError,
    ReproductionContext,
    ReproductionResult,
    ResultRow,
    discover_reproductions,
    main,
    run_reproductions,
)
from qcore.rundir import RunDir


def _fake(context):
    rows = [
        ResultRow(model="plain", role="baseline", metrics={"acc": 0.5}, params=10),
        ResultRow(model="method", role="method", metrics={"acc": 0.75}, params=12),
        ResultRow(model="published", role="reference", metrics={"acc": 0.9}, notes="paper, CIFAR-10"),
    ]
    return ReproductionResult(
        package="fake",
        task="toy",
        primary_metric="acc",
        rows=rows,
        curves={"plain": ([1, 2], [0.4, 0.5])},
        report_markdown=f"seeds {list(context.seeds)}",
    )


def _broken(context):
    raise RuntimeError("boom")


def test_run_reproductions_writes_table_and_keeps_going(tmp_path):
    registry = Registry("reproduction")
    registry.add("broken", _broken)
    registry.add("fake", _fake)
    results, failures = run_reproductions(preset="smoke", output=tmp_path, registry=registry, seeds=[3])
    assert [r.package for r in results] == ["fake"]
    assert failures == {"broken": "RuntimeError: boom"}
    report = (tmp_path / "report.md").read_text()
    assert "| fake | toy | method | method | acc ↑ | 0.75 | 0.25 | 12 | – | – |  |" in report
    assert "| fake | toy | published | reference | acc ↑ | 0.9 | – | – | – | – | paper, CIFAR-10 |" in report
    assert "seeds [3]" in report
    assert (tmp_path / "comparison.png").stat().st_size > 0
    assert (tmp_path / "fake" / "figures" / "curves.png").is_file()
    assert "boom" in (tmp_path / "broken" / "error.txt").read_text()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["packages"]["fake"]["rows"][1]["metrics"] == {"acc": 0.75}


def test_primary_metric_must_be_in_every_row():
    with pytest.raises(ValueError, match="missing from rows"):
        ReproductionResult(
            package="p",
            task="t",
            primary_metric="acc",
            rows=[ResultRow(model="m", role="method", metrics={"loss": 1.0})],
        )


def test_context_rejects_unknown_preset(tmp_path):
    with pytest.raises(ValueError, match="Valid values: 'smoke', 'default', 'paper'"):
        ReproductionContext(preset="fast", run_dir=RunDir(tmp_path))


def test_require_data_explains_how_to_get_it(tmp_path):
    context = ReproductionContext(preset="paper", run_dir=RunDir(tmp_path), data_root=tmp_path)
    with pytest.raises(DataNotFoundError, match=r"cifar-10-batches-py does not exist\. Download"):
        context.require_data("cifar-10-batches-py", "Download CIFAR-10.")
    without_root = ReproductionContext(preset="paper", run_dir=RunDir(tmp_path))
    with pytest.raises(DataNotFoundError, match="--data-root"):
        without_root.require_data("x", "")


def test_cli_rejects_unknown_package(capsys):
    assert main(["--packages", "no-such-package", "--preset", "smoke"]) == 2
    assert "unknown reproduction 'no-such-package'" in capsys.readouterr().err


def test_discovery_returns_registry():
    assert isinstance(discover_reproductions(), Registry)
