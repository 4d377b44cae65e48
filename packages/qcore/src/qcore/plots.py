"""Matplotlib figures for reports, drawn off-screen."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

__all__ = ["bar_chart", "plot_curves"]


def plot_curves(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    path: str | Path,
    title: str,
    xlabel: str,
    ylabel: str,
) -> Path:
    """Draw one line per entry of ``series`` (label -> (x values, y values)) and save it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axis = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for label, (xs, ys) in series.items():
        axis.plot(list(xs), list(ys), marker="o" if len(xs) <= 30 else None, markersize=3, label=label)
    axis.set_title(title)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3)
    if series:
        axis.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def bar_chart(values: Mapping[str, float], *, path: str | Path, title: str, ylabel: str) -> Path:
    """Draw one bar per entry of ``values`` and save it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axis = plt.subplots(figsize=(max(4.0, 0.8 * len(values) + 2), 4.0), dpi=120)
    labels = list(values)
    axis.bar(range(len(labels)), [values[k] for k in labels], color="tab:blue")
    axis.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    axis.set_title(title)
    axis.set_ylabel(ylabel)
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
