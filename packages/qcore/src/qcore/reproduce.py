"""The main job: run every installed method's reproduction beside its baselines and compare them.

Packages announce a reproduction through the ``qcore.reproductions`` entry-point group::

    [project.entry-points."qcore.reproductions"]
    spenet = "spenet.reproduce:reproduce"

The function takes a :class:`ReproductionContext` and returns a :class:`ReproductionResult`. qcore itself
imports no method package: it only loads what the entry points name.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from qcore.config import check_choice
from qcore.registry import Registry
from qcore.report import markdown_table
from qcore.rundir import RunDir

__all__ = [
    "ENTRY_POINT_GROUP",
    "PRESETS",
    "DataNotFoundError",
    "ReproductionContext",
    "ReproductionResult",
    "ResultRow",
    "discover_reproductions",
    "main",
    "run_reproductions",
]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "qcore.reproductions"
PRESETS = ("smoke", "default", "paper")
ROLES = ("method", "baseline", "reference")
DEFAULT_SEEDS = {"smoke": (0,), "default": (0, 1, 2), "paper": (0, 1, 2)}


class DataNotFoundError(FileNotFoundError):
    """Raised when a preset needs a data folder that is missing; the message explains how to get the data."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReproductionContext:
    """What the main job hands to one package's reproduction.

    Attributes:
        preset: ``"smoke"`` (seconds, for tests), ``"default"`` (data that ships with the packages, a few
            minutes on two CPU cores) or ``"paper"`` (the paper's recipe on the user's data, normally a GPU).
        run_dir: This package's own output folder.
        seeds: Seeds to run every compared model with.
        data_root: The user's data folder, needed by the ``"paper"`` preset.
        device: ``"cpu"`` or ``"cuda"``.
        cache_dir: A folder shared by all packages of one main-job run, for results that several packages
            would otherwise recompute (the same baseline trained with the same seed, for example).
    """

    preset: str
    run_dir: RunDir
    seeds: tuple[int, ...] = (0,)
    data_root: Path | None = None
    device: str = "cpu"
    cache_dir: Path | None = None

    def __post_init__(self) -> None:
        check_choice("preset", self.preset, PRESETS)
        if not self.seeds:
            raise ValueError("seeds must name at least one seed")

    def require_data(self, subpath: str, how_to_get: str) -> Path:
        """Return ``data_root / subpath``, or raise :class:`DataNotFoundError` saying how to get it."""
        if self.data_root is None:
            raise DataNotFoundError(
                f"the {self.preset!r} preset needs a data folder containing {subpath!r}; "
                f"pass --data-root DIR. {how_to_get}"
            )
        path = Path(self.data_root) / subpath
        if not path.exists():
            raise DataNotFoundError(f"data not found: {path} does not exist. {how_to_get}")
        return path


@dataclasses.dataclass(kw_only=True)
class ResultRow:
    """One compared model in a reproduction."""

    model: str
    role: str
    metrics: dict[str, float]
    params: int | None = None
    flops: int | None = None
    seconds: float | None = None
    notes: str = ""

    def __post_init__(self) -> None:
        check_choice("role", self.role, ROLES)


@dataclasses.dataclass(kw_only=True)
class ReproductionResult:
    """Result of one package's reproduction, returned to the main job.

    Attributes:
        package: Distribution name of the package.
        task: Short description of the task and data, e.g. ``"digits classification"``.
        primary_metric: The metric the comparison table shows; a key of every row's ``metrics``.
        higher_is_better: Direction of ``primary_metric``.
        rows: Method, baseline and reference rows.
        figures: Figure files, written under the package's run folder.
        report_markdown: The package's own section of the combined report.
        curves: Training curves, label -> (x values, y values), drawn in the combined report.
        curve_label: Axis label of ``curves`` as ``(x label, y label)``.
    """

    package: str
    task: str
    primary_metric: str
    higher_is_better: bool = True
    rows: list[ResultRow] = dataclasses.field(default_factory=list)
    figures: list[Path] = dataclasses.field(default_factory=list)
    report_markdown: str = ""
    curves: dict[str, tuple[list[float], list[float]]] = dataclasses.field(default_factory=dict)
    curve_label: tuple[str, str] = ("epoch", "value")

    def __post_init__(self) -> None:
        missing = [row.model for row in self.rows if self.primary_metric not in row.metrics]
        if missing:
            raise ValueError(
                f"{self.package}: primary metric {self.primary_metric!r} is missing from rows {missing}"
            )


Reproduction = Callable[[ReproductionContext], ReproductionResult]


def discover_reproductions() -> Registry:
    """Return a registry of the reproductions announced by installed packages, keyed by entry-point name."""
    registry = Registry("reproduction")
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        registry.add(entry.name, entry)
    return registry


def _summary_rows(result: ReproductionResult) -> list[dict[str, Any]]:
    baselines = [r.metrics[result.primary_metric] for r in result.rows if r.role == "baseline"]
    best_baseline = None
    if baselines:
        best_baseline = max(baselines) if result.higher_is_better else min(baselines)
    rows = []
    for row in result.rows:
        value = row.metrics[result.primary_metric]
        delta = None
        if row.role == "method" and best_baseline is not None and value is not None:
            delta = value - best_baseline
        rows.append(
            {
                "package": result.package,
                "task": result.task,
                "model": row.model,
                "role": row.role,
                "metric": result.primary_metric + (" ↑" if result.higher_is_better else " ↓"),
                "value": value,
                "Δ vs best baseline": delta,
                "params": row.params,
                "GFLOPs": row.flops / 1e9 if row.flops is not None else None,
                "time (s)": row.seconds,
                "notes": row.notes,
            }
        )
    return rows


def _comparison_figure(results: Sequence[ReproductionResult], path: Path) -> Path | None:
    if not results:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(results)
    columns = min(count, 3)
    rows = (count + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), dpi=110, squeeze=False)
    colors = {"method": "tab:red", "baseline": "tab:blue", "reference": "tab:gray"}
    for axis, result in zip(axes.flat, results, strict=False):
        # Reference rows (published numbers, untrained models) often come from another dataset or scale,
        # so the bars compare only what this run trained.
        compared = [row for row in result.rows if row.role != "reference"] or result.rows
        labels = [row.model for row in compared]
        values = [row.metrics[result.primary_metric] for row in compared]
        axis.bar(range(len(labels)), values, color=[colors[row.role] for row in compared])
        axis.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
        arrow = "higher is better" if result.higher_is_better else "lower is better"
        axis.set_title(f"{result.package}: {result.primary_metric}\n({arrow})", fontsize=9)
        finite = [v for v in values if v is not None]
        if finite:
            low, high = min(finite), max(finite)
            margin = (high - low) * 0.5 or abs(high) * 0.05 or 1.0
            axis.set_ylim(low - margin, high + margin)
        axis.grid(axis="y", alpha=0.3)
    for axis in list(axes.flat)[count:]:
        axis.axis("off")
    figure.suptitle("Method (red) against baselines (blue)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def _curves_figure(result: ReproductionResult, path: Path) -> Path | None:
    if not result.curves:
        return None
    from qcore.plots import plot_curves

    return plot_curves(
        result.curves,
        path=path,
        title=f"{result.package}: {result.task}",
        xlabel=result.curve_label[0],
        ylabel=result.curve_label[1],
    )


def run_reproductions(
    *,
    preset: str = "default",
    packages: Sequence[str] | None = None,
    output: str | Path = "runs/reproduce",
    seeds: Sequence[int] | None = None,
    data_root: str | Path | None = None,
    device: str = "cpu",
    registry: Registry | None = None,
) -> tuple[list[ReproductionResult], dict[str, str]]:
    """Run the selected reproductions one after another and write the combined report.

    A package whose reproduction raises is reported as failed and the others still run.

    Returns:
        The results of the packages that finished, and the error message of each that failed.
    """
    check_choice("preset", preset, PRESETS)
    registry = registry if registry is not None else discover_reproductions()
    if not len(registry):
        raise RuntimeError(
            f"no reproductions are installed (entry-point group {ENTRY_POINT_GROUP!r}); "
            "install at least one method package, e.g. `uv sync` in the repository root"
        )
    names = list(packages) if packages else registry.names()
    entries = {name: registry.get(name) for name in names}

    root = RunDir(output)
    cache_dir = root.path / "cache"
    cache_dir.mkdir(exist_ok=True)
    seed_tuple = tuple(seeds) if seeds else DEFAULT_SEEDS[preset]
    results: list[ReproductionResult] = []
    failures: dict[str, str] = {}
    timings: dict[str, float] = {}

    for name, entry in entries.items():
        package_dir = root.subdir(name)
        context = ReproductionContext(
            preset=preset,
            run_dir=package_dir,
            seeds=seed_tuple,
            data_root=Path(data_root) if data_root is not None else None,
            device=device,
            cache_dir=cache_dir,
        )
        logger.info("running %s (preset %s, seeds %s)", name, preset, list(seed_tuple))
        start = time.perf_counter()
        try:
            reproduce = entry.load() if hasattr(entry, "load") else entry
            result = reproduce(context)
            if not isinstance(result, ReproductionResult):
                raise TypeError(f"{name} returned {type(result).__name__}, not a ReproductionResult")
        except KeyboardInterrupt:
            raise
        except Exception as error:
            failures[name] = f"{type(error).__name__}: {error}"
            (package_dir.path / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
            logger.error(
                "%s failed: %s (traceback in %s)", name, failures[name], package_dir.path / "error.txt"
            )
            continue
        finally:
            timings[name] = time.perf_counter() - start
        results.append(result)
        _write_outputs(root, preset, results, failures, timings)
    _write_outputs(root, preset, results, failures, timings)
    return results, failures


def _write_outputs(
    root: RunDir,
    preset: str,
    results: list[ReproductionResult],
    failures: dict[str, str],
    timings: dict[str, float],
) -> None:
    summary = [row for result in results for row in _summary_rows(result)]
    comparison_png = _comparison_figure(results, root.path / "comparison.png")

    lines = [
        f"# Reproductions, preset `{preset}`",
        "",
        "Each method against its baselines, trained with the same seeds on the same data. `value` is the",
        "primary metric (mean over seeds where a package ran several); `Δ` is method minus best baseline.",
        "Reference rows (published numbers, untrained models) are listed for context: their `notes` say",
        "where they come from, and they are left out of the bar charts.",
        "",
        markdown_table(summary),
        "",
    ]
    if comparison_png is not None:
        lines += ["![comparison](comparison.png)", ""]
    if failures:
        lines += ["## Failed", ""]
        lines += [f"- `{name}`: {message} (see `{name}/error.txt`)" for name, message in failures.items()]
        lines.append("")
    for result in results:
        lines += [f"## {result.package}: {result.task}", ""]
        lines.append(f"Wall time: {timings.get(result.package, float('nan')):.1f} s.")
        lines.append("")
        curves = _curves_figure(result, root.path / result.package / "figures" / "curves.png")
        if curves is not None:
            lines += [f"![{result.package} curves]({curves.relative_to(root.path)})", ""]
        if result.report_markdown:
            lines += [_relink(result.report_markdown, result.package), ""]
        for figure in result.figures:
            figure = Path(figure)
            try:
                relative = figure.resolve().relative_to(root.path.resolve())
            except ValueError:
                relative = figure
            lines += [f"![{figure.stem}]({relative})", ""]

    root.write_report("\n".join(lines))
    (root.path / "comparison.md").write_text(markdown_table(summary) + "\n", encoding="utf-8")
    root.write_results(
        {
            "preset": preset,
            "packages": {
                r.package: {
                    "task": r.task,
                    "primary_metric": r.primary_metric,
                    "higher_is_better": r.higher_is_better,
                    "rows": [dataclasses.asdict(row) for row in r.rows],
                    "seconds": timings.get(r.package),
                }
                for r in results
            },
            "failures": failures,
        }
    )


def _relink(markdown: str, package: str) -> str:
    # Package sections link figures relative to their own folder; the combined report sits one level up.
    return markdown.replace("](figures/", f"]({package}/figures/")


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="qcore-reproduce",
        description="Run every installed method's reproduction beside its baselines and write one "
        "comparison table with plots.",
    )
    parser.add_argument("--preset", default="default", help=f"one of {', '.join(PRESETS)} (default: default)")
    parser.add_argument(
        "--packages", default=None, help="comma-separated package names (default: all installed)"
    )
    parser.add_argument("--output", default=None, help="output folder (default: runs/reproduce-<preset>)")
    parser.add_argument(
        "--seeds", default=None, help="comma-separated seeds (default: 0 for smoke, 0,1,2 otherwise)"
    )
    parser.add_argument("--data-root", default=None, help="data folder for the paper preset")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--list", action="store_true", help="list the installed reproductions and exit")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point of ``qcore-reproduce``."""
    from qcore.logging import setup_logging

    args = _parse_args(argv)
    setup_logging(args.log_level)
    registry = discover_reproductions()
    if args.list:
        for name in registry.names():
            print(name)
        return 0
    try:
        check_choice("preset", args.preset, PRESETS)
        packages = [p.strip() for p in args.packages.split(",") if p.strip()] if args.packages else None
        for name in packages or []:
            registry.get(name)
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    except ValueError as error:
        print(f"qcore-reproduce: error: {error}", file=sys.stderr)
        return 2
    if args.device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        device = args.device
    output = args.output or f"runs/reproduce-{args.preset}"
    results, failures = run_reproductions(
        preset=args.preset,
        packages=packages,
        output=output,
        seeds=seeds,
        data_root=args.data_root,
        device=device,
        registry=registry,
    )
    summary = [row for result in results for row in _summary_rows(result)]
    print(markdown_table(summary))
    for name, message in failures.items():
        print(f"FAILED {name}: {message}", file=sys.stderr)
    print(f"\nreport: {Path(output) / 'report.md'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
