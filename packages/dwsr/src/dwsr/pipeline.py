"""Run BasicSR's own ``train_pipeline`` and ``test_pipeline`` on an options file, from Python.

BasicSR reads its options path from ``sys.argv`` (``-opt file.yml``); these helpers set the arguments,
apply the compatibility fixes of :mod:`dwsr._compat`, and restore ``sys.argv`` afterwards. BasicSR 1.4.2
sets up its ``basicsr`` logger once per process, so a second run in the same process would write no log
file. Each run here therefore starts from a fresh ``basicsr`` logger and closes its handlers at the end. Experiments go
to ``<root_path>/experiments/<name>`` (models, training states, logs) and test results to
``<root_path>/results/<name>``.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import yaml

from dwsr._compat import cpu_safe_resume

__all__ = [
    "experiment_folder",
    "load_options",
    "load_trained_network",
    "run_test_pipeline",
    "run_train_pipeline",
    "save_options",
]

logger = logging.getLogger(__name__)


def load_options(path: Path) -> dict:
    """Read a BasicSR options YAML file into a plain dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"options file {path} does not exist")
    with path.open(encoding="utf-8") as handle:
        options = yaml.safe_load(handle)
    if not isinstance(options, dict):
        raise ValueError(f"options file {path} does not contain a mapping")
    return options


def save_options(options: dict, path: Path) -> Path:
    """Write ``options`` as YAML, keeping the key order."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        yaml.safe_dump(options, handle, sort_keys=False)
    return path


def load_trained_network(network_options: dict, weights: Path):
    """Build ``network_options`` (a ``network_g`` dict) and load BasicSR weights (``{'params': ...}``) into it.

    Returns the network in eval mode, on the CPU.
    """
    import torch
    from basicsr.archs import build_network

    import dwsr  # noqa: F401

    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(f"network weights {weights} not found; train first or pass the right path")
    network = build_network(dict(network_options))
    checkpoint = torch.load(weights, map_location="cpu")
    if "params" not in checkpoint:
        raise ValueError(
            f"{weights} has no 'params' entry (keys: {sorted(checkpoint)}); expected BasicSR weights"
        )
    network.load_state_dict(checkpoint["params"])
    return network.eval()


def experiment_folder(root_path: Path, name: str) -> Path:
    """Return the folder where BasicSR's ``train_pipeline`` writes experiment ``name``."""
    return Path(root_path) / "experiments" / name


@contextlib.contextmanager
def _basicsr_argv(arguments: Sequence[str]) -> Iterator[None]:
    saved = sys.argv
    sys.argv = ["basicsr", *arguments]
    try:
        yield
    finally:
        sys.argv = saved


@contextlib.contextmanager
def _fresh_basicsr_logger() -> Iterator[None]:
    from basicsr.utils import logger as basicsr_logger

    def reset() -> None:
        named = logging.getLogger("basicsr")
        for handler in list(named.handlers):
            named.removeHandler(handler)
            handler.close()
        basicsr_logger.initialized_logger.pop("basicsr", None)

    reset()
    try:
        yield
    finally:
        reset()


def run_train_pipeline(options_path: Path, root_path: Path, *, auto_resume: bool = False) -> Path:
    """Train with ``basicsr.train.train_pipeline`` from an options file; return the experiment folder.

    Args:
        options_path: BasicSR options YAML.
        root_path: Folder that receives ``experiments/`` and ``tb_logger/``.
        auto_resume: Resume from the newest ``training_states/<iter>.state`` of the experiment, if any.
    """
    from basicsr.train import train_pipeline

    import dwsr  # noqa: F401  (registers the DWSR classes before BasicSR builds anything)

    options_path = Path(options_path).resolve()
    arguments = ["-opt", str(options_path)] + (["--auto_resume"] if auto_resume else [])
    logger.info("BasicSR train_pipeline on %s (root %s)", options_path, root_path)
    with _basicsr_argv(arguments), cpu_safe_resume(), _fresh_basicsr_logger():
        train_pipeline(str(Path(root_path).resolve()))
    return experiment_folder(root_path, load_options(options_path)["name"])


def run_test_pipeline(options_path: Path, root_path: Path) -> Path:
    """Evaluate with ``basicsr.test.test_pipeline`` from an options file; return the results folder."""
    from basicsr.test import test_pipeline

    import dwsr  # noqa: F401

    options_path = Path(options_path).resolve()
    with _basicsr_argv(["-opt", str(options_path)]), _fresh_basicsr_logger():
        test_pipeline(str(Path(root_path).resolve()))
    return Path(root_path) / "results" / load_options(options_path)["name"]
