"""numba kernels of the heads package (the only module that imports numba).

The big matrix products (``X @ W.T`` and ``X.T @ R``) go through BLAS in
:mod:`conceptlens.heads._solver`; the kernels here do the ``O(n k)`` work on logits
(loss, residuals, curvature, line search), the coordinate descent on the quadratic model
(``O(d)`` per coordinate update, on a working set), the multinomial null-space shift
and the bootstrap resampling.
All kernels are compiled with ``cache=True`` and are deterministic.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = [
    "MULTINOMIAL",
    "SIGMOID",
    "bootstrap_indices",
    "cd_exact",
    "cd_quadratic",
    "loss_along",
    "loss_grad",
    "null_shift",
    "replicate_metrics",
]

MULTINOMIAL = 0
SIGMOID = 1
# the exact model's coordinate sums may be reassociated (SIMD): about 2x faster, and
# still deterministic on a given machine (no assumption on NaN or inf is made)
_REASSOC = {"reassoc", "contract"}


@numba.njit(cache=True, nogil=True)
def _log1pexp(z: float) -> float:
    if z > 0.0:
        return z + np.log1p(np.exp(-z))
    return np.log1p(np.exp(z))


@numba.njit(cache=True, nogil=True)
def loss_grad(Z, Y, s, mode):
    """Weighted loss, residuals and per-column curvature from the logits.

    Z (n, k) logits, Y (n, k) one-hot (multinomial) or 0/1 targets (sigmoid), s (n,)
    weights summing to 1.  Returns ``(loss, R, c)``: ``loss = sum_i s_i l_i``,
    ``R[i, a] = s_i (p_ia - y_ia)`` (so the gradient is ``R.T @ X``) and
    ``c[a] = sum_i s_i p_ia (1 - p_ia)``, the curvature scale of column ``a``.
    """
    n, k = Z.shape
    R = np.empty((n, k))
    c = np.zeros(k)
    loss = 0.0
    p = np.empty(k)
    for i in range(n):
        si = s[i]
        if mode == MULTINOMIAL:
            m = Z[i, 0]
            for a in range(1, k):
                if Z[i, a] > m:
                    m = Z[i, a]
            tot = 0.0
            for a in range(k):
                p[a] = np.exp(Z[i, a] - m)
                tot += p[a]
            lse = m + np.log(tot)
            for a in range(k):
                pa = p[a] / tot
                loss -= si * Y[i, a] * (Z[i, a] - lse)
                R[i, a] = si * (pa - Y[i, a])
                c[a] += si * pa * (1.0 - pa)
        else:
            for a in range(k):
                z = Z[i, a]
                pa = 1.0 / (1.0 + np.exp(-z))
                loss += si * (_log1pexp(z) - Y[i, a] * z)
                R[i, a] = si * (pa - Y[i, a])
                c[a] += si * pa * (1.0 - pa)
    return loss, R, c


@numba.njit(cache=True, nogil=True)
def loss_along(Z, dZ, t, Y, s, mode):
    """Weighted loss at the logits ``Z + t * dZ`` (no pass over the features)."""
    n, k = Z.shape
    loss = 0.0
    for i in range(n):
        si = s[i]
        if mode == MULTINOMIAL:
            m = Z[i, 0] + t * dZ[i, 0]
            for a in range(1, k):
                z = Z[i, a] + t * dZ[i, a]
                if z > m:
                    m = z
            tot = 0.0
            zy = 0.0
            for a in range(k):
                z = Z[i, a] + t * dZ[i, a]
                tot += np.exp(z - m)
                zy += Y[i, a] * z
            loss += si * (m + np.log(tot) - zy)
        else:
            for a in range(k):
                z = Z[i, a] + t * dZ[i, a]
                loss += si * (_log1pexp(z) - Y[i, a] * z)
    return loss


@numba.njit(cache=True, nogil=True)
def null_shift(W, P, lam1, lam2, gamma):
    """Per-feature shift ``tau`` (d,) minimising the penalty of ``W - tau`` (multinomial).

    The multinomial loss does not change when the same constant is subtracted from every
    class's weight of a feature, so this shift lowers the objective exactly and removes
    the direction that the per-class quadratic model handles worst.  Bisection (60
    halvings) on the monotone subgradient ``-lam1 sum_a sign(w_a - tau) + (lam2 + gamma)
    k tau - sum_a (lam2 w_a + gamma (w_a - p_a))``, then a snap to an existing weight
    within bisection precision, so that exact zeros survive the shift.
    """
    k, d = W.shape
    lam = lam2 + gamma
    tau = np.empty(d)
    for j in range(d):
        lo = np.inf
        hi = -np.inf
        lin = 0.0
        for a in range(k):
            w = W[a, j]
            wp = w - P[a, j]
            lo = min(lo, w, wp)
            hi = max(hi, w, wp)
            lin += lam2 * w + gamma * wp
        lo -= 1.0
        hi += 1.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            sgn = 0.0
            for a in range(k):
                if W[a, j] > mid:
                    sgn += 1.0
                elif W[a, j] < mid:
                    sgn -= 1.0
            if -lam1 * sgn + lam * k * mid - lin > 0.0:
                hi = mid
            else:
                lo = mid
        t = 0.5 * (lo + hi)
        n_near = 0
        near_sum = 0.0
        for a in range(k):
            w = W[a, j]
            if abs(w - t) <= 1e-12 * (1.0 + abs(w)):
                n_near += 1
                near_sum += w
        tau[j] = near_sum / n_near if n_near > 0 else t
    return tau


@numba.njit(cache=True, nogil=True)
def _prox_step(u0: float, aj: float, h: float, lam1: float) -> float:
    """Minimiser of ``aj/2 (u - u0)^2 + h (u - u0) + lam1 |u|`` (soft-thresholded Newton step)."""
    z = u0 * aj - h
    if z > lam1:
        return (z - lam1) / aj
    if z < -lam1:
        return (z + lam1) / aj
    return 0.0


@numba.njit(cache=True, nogil=True)
def cd_quadratic(G, grad, A, V, P, lam1, lam2, gamma, ws, ws_len, max_sweeps, tol):
    """Coordinate descent on the Kronecker quadratic model of the loss.

    With ``V`` (k, d + 1) the current weights (``d`` concept weights then the intercept,
    per class), minimise over the step ``D`` (k, d + 1)::

        sum(grad * D) + 1/2 sum_ab A[a, b] * D[a] @ G @ D[b]
        + lam1 |W + D_W|_1 + lam2 / 2 |W + D_W|^2 + gamma / 2 |W + D_W - P|^2

    ``A`` (k, k) is the weighted mean of the per-sample softmax Hessians
    ``diag(p) - p p^T`` (or ``diag(p (1 - p))`` for sigmoid columns) and ``G`` the
    weighted Gram matrix of ``[X, 1]``.  The intercept (last column) is not penalised.
    Only coordinates ``ws[a, :ws_len[a]]`` move.  Returns ``D``.
    """
    k, d1 = V.shape
    d = d1 - 1
    D = np.zeros((k, d1))
    Q = np.zeros((k, d1))  # Q[b] = G @ D[b]
    for _sweep in range(max_sweeps):
        max_change = 0.0
        for a in range(k):
            caa = A[a, a]
            if caa < 1e-12:
                caa = 1e-12
            for jj in range(ws_len[a]):
                j = ws[a, jj]
                u0 = V[a, j] + D[a, j]
                h = grad[a, j]
                for b in range(k):
                    h += A[a, b] * Q[b, j]
                if j == d:
                    aj = caa * G[j, j]
                    if aj <= 0.0:
                        continue
                    u = u0 - h / aj
                else:
                    h += lam2 * u0 + gamma * (u0 - P[a, j])
                    aj = caa * G[j, j] + lam2 + gamma
                    if aj <= 0.0:
                        continue
                    u = _prox_step(u0, aj, h, lam1)
                diff = u - u0
                if diff != 0.0:
                    D[a, j] += diff
                    for i in range(d1):
                        Q[a, i] += diff * G[i, j]
                    change = abs(diff) * aj
                    if change > max_change:
                        max_change = change
        if max_change <= tol:
            break
    return D


@numba.njit(cache=True, nogil=True, fastmath=_REASSOC)
def _exact_coord(X, j, d, a, n, SP, SW, PT, U, v, mode):
    """``(h, hjj)``: the model's gradient and curvature along coordinate ``(a, j)``."""
    h = 0.0
    hjj = 0.0
    if mode == MULTINOMIAL:
        if j == d:
            for i in range(n):
                h += SP[a, i] * (U[a, i] - v[i])
                hjj += SW[a, i]
        else:
            for i in range(n):
                xi = X[i, j]
                h += xi * SP[a, i] * (U[a, i] - v[i])
                hjj += xi * xi * SW[a, i]
    else:
        if j == d:
            for i in range(n):
                h += SW[a, i] * U[a, i]
                hjj += SW[a, i]
        else:
            for i in range(n):
                xi = X[i, j]
                h += xi * SW[a, i] * U[a, i]
                hjj += xi * xi * SW[a, i]
    return h, hjj


@numba.njit(cache=True, nogil=True)
def cd_exact(X, s, Pm, grad, V, P, lam1, lam2, gamma, ws, ws_len, max_sweeps, tol, mode):
    """Coordinate descent on the exact second-order model of the loss.

    The model is ``sum(grad * D) + 1/2 sum_i s_i u_i^T M_i u_i`` with ``u_i = D [x_i, 1]``
    the change of the logits of sample ``i`` and ``M_i = diag(p_i) - p_i p_i^T``
    (multinomial) or ``diag(p_i (1 - p_i))`` (sigmoid), plus the penalties of
    :func:`cd_quadratic`.  ``X`` (n, d) should be Fortran-ordered; each coordinate update
    costs ``O(n)`` (glmnet-style residual updates, on class-major copies of the weights
    so that every loop is contiguous).  After each sweep over the working set, sweeps
    over the coordinates that are non-zero (the active set) repeat until they settle,
    then a full sweep checks the rest (glmnet's active-set cycling); ``max_sweeps``
    bounds all sweeps, full or active.  Returns ``D`` (k, d + 1).
    """
    n, d = X.shape
    k = V.shape[0]
    D = np.zeros((k, d + 1))
    SP = np.empty((k, n))  # s_i p_ia
    SW = np.empty((k, n))  # s_i p_ia (1 - p_ia)
    PT = np.empty((k, n))
    for i in range(n):
        for a in range(k):
            pa = Pm[i, a]
            PT[a, i] = pa
            SP[a, i] = s[i] * pa
            SW[a, i] = s[i] * pa * (1.0 - pa)
    U = np.zeros((k, n))
    v = np.zeros(n)  # sum_b p_ib u_ib (multinomial)
    full = True
    n_full = 0
    n_active = 0
    n_sweeps = 0
    while True:
        max_change = 0.0
        for a in range(k):
            for jj in range(ws_len[a]):
                j = ws[a, jj]
                u0 = V[a, j] + D[a, j]
                if not full and u0 == 0.0 and j != d:
                    continue
                h, hjj = _exact_coord(X, j, d, a, n, SP, SW, PT, U, v, mode)
                h += grad[a, j]
                if hjj < 1e-12:
                    hjj = 1e-12
                if j == d:
                    aj = hjj
                    u = u0 - h / aj
                else:
                    h += lam2 * u0 + gamma * (u0 - P[a, j])
                    aj = hjj + lam2 + gamma
                    u = _prox_step(u0, aj, h, lam1)
                diff = u - u0
                if diff != 0.0:
                    D[a, j] += diff
                    if j == d:
                        for i in range(n):
                            U[a, i] += diff
                            if mode == MULTINOMIAL:
                                v[i] += diff * PT[a, i]
                    else:
                        for i in range(n):
                            xi = diff * X[i, j]
                            U[a, i] += xi
                            if mode == MULTINOMIAL:
                                v[i] += xi * PT[a, i]
                    change = abs(diff) * aj
                    if change > max_change:
                        max_change = change
        n_sweeps += 1
        if n_sweeps >= max_sweeps:
            break
        if full:
            n_full += 1
            if max_change <= tol:
                break
            full = False
            n_active = 0
        else:
            n_active += 1
            if max_change <= tol or n_active >= 20:
                full = True
    return D


@numba.njit(cache=True, nogil=True)
def bootstrap_indices(strata, n_strata, n_boot, seed):
    """Stratified bootstrap resamples: (n_boot, n) int64 row indices.

    Replicate ``b`` draws, for each stratum ``h`` in turn, as many members of ``h`` as it
    holds, uniformly with replacement, so every replicate keeps the stratum sizes.  The
    generator is numba's Mersenne Twister seeded with ``seed``: the same seed gives the
    same resamples on every run and platform.
    """
    np.random.seed(seed)  # noqa: NPY002 (numba supports only the legacy API)
    n = strata.shape[0]
    counts = np.zeros(n_strata, dtype=np.int64)
    for i in range(n):
        counts[strata[i]] += 1
    starts = np.zeros(n_strata + 1, dtype=np.int64)
    for h in range(n_strata):
        starts[h + 1] = starts[h] + counts[h]
    members = np.empty(n, dtype=np.int64)
    fill = starts[:n_strata].copy()
    for i in range(n):
        h = strata[i]
        members[fill[h]] = i
        fill[h] += 1
    out = np.empty((n_boot, n), dtype=np.int64)
    for b in range(n_boot):
        pos = 0
        for h in range(n_strata):
            nh = counts[h]
            for _ in range(nh):
                out[b, pos] = members[starts[h] + np.random.randint(0, nh)]  # noqa: NPY002
                pos += 1
    return out


@numba.njit(cache=True, nogil=True)
def _auroc(score, positive):
    """Binary AUROC (Mann-Whitney with mid-ranks for ties); nan if one class is absent."""
    m = score.shape[0]
    order = np.argsort(score, kind="mergesort")
    n_pos = 0
    for i in range(m):
        if positive[i]:
            n_pos += 1
    n_neg = m - n_pos
    if n_pos == 0 or n_neg == 0:
        return np.nan
    rank_sum = 0.0
    i = 0
    while i < m:
        j = i
        while j + 1 < m and score[order[j + 1]] == score[order[i]]:
            j += 1
        mid = 0.5 * (i + j) + 1.0
        for t in range(i, j + 1):
            if positive[order[t]]:
                rank_sum += mid
        i = j + 1
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


@numba.njit(cache=True, nogil=True)
def replicate_metrics(idx, y_true, y_pred, proba, group, n_groups, n_classes):
    """Accuracy, balanced accuracy and macro one-vs-rest AUROC on each resample.

    ``idx`` (n_boot, m) row indices (``bootstrap_indices``); ``group`` (n,) int group
    codes.  Returns (n_boot, n_groups + 1, 3): slot ``g < n_groups`` is group ``g``,
    the last slot all samples; metrics are [accuracy, balanced accuracy, macro AUROC].
    Balanced accuracy and macro AUROC average over the classes present (nan if none).
    """
    n_boot, m = idx.shape
    out = np.full((n_boot, n_groups + 1, 3), np.nan)
    for b in range(n_boot):
        for g in range(n_groups + 1):
            cnt = 0
            for t in range(m):
                if g == n_groups or group[idx[b, t]] == g:
                    cnt += 1
            if cnt == 0:
                continue
            rows = np.empty(cnt, dtype=np.int64)
            cnt = 0
            for t in range(m):
                i = idx[b, t]
                if g == n_groups or group[i] == g:
                    rows[cnt] = i
                    cnt += 1
            correct = 0.0
            per_tot = np.zeros(n_classes)
            per_cor = np.zeros(n_classes)
            for t in range(cnt):
                i = rows[t]
                per_tot[y_true[i]] += 1.0
                if y_pred[i] == y_true[i]:
                    correct += 1.0
                    per_cor[y_true[i]] += 1.0
            out[b, g, 0] = correct / cnt
            bal = 0.0
            n_present = 0
            for a in range(n_classes):
                if per_tot[a] > 0:
                    bal += per_cor[a] / per_tot[a]
                    n_present += 1
            if n_present > 0:
                out[b, g, 1] = bal / n_present
            score = np.empty(cnt)
            positive = np.empty(cnt, dtype=np.bool_)
            auc_sum = 0.0
            n_auc = 0
            for a in range(n_classes):
                if n_classes == 2 and a == 0:
                    continue
                for t in range(cnt):
                    score[t] = proba[rows[t], a]
                    positive[t] = y_true[rows[t]] == a
                auc = _auroc(score, positive)
                if not np.isnan(auc):
                    auc_sum += auc
                    n_auc += 1
            if n_auc > 0:
                out[b, g, 2] = auc_sum / n_auc
    return out
