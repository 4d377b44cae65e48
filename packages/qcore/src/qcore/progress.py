"""Progress bars for long loops, quiet when output is not a terminal."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm

__all__ = ["progress"]


def _default_disable() -> bool:
    if os.environ.get("QCORE_PROGRESS") == "1":
        return False
    if os.environ.get("QCORE_PROGRESS") == "0":
        return True
    return not sys.stderr.isatty()


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    desc: str,
    total: int | None = None,
    disable: bool | None = None,
    **kwargs: Any,
) -> tqdm:
    """Wrap ``iterable`` in a tqdm bar.

    The bar is hidden when stderr is not a terminal (logs, CI) unless ``QCORE_PROGRESS=1`` is set;
    ``QCORE_PROGRESS=0`` hides it everywhere.
    """
    if disable is None:
        disable = _default_disable()
    return tqdm(iterable, desc=desc, total=total, disable=disable, dynamic_ncols=True, **kwargs)
