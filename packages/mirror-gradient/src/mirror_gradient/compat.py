"""Compatibility fixes that let RecBole 1.2.1 run on NumPy 2, SciPy >= 1.12, torch >= 2.6 and without ray.

Importing this module applies every fix once; each fix is idempotent and touches only what RecBole needs:

* NumPy 2 removed ``np.float_``, ``np.complex_``, ``np.unicode_`` and ``np.bool8``. RecBole's
  ``Config.compatibility_settings`` reads the first three to rebuild ``np.float`` and friends, so
  ``Config(...)`` raises AttributeError without them. RecBole's metrics (``np.float``) and hyper-parameter
  tuning (``np.str``) read those aliases, so they are restored here too, with the values that
  ``compatibility_settings`` gives them, and the metrics also work before any ``Config`` exists.
* SciPy 1.12 made ``dok_matrix`` store its entries in ``_dict`` and dropped ``dok_matrix._update``, which
  the graph models (LightGCN, NGCF, SpectralCF, GCMC, NCL, KGIN, MCCLK) call to fill their adjacency.
* torch 2.6 changed the default of ``torch.load`` to ``weights_only=True``. RecBole's checkpoints pickle
  the whole ``Config`` object, so reloading the best model after training raises UnpicklingError. Inside
  RecBole's trainer and the models that load their own pre-trained checkpoints, ``torch.load`` defaults to
  ``weights_only=False`` again. Those files are written by RecBole itself, and pickle can run code, so only
  load checkpoints from a source you trust.
* ``recbole/model/sequential_recommender/sine.py`` calls ``torch.autograd.set_detect_anomaly(True)`` at
  import time, and every RecBole entry point imports it. Anomaly mode records a Python stack trace for
  every autograd operation, which made a training step of a small model several times slower in our runs.
  The module is imported here and anomaly detection switched back off.
* ``recbole.quick_start`` imports ``ray.tune`` at module level although only its hyper-parameter search
  uses it. When ray is not installed, the module is imported with a placeholder that raises ImportError
  naming the missing package as soon as the tuning code touches it. ``sys.modules`` never keeps the
  placeholder, so other libraries still see that ray is absent.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import sys
import types
from typing import Any

import numpy as np
import scipy.sparse

__all__ = ["applied_fixes", "apply_all"]

logger = logging.getLogger(__name__)

# RecBole modules that call ``torch.load`` on files RecBole wrote (checkpoints or pre-trained models).
_TORCH_LOAD_MODULES = (
    "recbole.trainer.trainer",
    "recbole.model.general_recommender.convncf",
    "recbole.model.general_recommender.nais",
    "recbole.model.general_recommender.neumf",
    "recbole.model.general_recommender.ract",
    "recbole.model.sequential_recommender.s3rec",
    "recbole.model.context_aware_recommender.kd_dagfm",
)

_NUMPY_ALIASES = {
    "float_": "float64",
    "complex_": "complex128",
    "unicode_": "str_",
    "bool8": "bool_",
    "float": "float64",
    "complex": "complex128",
    "unicode": "str_",
    "int": "int_",
    "object": "object_",
    "str": "str_",
}

_applied: list[str] = []


def patch_numpy_aliases() -> None:
    """Restore the NumPy aliases removed in NumPy 2 that RecBole 1.2.1 still reads."""
    for alias, target in _NUMPY_ALIASES.items():
        if alias not in np.__dict__:
            setattr(np, alias, getattr(np, target))


def _dok_update(self: scipy.sparse.dok_matrix, entries: dict) -> None:
    """Insert ``{(row, col): value}`` entries without checks, as ``dok_matrix._update`` did before SciPy 1.12."""
    self._dict.update(entries)


def patch_dok_matrix() -> None:
    """Give ``scipy.sparse.dok_matrix`` back the ``_update`` method that RecBole's graph models call."""
    probe = scipy.sparse.dok_matrix((1, 1))
    if hasattr(probe, "_update"):
        return
    if not hasattr(probe, "_dict"):
        raise RuntimeError(
            f"scipy {scipy.__version__} stores dok_matrix entries in an unknown attribute, so RecBole's "
            "graph models cannot build their adjacency matrix. Install scipy<1.18 or report this version."
        )
    scipy.sparse.dok_matrix._update = _dok_update


class _TorchWithTrustedLoad(types.ModuleType):
    """Stand-in for the ``torch`` module whose ``load`` defaults to ``weights_only=False``.

    Every other attribute resolves to the real ``torch`` module.
    """

    def __init__(self, torch_module: types.ModuleType) -> None:
        super().__init__("torch")
        self._torch = torch_module

    def __getattr__(self, name: str) -> Any:
        return getattr(self._torch, name)

    def load(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("weights_only", False)
        return self._torch.load(*args, **kwargs)


def patch_torch_load() -> None:
    """Make ``torch.load`` inside RecBole's checkpoint-loading modules default to ``weights_only=False``."""
    import torch

    for module_name in _TORCH_LOAD_MODULES:
        module = importlib.import_module(module_name)
        if not isinstance(module.__dict__.get("torch"), _TorchWithTrustedLoad):
            module.torch = _TorchWithTrustedLoad(torch)


class _MissingRay(types.ModuleType):
    """Placeholder for ray that raises ImportError on first use."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise ImportError(
            "RecBole's hyper-parameter search needs ray, which is not installed. "
            "Install it with `pip install 'ray[tune]'`, or choose hyper-parameters with "
            "mirror_gradient's own grid search."
        )


def patch_quick_start_without_ray() -> None:
    """Import ``recbole.quick_start`` with a ray placeholder when ray is not installed."""
    if "recbole.quick_start" in sys.modules or importlib.util.find_spec("ray") is not None:
        return
    placeholder = _MissingRay("ray")
    placeholder.tune = _MissingRay("ray.tune")
    sys.modules["ray"] = placeholder
    try:
        importlib.import_module("recbole.quick_start")
    finally:
        if sys.modules.get("ray") is placeholder:
            del sys.modules["ray"]


def disable_sine_anomaly_detection() -> None:
    """Import RecBole's SINE model, which switches anomaly detection on globally, and switch it off."""
    import torch

    importlib.import_module("recbole.model.sequential_recommender.sine")
    torch.autograd.set_detect_anomaly(False)


@functools.cache
def apply_all() -> tuple[str, ...]:
    """Apply every fix once and return the names of the fixes applied."""
    patch_numpy_aliases()
    _applied.append("numpy_aliases")
    patch_dok_matrix()
    _applied.append("dok_matrix_update")
    patch_torch_load()
    _applied.append("torch_load_weights_only")
    patch_quick_start_without_ray()
    _applied.append("quick_start_without_ray")
    disable_sine_anomaly_detection()
    _applied.append("anomaly_detection_off")
    logger.debug("RecBole compatibility fixes applied: %s", ", ".join(_applied))
    return tuple(_applied)


def applied_fixes() -> tuple[str, ...]:
    """Return the names of the fixes applied so far."""
    return tuple(_applied)


apply_all()
