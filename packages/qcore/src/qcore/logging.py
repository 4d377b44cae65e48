"""Logging set-up for command-line entry points; library code only calls ``logging.getLogger``."""

from __future__ import annotations

import logging
import sys

__all__ = ["setup_logging"]

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str | int = "INFO") -> None:
    """Send log records of level ``level`` and above to stderr, replacing handlers this function added."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_qcore", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
    handler._qcore = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    if isinstance(level, str):
        numeric = logging.getLevelName(level.upper())
        if not isinstance(numeric, int):
            raise ValueError(f"unknown log level {level!r}; use DEBUG, INFO, WARNING or ERROR")
        level = numeric
    root.setLevel(level)
