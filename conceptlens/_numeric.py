"""Small numerical helpers shared by several layers (numpy only)."""

from __future__ import annotations

import numpy as np

__all__ = ["trapezoid"]


def trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    """Area under the piecewise-linear curve through ``(x, y)`` (the trapezoidal rule).

    The same value as ``np.trapezoid(y, x)`` (numpy >= 2) and ``np.trapz`` (numpy 1.x),
    written out so that it works with every numpy conceptlens supports.

    Examples
    --------
    >>> trapezoid(np.array([0.0, 1.0, 1.0]), np.array([0.0, 0.5, 1.0]))
    0.75
    """
    y = np.asarray(y, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if y.shape != x.shape or y.ndim != 1:
        raise ValueError(f"trapezoid needs two 1-D arrays of one length, got {y.shape}, {x.shape}")
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)
