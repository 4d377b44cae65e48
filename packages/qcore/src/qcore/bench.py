"""Benchmark helpers: median timing after warm-up, parameter and FLOP counts, peak memory, ratios.

Benchmarks compare a method against its baseline inside one process and report ratios; absolute times
depend on the machine and are never asserted in tests.
"""

from __future__ import annotations

import gc
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["compare", "count_flops", "count_parameters", "median_time", "peak_memory"]


def median_time(fn: Callable[[], Any], *, warmup: int = 3, repeats: int = 10) -> float:
    """Call ``fn`` ``warmup`` times, then return the median wall time of ``repeats`` calls, in seconds.

    CUDA work is synchronised before each clock read.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Return the number of parameter elements, counting shared parameters once."""
    seen: set[int] = set()
    total = 0
    for parameter in model.parameters():
        if id(parameter) in seen or (trainable_only and not parameter.requires_grad):
            continue
        seen.add(id(parameter))
        total += parameter.numel()
    return total


@torch.no_grad()
def count_flops(model: nn.Module | Callable[..., Any], *inputs: Any, **kwargs: Any) -> int:
    """Return the FLOPs of one call ``model(*inputs, **kwargs)`` counted by ``torch.utils.flop_counter``.

    A multiply-add counts as two FLOPs, so MACs are half this value. Operators that PyTorch's counter does
    not cover (element-wise ops, pooling, normalisation) are not included.
    """
    counter = FlopCounterMode(display=False)
    with counter:
        model(*inputs, **kwargs)
    return int(counter.get_total_flops())


def _rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as stream:
        return int(stream.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_memory(fn: Callable[[], Any], *, device: str | torch.device | None = None) -> int:
    """Return the peak memory in bytes that one call of ``fn`` adds.

    On CUDA this is ``torch.cuda.max_memory_allocated`` above the starting allocation. On the CPU it is the
    peak resident set size above the starting one, sampled every millisecond in a background thread: an
    estimate that also counts allocator caching, and only on Linux.
    """
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - start)

    gc.collect()
    baseline = _rss_bytes()
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    peak = max(peak, _rss_bytes())
    return int(peak - baseline)


def compare(
    rows: Sequence[Mapping[str, Any]], *, baseline: str, metrics: Iterable[str], name_key: str = "model"
) -> list[dict[str, Any]]:
    """Return copies of ``rows`` with a ``<metric>_ratio`` column for each metric, relative to ``baseline``.

    Raises:
        ValueError: No row has ``row[name_key] == baseline``.
    """
    metrics = list(metrics)
    reference = next((row for row in rows if row.get(name_key) == baseline), None)
    if reference is None:
        names = ", ".join(str(row.get(name_key)) for row in rows)
        raise ValueError(f"baseline {baseline!r} is not among the rows ({names})")
    out = []
    for row in rows:
        new = dict(row)
        for metric in metrics:
            base = reference.get(metric)
            value = row.get(metric)
            new[f"{metric}_ratio"] = value / base if value is not None and base else None
        out.append(new)
    return out
