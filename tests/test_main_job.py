"""Runs the README's main command at the smoke preset over every installed method package."""

import json
from importlib.metadata import entry_points

from qcore.reproduce import main


def test_main_job_smoke_runs_every_package(tmp_path, capsys):
    installed = sorted(entry.name for entry in entry_points(group="qcore.reproductions"))
    assert installed, "no reproduction is installed"

    exit_code = main(["--preset", "smoke", "--output", str(tmp_path), "--log-level", "WARNING"])
    printed = capsys.readouterr()

    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["failures"] == {}, printed.err
    assert exit_code == 0
    assert sorted(saved["packages"]) == installed
    for package, result in saved["packages"].items():
        roles = {row["role"] for row in result["rows"]}
        assert "method" in roles, f"{package} reports no method row"
        assert "baseline" in roles, f"{package} reports no baseline row"
    for package in installed:
        assert f"| {package} |" in printed.out
    assert (tmp_path / "comparison.png").stat().st_size > 0
    assert "## Failed" not in (tmp_path / "report.md").read_text()
