"""Shared plumbing for the paper packages: registry, configs, seeding, checkpoints, run directories,
benchmark helpers, progress bars, test helpers, the main reproduction job and CIFAR-style vision models.

qcore contains no method code and imports no method package.
"""

from qcore.config import Config, option
from qcore.registry import Registry, UnknownNameError
from qcore.rundir import RunDir
from qcore.seeding import seed_everything

__all__ = ["Config", "Registry", "RunDir", "UnknownNameError", "option", "seed_everything"]
__version__ = "0.1.0"
