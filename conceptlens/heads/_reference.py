"""Independent references for the solver's tests and benchmarks (not used in fitting).

``objective`` is the scikit-learn-scale objective as a dense numpy formula, and
``solve_reference`` a plain FISTA on the same objective; neither shares code with the
numba solver beyond the KKT measure.
"""

from __future__ import annotations

import numpy as np

from conceptlens.heads._solver import SolveResult, kkt_violation

__all__ = ["objective", "solve_reference"]


def objective(
    X: np.ndarray,
    Y: np.ndarray,
    coef: np.ndarray,
    intercept: np.ndarray,
    *,
    C: float,
    l1_ratio: float,
    mode: str,
    sample_weight: np.ndarray | None = None,
    prior: np.ndarray | None = None,
    prior_strength: float = 0.0,
) -> float:
    """scikit-learn-scale objective (see module docstring), with a dense numpy formula."""
    Z = X @ coef.T + intercept
    if mode == "multinomial":
        zmax = Z.max(axis=1, keepdims=True)
        lse = (zmax + np.log(np.exp(Z - zmax).sum(axis=1, keepdims=True)))[:, 0]
        li = lse - (Y * Z).sum(axis=1)
    else:
        li = (np.logaddexp(0.0, Z) - Y * Z).sum(axis=1)
    sw = np.ones(X.shape[0]) if sample_weight is None else sample_weight
    val = C * float(sw @ li) + l1_ratio * np.abs(coef).sum()
    val += 0.5 * (1 - l1_ratio) * (coef * coef).sum()
    if prior_strength > 0 and prior is not None:
        val += 0.5 * prior_strength * ((coef - prior) ** 2).sum()
    return float(val)


def solve_reference(
    X: np.ndarray,
    Y: np.ndarray,
    s: np.ndarray,
    mode: str,
    *,
    lam1: float,
    lam2: float,
    gamma: float = 0.0,
    P: np.ndarray | None = None,
    tol_abs: float = 1e-10,
    max_iter: int = 50_000,
) -> SolveResult:
    """Pure-numpy FISTA with backtracking on the same objective (the tests' reference)."""
    n, d = X.shape
    k = Y.shape[1]
    P = np.zeros((k, d)) if P is None else P
    Xa = np.hstack([X, np.ones((n, 1))])

    def smooth(V):
        Z = Xa @ V.T
        if mode == "multinomial":
            zmax = Z.max(axis=1, keepdims=True)
            E = np.exp(Z - zmax)
            tot = E.sum(axis=1, keepdims=True)
            lse = zmax + np.log(tot)
            loss = float(s @ (lse[:, 0] - (Y * Z).sum(axis=1)))
            Pr = E / tot
        else:
            loss = float(s @ (np.logaddexp(0.0, Z) - Y * Z).sum(axis=1))
            Pr = 1.0 / (1.0 + np.exp(-Z))
        W = V[:, :d]
        loss += 0.5 * lam2 * (W * W).sum() + 0.5 * gamma * ((W - P) ** 2).sum()
        grad = ((Pr - Y) * s[:, None]).T @ Xa
        grad[:, :d] += lam2 * W + gamma * (W - P)
        return loss, grad

    def prox(V, step):
        out = V.copy()
        out[:, :d] = np.sign(V[:, :d]) * np.maximum(np.abs(V[:, :d]) - step * lam1, 0.0)
        return out

    V = np.zeros((k, d + 1))
    Vprev = V.copy()
    L = 1.0
    tk = 1.0
    viol = np.inf
    converged = False
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007
        _f, g = smooth(V)
        viol = kkt_violation(
            g[:, :d] - lam2 * V[:, :d] - gamma * (V[:, :d] - P),
            g[:, d],
            V[:, :d],
            lam1,
            lam2,
            gamma,
            P,
        )
        if viol <= tol_abs:
            converged = True
            break
        tnext = 0.5 * (1 + np.sqrt(1 + 4 * tk * tk))
        Yk = V + ((tk - 1) / tnext) * (V - Vprev)
        fy, gy = smooth(Yk)
        while True:
            Vn = prox(Yk - gy / L, 1.0 / L)
            diff = Vn - Yk
            fn, _ = smooth(Vn)
            if fn <= fy + (gy * diff).sum() + 0.5 * L * (diff * diff).sum() + 1e-15:
                break
            L *= 2.0
        Vprev, V, tk = V, Vn, tnext
        L *= 0.9
    b = V[:, d].copy()
    if mode == "multinomial":
        b -= b.mean()
    return SolveResult(V[:, :d].copy(), b, it, converged, float(viol), 0)
