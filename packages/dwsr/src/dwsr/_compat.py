"""Compatibility fixes that let BasicSR 1.4.2 run beside current torchvision and on CPU-only machines.

BasicSR 1.4.2 (the last release on PyPI) imports ``torchvision.transforms.functional_tensor``, a module
that torchvision 0.17 renamed to ``_functional_tensor``. Importing ``basicsr`` therefore fails on current
torchvision unless the old name is registered first.

Its ``basicsr.train.load_resume_state`` also calls ``torch.cuda.current_device()`` unconditionally, which
raises on machines without an NVIDIA driver, and its ``--auto_resume`` looks for states under
``experiments/<name>`` relative to the working directory instead of under ``root_path``.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["cpu_safe_resume", "ensure_torchvision_functional_tensor"]

logger = logging.getLogger(__name__)

_OLD_NAME = "torchvision.transforms.functional_tensor"
_NEW_NAME = "torchvision.transforms._functional_tensor"


def ensure_torchvision_functional_tensor() -> None:
    """Register torchvision's renamed ``_functional_tensor`` module under its pre-0.17 name.

    Does nothing when the old name still imports (torchvision < 0.17) or is already registered.
    """
    if _OLD_NAME in sys.modules:
        return
    try:
        importlib.import_module(_OLD_NAME)
        return
    except ModuleNotFoundError:
        pass
    module = importlib.import_module(_NEW_NAME)
    sys.modules[_OLD_NAME] = module
    logger.debug("Registered %s as %s for BasicSR 1.4.2", _NEW_NAME, _OLD_NAME)


def _load_resume_state(opt: dict[str, Any]) -> dict[str, Any] | None:
    """Load the training state to resume from, like BasicSR's own function but CPU-safe.

    With ``auto_resume`` the newest ``<iter>.state`` under ``opt['path']['training_states']`` is used;
    otherwise ``opt['path']['resume_state']`` if set.
    """
    import torch
    from basicsr.utils import check_resume, scandir

    resume_state_path = None
    if opt["auto_resume"]:
        state_folder = opt["path"]["training_states"]
        if os.path.isdir(state_folder):
            iterations = [
                int(name.split(".state")[0])
                for name in scandir(state_folder, suffix="state", recursive=False, full_path=False)
            ]
            if iterations:
                resume_state_path = os.path.join(state_folder, f"{max(iterations)}.state")
                opt["path"]["resume_state"] = resume_state_path
    elif opt["path"].get("resume_state"):
        resume_state_path = opt["path"]["resume_state"]

    if resume_state_path is None:
        return None
    if opt["num_gpu"] != 0 and torch.cuda.is_available():
        map_location = torch.device("cuda", torch.cuda.current_device())
    else:
        map_location = torch.device("cpu")
    resume_state = torch.load(resume_state_path, map_location=map_location)
    check_resume(opt, resume_state["iter"])
    return resume_state


@contextlib.contextmanager
def cpu_safe_resume() -> Iterator[None]:
    """Replace ``basicsr.train.load_resume_state`` with the CPU-safe version while the block runs."""
    ensure_torchvision_functional_tensor()
    import basicsr.train

    original = basicsr.train.load_resume_state
    basicsr.train.load_resume_state = _load_resume_state
    try:
        yield
    finally:
        basicsr.train.load_resume_state = original
