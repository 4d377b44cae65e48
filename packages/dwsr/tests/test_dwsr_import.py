"""Importing dwsr makes BasicSR 1.4.2 importable on torchvision 0.17+ and registers unique names."""

from __future__ import annotations

import importlib
import subprocess
import sys

from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY


def test_import_dwsr_then_basicsr_in_fresh_interpreter():
    code = (
        "import dwsr, basicsr, basicsr.train\n"
        "from basicsr.data.degradations import rgb_to_grayscale\n"
        "import importlib; importlib.import_module('dwsr'); importlib.import_module('dwsr.archs.dwsr_arch')\n"
        "print('ok')\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip().endswith("ok")


def test_stub_is_registered_under_old_name():
    module = sys.modules["torchvision.transforms.functional_tensor"]
    assert module is importlib.import_module("torchvision.transforms._functional_tensor")


def test_names_unique_in_registries():
    for registry, name in (
        (ARCH_REGISTRY, "DWSRNet"),
        (ARCH_REGISTRY, "DWSRRecognitionNet"),
        (MODEL_REGISTRY, "DWSRModel"),
        (LOSS_REGISTRY, "DWSRMaskBCELoss"),
    ):
        assert name in registry
        assert registry.get(name).__module__.startswith("dwsr.")


def test_builtin_names_still_basicsr():
    for registry, name in (
        (ARCH_REGISTRY, "EDSR"),
        (ARCH_REGISTRY, "RCAN"),
        (MODEL_REGISTRY, "SRModel"),
        (LOSS_REGISTRY, "L1Loss"),
    ):
        assert registry.get(name).__module__.startswith("basicsr."), name
