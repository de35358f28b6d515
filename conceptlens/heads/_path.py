"""Regularisation path: from the penalty that zeroes every weight downwards, warm-started."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from conceptlens._progress import progress
from conceptlens.exceptions import ConfigError
from conceptlens.heads import _device, _solver

__all__ = ["RegularizationPath", "c_min", "grid", "solve_path"]


@dataclass
class RegularizationPath:
    """Solutions along a grid of ``C`` (increasing, i.e. decreasing penalty).

    Attributes
    ----------
    Cs : ndarray (n_C,)
        Increasing.
    coef : ndarray (n_C, k, n_features)
    intercept : ndarray (n_C, k)
        On the solver's (standardised) scale from :func:`solve_path`, on the scale of
        ``X`` from :func:`conceptlens.heads.fit_path`.
    n_iter : ndarray of int (n_C,)
    converged : ndarray of bool (n_C,)
    classes : ndarray or None
        Class labels of the rows (set by ``fit_path``).
    duality_gap : ndarray (n_C,) or None
        Relative duality gap of each solution, ``(objective - dual bound) / objective``:
        a certified upper bound on its relative distance from the optimal objective
        (``None`` when :func:`solve_path` was called with ``gaps=False``).
    """

    Cs: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray
    classes: np.ndarray | None = None
    duality_gap: np.ndarray | None = None

    @property
    def n_nonzero(self) -> np.ndarray:
        """Non-zero weights per (penalty, class): (n_C, k)."""
        return (self.coef != 0).sum(axis=2)


def c_min(X, Y, sample_weight, mode, l1_ratio, device=None):
    """Largest ``C`` at which every weight is zero (scikit-learn's scale).

    Zero is optimal iff ``C * |sum_i s_i x_i (p0_i - y_i)|_inf <= l1_ratio`` with ``p0``
    the intercept-only probabilities; for ``l1_ratio == 0`` (no such ``C``) the value for
    ``l1_ratio = 1`` is returned so that grids still start at a sensible scale.
    ``device``: where the pass over ``X`` runs (as for :func:`solve_path`; ``None``:
    numpy).
    """
    S = float(sample_weight.sum())
    dev = _device.passes_for(X, device)
    g0 = _solver.grad_scale(X, Y, sample_weight / S, _solver._mode_code(mode), dev)
    gmax = max(float(np.abs(g0).max()), 1e-300)
    return (l1_ratio if l1_ratio > 0 else 1.0) / (S * gmax)


def grid(X, Y, sample_weight, mode, Cs, eps, l1_ratio, device=None):
    """The ``C`` grid: ``Cs`` log-spaced points from :func:`c_min` to ``c_min / eps``
    for an integer ``Cs``, else the given values sorted (each must be positive)."""
    if isinstance(Cs, int | np.integer):
        cmin = c_min(X, Y, sample_weight, mode, l1_ratio, device)
        return cmin * np.logspace(0, np.log10(1.0 / eps), int(Cs))
    values = np.asarray(Cs, dtype=float)
    if values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values) & (values > 0)):
        raise ConfigError(
            f"Cs must be a positive int or a 1-D list of positive finite values; got {Cs!r}."
        )
    return np.sort(values)


def solve_path(
    X,
    Y,
    sample_weight,
    mode,
    Cs,
    *,
    l1_ratio,
    prior=None,
    prior_strength=0.0,
    tol=1e-4,
    max_iter=500,
    offset=None,
    gaps=True,
    device="auto",
):
    """Solve at each ``C`` in ``Cs`` (sorted increasing), warm-starting from the previous
    solution moved along the path's tangent (:func:`_predict`).

    ``X`` is used as given (standardise beforehand); weights are raw sample weights.
    With ``gaps=True`` each solution is certified by its duality gap (one more pass over
    ``X`` per ``C``; ``RegularizationPath.duality_gap``).

    ``device`` is where the passes over ``X`` run: ``"auto"``, ``"cpu"``, ``"cuda"``,
    ``"cuda:N"`` (see :func:`conceptlens.heads._device.resolve`), a
    :class:`~conceptlens.heads._device.TorchPasses` already holding ``X`` (shared with
    :func:`grid`), or ``None`` (numpy).
    """
    Cs = np.sort(np.asarray(Cs, dtype=float))
    S = float(sample_weight.sum())
    s = sample_weight / S
    m = _solver._mode_code(mode)
    dev = _device.passes_for(X, device)
    G = _solver.gram(X, s, subsample=True, dev=dev)
    scale = max(float(np.abs(_solver.grad_scale(X, Y, s, m, dev)).max()), 1e-12)
    k, d = Y.shape[1], X.shape[1]
    coef = np.zeros((len(Cs), k, d))
    intercept = np.zeros((len(Cs), k))
    n_iter = np.zeros(len(Cs), dtype=int)
    conv = np.zeros(len(Cs), dtype=bool)
    gap = np.full(len(Cs), np.nan) if gaps else None
    W0 = b0 = None
    for i, C in enumerate(progress(Cs, total=len(Cs), desc="regularisation path", unit="C")):
        res = _solver.solve(
            X,
            Y,
            s,
            mode,
            lam1=l1_ratio / (C * S),
            lam2=(1 - l1_ratio) / (C * S),
            gamma=prior_strength / (C * S),
            P=prior,
            coef0=W0,
            intercept0=b0,
            G=G,
            tol_abs=tol * scale,
            max_iter=max_iter,
            offset=offset,
            gap=gaps,
            dev=dev,
        )
        if gaps:
            gap[i] = max(res.gap.relative, 0.0)
        coef[i], intercept[i], n_iter[i], conv[i] = (
            res.coef,
            res.intercept,
            res.n_iter,
            res.converged,
        )
        W0, b0 = _predict(Cs, i, coef, intercept)
    return RegularizationPath(Cs, coef, intercept, n_iter, conv, duality_gap=gap)


def _predict(Cs, i, coef, intercept):
    """Warm start for penalty ``i + 1``: the solution at ``i`` moved along the path's
    tangent, linearly extrapolated in ``log C`` from the solutions at ``i - 1`` and ``i``.

    Only weights non-zero at both keep the extrapolation, and none changes sign (the
    support and signs are the solver's to change); the others start as at ``i``.
    """
    if i == 0 or i + 1 >= len(Cs):
        return coef[i], intercept[i]
    r = np.log(Cs[i + 1] / Cs[i]) / np.log(Cs[i] / Cs[i - 1])
    W1, W0 = coef[i], coef[i - 1]
    W = W1 + r * (W1 - W0)
    keep = (W0 != 0) & (W1 != 0) & (np.sign(W) == np.sign(W1))
    W = np.where(keep, W, W1)
    b = intercept[i] + r * (intercept[i] - intercept[i - 1])
    return W, b
