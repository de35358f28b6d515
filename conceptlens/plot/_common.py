"""Shared helpers of the plotting functions: a new figure without pyplot, text formats."""

from __future__ import annotations

from typing import Any

import numpy as np

from conceptlens.exceptions import DataError, UnknownNameError

# a diverging colour map for signed quantities and a sequential one for metrics
DIVERGING = "RdBu_r"
SEQUENTIAL = "viridis"


def get_ax(ax: Any = None, figsize: tuple[float, float] = (6.4, 4.8)) -> Any:
    """``ax`` itself, or the one Axes of a new figure that pyplot does not track."""
    if ax is not None:
        return ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig.add_subplot()


def fmt_ci(est: float, lo: float, hi: float, digits: int = 3) -> str:
    """``0.895 [0.870, 0.921]``; ``n/a`` for a missing estimate."""
    if not np.isfinite(est):
        return "n/a"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{est:.{digits}f}"
    return f"{est:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def check_dims(obj: Any, dims: tuple[str, ...], what: str, hint: str) -> None:
    """Raise :class:`DataError` unless ``obj`` is labelled with ``dims``."""
    have = tuple(getattr(obj, "dims", ()))
    missing = [d for d in dims if d not in have]
    if missing:
        raise DataError(f"{what} needs dims {dims}, got {have}; {hint}")


def pick(values: Any, wanted: Any, name: str) -> Any:
    """Check that ``wanted`` is one of ``values`` (a coordinate), naming the choices."""
    have = [str(v) for v in np.asarray(values).ravel()]
    if str(wanted) not in have:
        raise UnknownNameError(f"unknown {name} {wanted!r}; available: {have}")
    return wanted
