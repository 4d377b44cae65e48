"""Run directories: metrics as JSON lines, final results, a Markdown report, the config and figures."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["RunDir", "write_json_atomic"]


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _finite_or_none(value: Any) -> Any:
    # JSON has no NaN or infinity; write null so every reader can parse the file.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(v) for v in value]
    return value


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_finite_or_none(obj), indent=2, default=_json_default) + "\n"
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


class RunDir:
    """A folder that collects everything one run produces.

    Layout::

        config.yaml       resolved config
        metrics.jsonl     one JSON object per logged step
        results.json      final results
        report.md         human-readable report
        figures/          plots
        checkpoints/      checkpoints (see :mod:`qcore.checkpoint`)
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    def log_metrics(self, step: int, **metrics: Any) -> None:
        """Append ``{"step": step, **metrics}`` as one line of ``metrics.jsonl``."""
        record = _finite_or_none({"step": int(step), **metrics})
        with self.metrics_path.open("a", encoding="utf-8") as stream:
            stream.write(json.dumps(record, default=_json_default) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        """Return every record of ``metrics.jsonl``; a partly written last line (from a kill) is skipped."""
        if not self.metrics_path.is_file():
            return []
        records = []
        for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def truncate_metrics(self, after_step: int) -> None:
        """Drop metric records with ``step > after_step``, used when a run resumes from a checkpoint."""
        kept = [r for r in self.read_metrics() if r.get("step", 0) <= after_step]
        text = "".join(json.dumps(r) + "\n" for r in kept)
        self.metrics_path.write_text(text, encoding="utf-8")

    def write_json(self, name: str, obj: Any) -> Path:
        """Write ``obj`` to ``<run>/<name>`` atomically."""
        return write_json_atomic(self.path / name, obj)

    def write_results(self, results: dict[str, Any]) -> Path:
        """Write the final results to ``results.json``."""
        return self.write_json("results.json", results)

    def write_report(self, markdown: str) -> Path:
        """Write ``report.md``."""
        path = self.path / "report.md"
        path.write_text(markdown.rstrip() + "\n", encoding="utf-8")
        return path

    def save_config(self, config: Any) -> Path:
        """Write the resolved config to ``config.yaml`` (a :class:`qcore.config.Config` or a mapping)."""
        import yaml

        data = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        path = self.path / "config.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path

    def subdir(self, name: str) -> RunDir:
        """Return a nested run directory."""
        return RunDir(self.path / name)

    def figure_path(self, name: str) -> Path:
        """Return ``figures/<name>``, creating the folder."""
        folder = self.path / "figures"
        folder.mkdir(exist_ok=True)
        return folder / name
