"""Elastic-net logistic regression solver: numba proximal Newton (reference in ``_reference``).

Objective (scikit-learn's ``LogisticRegression(C, l1_ratio, solver="saga")``)::

    C * sum_i s_i * loss_i(W, b) + l1_ratio * |W|_1 + (1 - l1_ratio) / 2 * |W|_F^2
        [+ prior_strength / 2 * |W - P|_F^2]

with ``loss_i`` the multinomial cross-entropy (``mode="multinomial"``) or a sum of
independent binary logistic losses, one per column of a 0/1 target matrix
(``mode="sigmoid"``: binary problems use one column, multi-label one column per label).
The intercept ``b`` is not penalised.  Internally the objective is divided by
``C * sum(s)``, so the loss is a weighted mean and the penalties are ``lam1 |W|_1 +
lam2 / 2 |W|^2 + gamma / 2 |W - P|^2``.

The numba solver is a proximal-Newton scheme.  An outer loop makes one pass over ``X``
for the full gradient, stops when the largest KKT violation is below ``tol_abs``, and
otherwise restricts the problem to a working set of concepts (non-zero weights and KKT
violators).  On the working set, each iteration makes one pass for the loss, gradient
and curvature, minimises a quadratic model of the loss plus the exact penalty by
coordinate descent -- the Kronecker model ``A kron G`` (``A`` the weighted mean of the
per-sample softmax Hessians ``diag(p) - p p^T``, ``G`` the weighted Gram matrix of
``[X, 1]``, computed once, in float32 with a diagonal shift, from a row subsample when
rows far outnumber features: see ``gram``), or, once the Kronecker model stalls, the
exact second-order model with ``O(n)`` coordinate updates (few samples x classes,
or few classes, on working sets holding at most ``_EXACT_MAX_ACTIVE`` of the
weights; its sweeps budgeted to about ``_EXACT_PASSES`` passes over ``X`` per
iteration; after three iterations that do not halve the best KKT violation) or the
per-class blocks of the Hessian (``_block_step``; many classes, where the Kronecker
model is poor; after three iterations without a 15% improvement) --
then backtracks on the exact objective, evaluating the loss from ``Z + t dZ`` without
another pass over ``X``.  For the multinomial a per-concept shift of all classes'
weights then lowers the penalty at no change of loss.  Every ``_ANDERSON_M + 1``
Kronecker iterations the iterates are extrapolated (Anderson; ``_Anderson``), and the
extrapolation is kept only when it lowers the exact objective.  Once at most half of
a working set's columns are still active (non-zero or violating), the outer loop
rebuilds a smaller one, so the remaining passes over ``X`` are narrower.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from conceptlens.heads import _kernels

if TYPE_CHECKING:
    from conceptlens.heads._device import TorchPasses

__all__ = [
    "DualityGap",
    "SolveResult",
    "duality_gap",
    "gram",
    "gram_row_step",
    "gram_shift",
    "grad_scale",
    "kkt_violation",
    "solve",
]

_MODES = {"multinomial": _kernels.MULTINOMIAL, "sigmoid": _kernels.SIGMOID}
_GRAM_ROWS = 4096  # rows per float32 block of the Gram matrix
_GRAM_ROWS_PER_FEATURE = 8  # a subsampled Gram matrix keeps at least this many rows per feature
_SLOW_ITERS = 3  # slow iterations of the Kronecker model before it is replaced
_KRON_STALL_ITERS = 10  # slow ones after which the exact model replaces it at any size
# an iteration is slow unless it brings the best violation below this x: before the
# block model (first) and before the exact model (second; cheaper, converges fast)
_SLOW_RATES = (0.85, 0.5)
_EXACT_MAX_NK = 250_000  # samples x classes up to which the exact model replaces it
_EXACT_MAX_ACTIVE = 0.3  # exact model while the working sets hold at most this share of W
_EXACT_SMALL = 1_000_000  # ... or while samples x working-set weights is at most this
_EXACT_MAX_K = 10  # ... and for at most this many classes whatever the samples
_EXACT_PASSES = 8.0  # the exact model's sweeps per iteration cost about this many passes
_EXACT_SWEEPS = 100  # and are at most this many
_EXACT_TOL = 6.0  # its inner tolerance, in units of the iteration's inner_tol
_BLOCK_ROW_FRACTION = 0.03  # rows whose curvature is below this share of the largest drop
_BLOCK_MAX_COST = 16.0  # block model only while sum_a |J_a|^2 <= this x d x k
_ANDERSON_M = 5  # Anderson from this many differences of Kronecker iterates (0: off)
_ANDERSON_MAX_Z = 4_000_000  # ... while the logits (n x k) have at most this many entries
_SHRINK = 0.5  # a working set whose active columns are at most this share is rebuilt
_SHRINK_MIN_COLS = 20  # ... when it has at least this many columns


@dataclass
class SolveResult:
    """Solution of one penalty: ``coef`` (k, d), ``intercept`` (k,), diagnostics."""

    coef: np.ndarray
    intercept: np.ndarray
    n_iter: int
    converged: bool
    kkt: float
    n_passes: int
    gap: DualityGap | None = None


def _mm(a: np.ndarray, b: np.ndarray, dev: TorchPasses | None = None) -> np.ndarray:
    """Matrix product of a pass over ``X``: ``X @ B`` or ``A @ X``.

    ``dev=None``: numpy's BLAS.  Earlier versions sent large products through torch's
    CPU BLAS; measured single-threaded here it was no faster than numpy's OpenBLAS
    (``X @ W.T`` at n=50,000 d=2,000 k=10: 304 ms against 223 ms) and importing torch
    cost about 1.1 s of CPU on the first large fit of a process.  With a device backend
    (``_device.TorchPasses`` holding ``X``, or the working set's columns of it) the
    product runs on its device (a GPU) and comes back as a numpy array.
    """
    if dev is None:
        return a @ b
    return dev.matmul(a, b)


def gram(
    X: np.ndarray,
    s: np.ndarray,
    *,
    precision: str = "float32",
    subsample: bool = False,
    dev: TorchPasses | None = None,
) -> np.ndarray:
    """Weighted Gram matrix of ``[X, 1]``: (d + 1, d + 1) float64, weights ``s`` summing to 1.

    Symmetric rank-k BLAS updates: numpy calls ``syrk`` for ``A.T @ A`` (half the work
    of a general product), on ``X`` itself when the weights are equal and on
    ``sqrt(s) * X`` otherwise.

    The matrix only defines the solver's quadratic model (every step is accepted or
    rejected on the exact float64 objective), so by default (``precision="float32"``)
    the ``X`` block is computed in float32, about twice as fast: blocks of
    ``_GRAM_ROWS`` rows are cast to float32 (no full copy of ``X``), each block's
    ``syrk`` is summed in float64, and the diagonal is raised by ``gram_shift``, an
    estimate of the rounding error's spectral norm, so that the model stays positive
    semi-definite when ``X`` is (nearly) rank-deficient.  The feature means (intercept
    row and column) are always float64.  ``precision="float64"`` gives the exact
    weighted Gram matrix with one ``syrk``.

    ``subsample=True`` (what the solver uses) estimates the ``X`` block from every
    ``step``-th row when there are many rows per feature (``step = n // (8 d)``, so at
    least ``8 d`` rows remain; no subsampling below 16 rows per feature), with the
    weights of the kept rows rescaled to the total.  Again only the model changes:
    the feature means are computed from every row, and the solution, the objective and
    the stopping rule are exact.  See ``gram_row_step``.

    With a device backend ``dev`` holding ``X`` the ``X`` block is computed there, in
    float64 whatever ``precision`` (see ``_device``), from the same rows.
    """
    if precision not in ("float32", "float64"):
        raise ValueError(f"precision must be 'float32' or 'float64', got {precision!r}")
    n, d = X.shape
    G = np.zeros((d + 1, d + 1))
    m = s @ X if dev is None else dev.matmul(s[None, :], X)[0]
    G[:d, d] = m
    G[d, :d] = m
    G[d, d] = s.sum()
    step = gram_row_step(n, d) if subsample else 1
    if step > 1:
        kept = s[::step]
        total = kept.sum()
        if total > 0:
            X = X[::step]
            s = kept * (G[d, d] / total)
            n = X.shape[0]
    equal = bool(s.size) and bool(np.all(s == s[0]))
    if dev is not None:
        # the rows kept above (every row when their weights summed to zero)
        G[:d, :d] = dev.gram_block(1 if X is dev.X else step, None if equal else s)
        if equal:
            G[:d, :d] *= s[0]
    elif precision == "float64":
        if equal:
            G[:d, :d] = X.T @ X
            G[:d, :d] *= s[0]
        else:
            Xs = X * np.sqrt(s)[:, None]
            G[:d, :d] = Xs.T @ Xs
    elif d:
        root = np.sqrt(s)
        for i in range(0, n, _GRAM_ROWS):
            if equal:
                Xb = X[i : i + _GRAM_ROWS].astype(np.float32)
            else:
                Xb = (X[i : i + _GRAM_ROWS] * root[i : i + _GRAM_ROWS, None]).astype(np.float32)
            G[:d, :d] += Xb.T @ Xb
        if equal:
            G[:d, :d] *= s[0]
        G[np.arange(d), np.arange(d)] += gram_shift(G[:d, :d].diagonal(), min(n, _GRAM_ROWS))
    return G


def gram_row_step(n: int, d: int) -> int:
    """Row stride of the subsampled Gram matrix: ``n // (8 d)``, or 1 (every row).

    The quadratic model needs the Gram matrix only roughly (the steps are checked on the
    exact objective), and with ``n >> d`` rows it is estimated well from a regular
    subsample: on the benchmark's concept scores (n = 50,000, d = 2,000) the fit from
    every 3rd row needed the same 8 iterations and reached the same support as from
    every row.  With fewer than 16 rows per feature nothing is dropped.
    """
    return max(1, n // (_GRAM_ROWS_PER_FEATURE * max(d, 1)))


def gram_shift(diag: np.ndarray, n: int) -> float:
    """Diagonal shift that covers the rounding error of a float32 Gram matrix.

    An entry of a float32 ``X.T @ X`` summed over ``n`` rows is off by about
    ``u sqrt(n) sqrt(G_ii G_jj)`` (``u = 2**-24``; rounding ``X`` and the sum), and a
    symmetric ``d x d`` matrix of such errors has a spectral norm of about twice their
    size times ``sqrt(d)``.  The shift is that estimate, ``2 u sqrt(n d) max_i G_ii``,
    with ``n`` the rows summed in float32 (one block, as ``gram`` sums its blocks in
    float64).  On the benchmark's concept scores (rank 65, unit diagonal, d = 500 and
    2,000) the rounding left eigenvalues down to -6e-7 and the shift is 1.7e-4 and
    3.4e-4, 300-600 times more.
    """
    if diag.size == 0:
        return 0.0
    return 2.0 * 2.0**-24 * float(np.sqrt(max(n, 1) * diag.size)) * float(diag.max())


def _kernel_array(a: np.ndarray, order: Literal["C", "F"] = "C") -> np.ndarray:
    """``a`` as a writable float64 array in ``order``, copied only when it is not one.

    numba compiles (and caches) one machine-code version per argument type, and the
    type includes the layout (C / F / any) and read-only-ness: passing every kernel
    the same kinds of arrays means a fit compiles or loads each kernel once, whatever
    the caller's arrays were (a read-only memory map, a Fortran-ordered frame).
    """
    out = np.asarray(a, dtype=np.float64, order=order)
    if not out.flags.writeable:
        out = out.copy(order=order)
    return out


def _mode_code(mode: str) -> int:
    """The kernels' code of a loss name, with a clear error for anything else."""
    try:
        return _MODES[mode]
    except KeyError:
        raise ValueError(f"mode must be 'multinomial' or 'sigmoid', got {mode!r}") from None


def _probabilities(Y: np.ndarray, R: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Predicted probabilities from the residuals ``R = s (p - y)`` (rows of zero weight: y)."""
    return Y + R / np.where(s > 0, s, 1.0)[:, None]


def _mean_softmax_hessian(Pm: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``sum_i s_i (diag(p_i) - p_i p_i^T)``: (k, k), the intercepts' Hessian."""
    ps = Pm * s[:, None]
    return np.diag(ps.sum(axis=0)) - ps.T @ Pm


def _intercept_only(Y: np.ndarray, s: np.ndarray, mode: int) -> np.ndarray:
    freq = np.clip(s @ Y, 1e-12, 1.0 - 1e-12)
    if mode == _kernels.MULTINOMIAL:
        b = np.log(freq)
        return b - b.mean()
    return np.log(freq) - np.log1p(-freq)


def grad_scale(
    X: np.ndarray, Y: np.ndarray, s: np.ndarray, mode: int, dev: TorchPasses | None = None
) -> np.ndarray:
    """Loss gradient (k, d) at ``W = 0`` with the optimal intercepts (sets lambda_max)."""
    Y, s = _kernel_array(Y), _kernel_array(s)
    b0 = _intercept_only(Y, s, mode)
    Z = np.broadcast_to(b0, Y.shape).copy()
    _, R, _ = _kernels.loss_grad(Z, Y, s, mode)
    return _mm(R.T, X, dev)


def _centred_eigh(G):
    """Eigen-decomposition of the centred Gram matrix (for the exact ridge step)."""
    d = G.shape[0] - 1
    tot = G[d, d]
    mu = G[:d, d] / tot
    Gc = G[:d, :d] - tot * np.outer(mu, mu)
    lam, U = np.linalg.eigh(Gc)
    return np.maximum(lam, 0.0), U, mu, tot


def _ridge_step(eig, grad, A, W, P, lam2, gamma):
    """Exact minimiser of the Kronecker model plus the L2/prior penalties (no L1).

    Eliminating the intercept through the weighted feature means ``mu`` decouples the
    model into ``(A kron Gc + (lam2 + gamma) I) vec(D_W) = -r`` with ``Gc`` the centred
    Gram matrix, solved in the eigenbases of ``A`` and ``Gc``, and ``A e = -g_b / tot``
    (pseudo-inverse: the multinomial ``A`` is singular along the all-ones vector).
    """
    lam, U, mu, tot = eig
    d = U.shape[0]
    g_b = grad[:, d]
    r = grad[:, :d] - np.outer(g_b, mu) + lam2 * W + gamma * (W - P)
    sig, Vk = np.linalg.eigh(A)
    sig = np.maximum(sig, 0.0)
    core = (Vk.T @ r @ U) / (sig[:, None] * lam[None, :] + lam2 + gamma)
    DW = -(Vk @ core @ U.T)
    keep = sig > 1e-12 * max(sig.max(), 1e-300)
    e = -(Vk[:, keep] @ ((Vk[:, keep].T @ g_b) / sig[keep])) / tot
    D = np.empty((grad.shape[0], d + 1))
    D[:, :d] = DW
    D[:, d] = e - DW @ mu
    return D


def _penalty(W, lam1, lam2, gamma, P):
    val = lam1 * np.abs(W).sum() + 0.5 * lam2 * (W * W).sum()
    if gamma > 0:
        val += 0.5 * gamma * ((W - P) ** 2).sum()
    return val


def kkt_violation(grad_w, grad_b, W, lam1, lam2, gamma, P) -> float:
    """Largest violation of the optimality conditions (normalised objective scale)."""
    g = grad_w + lam2 * W + gamma * (W - P)
    nz = W != 0
    v = np.where(nz, np.abs(g + lam1 * np.sign(W)), np.maximum(np.abs(g) - lam1, 0.0))
    out = float(v.max()) if v.size else 0.0
    return max(out, float(np.abs(grad_b).max()) if grad_b.size else 0.0)


def solve(
    X: np.ndarray,
    Y: np.ndarray,
    s: np.ndarray,
    mode: str,
    *,
    lam1: float,
    lam2: float,
    gamma: float = 0.0,
    P: np.ndarray | None = None,
    coef0: np.ndarray | None = None,
    intercept0: np.ndarray | None = None,
    G: np.ndarray | None = None,
    tol_abs: float = 1e-8,
    max_iter: int = 200,
    max_sweeps: int = 500,
    offset: np.ndarray | None = None,
    gap: bool = False,
    dev: TorchPasses | None = None,
) -> SolveResult:
    """Proximal-Newton solve of the normalised objective (see module docstring).

    Parameters
    ----------
    X : ndarray (n, d) float64, C-contiguous
    Y : ndarray (n, k) float64; one-hot rows (multinomial) or 0/1 targets (sigmoid)
    s : ndarray (n,) float64, non-negative, summing to 1
    mode : {"multinomial", "sigmoid"}
    lam1, lam2, gamma : float
        L1, L2 and prior strengths on the normalised scale.
    P : ndarray (k, d), optional
        Prior target for ``W`` (used when ``gamma > 0``).
    coef0, intercept0 : ndarray, optional
        Warm start.
    G : ndarray (d + 1, d + 1), optional
        Precomputed ``gram(X, s)`` (a path shares it); otherwise only the working set's
        Gram matrix is computed.
    tol_abs : float
        Stop when the largest KKT violation is at most this.
    offset : ndarray (n, k), optional
        Fixed logits added to ``X @ W.T + b`` (residual fits).
    gap : bool, default=False
        Also certify the solution: ``SolveResult.gap`` is its :class:`DualityGap`
        (one more pass over ``X``; see :func:`duality_gap`).
    dev : _device.TorchPasses, optional
        Run the passes over ``X`` on its device (it must hold this ``X``); ``None``:
        numpy.
    """
    m = _mode_code(mode)
    # one numba specialisation per kernel: C-ordered, writable float64 arrays
    X = np.ascontiguousarray(X, dtype=np.float64)  # only BLAS reads X itself
    if dev is not None and X is not dev.X:
        raise ValueError("dev must hold the C-contiguous float64 X that solve is given")
    Y, s = _kernel_array(Y), _kernel_array(s)
    _n, d = X.shape
    k = Y.shape[1]
    P = np.zeros((k, d)) if P is None else _kernel_array(P)
    W = np.zeros((k, d)) if coef0 is None else np.array(coef0, dtype=np.float64)
    b = _intercept_only(Y, s, m) if intercept0 is None else np.array(intercept0, dtype=float)
    n_passes = 0
    if W.any():
        Z = _mm(X, np.ascontiguousarray(W.T), dev) + b
        n_passes += 1
    else:  # cold start: the logits are the intercepts, no pass needed
        Z = np.repeat(b[None, :], X.shape[0], axis=0)
    if offset is not None:
        Z += offset
    total_it = 0
    converged = False
    viol = np.inf
    state = None  # (loss, R, c, grad) at the current point when the last pass left it
    model = "kron"
    while True:
        # full KKT check: one pass over all features (skipped when the working set was
        # every feature and its solve ended on a gradient at the current point)
        if state is not None and state[3].shape[1] == d + 1:
            loss, R, c, grad = state
            gw = grad[:, :d]
        else:
            loss, R, c = state[:3] if state is not None else _kernels.loss_grad(Z, Y, s, m)
            gw = _mm(np.ascontiguousarray(R.T), X, dev)
            n_passes += 1
        g_b = R.sum(axis=0)
        viol = kkt_violation(gw, g_b, W, lam1, lam2, gamma, P)
        if viol <= tol_abs:
            converged = True
            break
        if total_it >= max_iter:
            break
        gfull = gw + lam2 * W + gamma * (W - P)
        cols = np.flatnonzero(((W != 0) | (np.abs(gfull) > lam1)).any(axis=0))
        if cols.size > 0.9 * d:
            cols = np.arange(d)
            XJ = X
        else:
            # np.take gives a C-ordered copy directly (X[:, cols] is F-ordered, and
            # re-ordering it cost 0.8 s at n=50,000 |J|=777)
            XJ = np.take(X, cols, axis=1)
        devJ = None if dev is None else dev.columns(XJ, cols)
        if G is None and cols.size == d:
            G = gram(X, s, subsample=True, dev=dev)
        if G is not None:
            sub = np.append(cols, d)
            GJ = G[np.ix_(sub, sub)]
        else:  # single fit on a small working set: only its Gram matrix, O(n |J|^2)
            GJ = gram(XJ, s, subsample=True, dev=devJ)
        grad = np.empty((k, cols.size + 1))
        grad[:, :-1] = gw[:, cols]
        grad[:, -1] = g_b
        WJ, b, Z, it, passes, stalled, state, model = _newton(
            XJ,
            Y,
            s,
            m,
            lam1,
            lam2,
            gamma,
            P[:, cols],
            W[:, cols],
            b,
            Z,
            GJ,
            0.5 * tol_abs,
            max_iter - total_it,
            max_sweeps,
            (loss, R, c, grad),
            "exact" if model == "exact" else "kron",
            devJ,
        )
        W[:, cols] = WJ
        total_it += it
        n_passes += passes
        if stalled:
            break
    if m == _kernels.MULTINOMIAL:
        shift = b.mean()
        b = b - shift
        Z -= shift
    certificate = None
    if gap:
        certificate = _gap_from_logits(X, Y, s, m, W, b, Z, lam1, lam2, gamma, P, dev)
        n_passes += 1
    return SolveResult(W, b, total_it, converged, float(viol), n_passes, certificate)


def _newton(
    X, Y, s, m, lam1, lam2, gamma, P, W, b, Z, G, tol_abs, max_iter, max_sweeps, first, model,
    dev=None,
):  # fmt: skip
    """Proximal-Newton iterations on the columns of ``X`` (a working set).

    ``model`` is the quadratic model to start with (``"kron"``; the exact model when
    an earlier working set needed it: the curvature that made the Kronecker model
    stall there has not changed); the one in use at the end is returned last.

    ``first`` is ``(loss, R, c, grad)`` at the starting point (the caller's pass).
    Returns the same tuple at the final point when the loop ended on its convergence
    test (so the caller needs no new pass there), else ``None``.  ``dev``: the device
    backend of these columns (``None``: numpy).
    """
    _n, d = X.shape
    k = Y.shape[1]
    P = _kernel_array(P)  # a column subset is F-ordered: keep the kernels' C signature
    W = W.copy()
    V = np.empty((k, d + 1))
    n_passes = 0
    it = 0
    stalled = False
    slow = [0, 0]
    XF = _kernel_array(X, "F") if model == "exact" else None
    eig = None
    best_viol = [np.inf, np.inf]
    loss, R, c, grad = first
    state = None
    # not with many classes: the block model, which then finishes the solve, came later
    # (n=6,000 d=300 k=100: 24 -> 29 iterations)
    use = _ANDERSON_M and Z.size <= _ANDERSON_MAX_Z and k <= _EXACT_MAX_K
    anderson = _Anderson(_ANDERSON_M) if use else None
    extrapolated = False
    for it in range(1, max_iter + 1):
        if it > 1:
            loss, R, c = _kernels.loss_grad(Z, Y, s, m)
            grad = np.empty((k, d + 1))
            grad[:, :d] = _mm(np.ascontiguousarray(R.T), X, dev)
            grad[:, d] = R.sum(axis=0)
            n_passes += 1
        state = (loss, R, c, grad)
        viol = kkt_violation(grad[:, :d], grad[:, d], W, lam1, lam2, gamma, P)
        if viol <= tol_abs:
            it -= 1
            break
        state = None
        gfull = grad[:, :d] + lam2 * W + gamma * (W - P)
        active = (W != 0) | (np.abs(gfull) > lam1)
        if it > 1 and d >= _SHRINK_MIN_COLS and active.any(axis=0).sum() <= _SHRINK * d:
            # most of the working set has left it (zero and not violating): hand back to
            # the outer loop, which rebuilds a smaller one (cheaper passes over X); the
            # state is at the current point, so no pass is repeated when this was all of X
            state = (loss, R, c, grad)
            it -= 1
            break
        ws = np.full((k, d + 1), d, dtype=np.int64)
        ws_len = np.empty(k, dtype=np.int64)
        for a in range(k):
            idx = np.flatnonzero(active[a])
            ws[a, : idx.size] = idx
            ws[a, idx.size] = d
            ws_len[a] = idx.size + 1
        V[:, :d] = W
        V[:, d] = b
        inner_tol = max(0.05 * viol, 0.1 * tol_abs)
        Pm = _probabilities(Y, R, s)
        # The Kronecker model A kron G is cheap (coordinate updates cost O(d)) but
        # poor when the curvature is very uneven across samples (near separation, or
        # many classes, each curved only near its own samples).  Once it stalls,
        # switch to a better model for the rest of this subproblem.
        # slow: no 15% improvement on the best violation so far (the Kronecker model
        # can also stall in an oscillation, better and worse in turn); for the exact
        # model, whose iterations cost a few passes, already no 2x improvement
        for r in range(2 if not extrapolated else 0):
            # (after an extrapolation the violation can jump while the objective fell:
            # the mixing leaves small weights with a gradient near the other bound)
            if viol < _SLOW_RATES[r] * best_viol[r]:
                best_viol[r] = viol
                slow[r] = 0
            else:
                slow[r] += 1
        # the exact model for few samples x classes or few classes; its sweeps cost
        # O(n) per working-set weight, so they are budgeted below
        n_active = max(float(ws_len.sum() - k), 1.0)
        # and, as many iterations are cheaper than it on a dense working set (the path
        # at small penalties), while the working sets hold at most _EXACT_MAX_ACTIVE of
        # the weights (or the problem is small)
        exact_fits = X.shape[0] * k <= _EXACT_MAX_NK or k <= _EXACT_MAX_K
        exact_ok = exact_fits and (
            n_active <= _EXACT_MAX_ACTIVE * d * k
            or X.shape[0] * n_active <= _EXACT_SMALL
            # or the Kronecker model has crawled for long (with the path's shared,
            # subsampled Gram matrix it can shrink the violation by under 1% per
            # iteration for hundreds of iterations): its iterations no longer cheaper
            or slow[0] >= _KRON_STALL_ITERS
        )
        if slow[1 if exact_ok else 0] >= _SLOW_ITERS and model == "kron":
            # the exact model's O(n) coordinate updates are affordable for few samples
            # x classes; beyond that, the per-class blocks of the Hessian
            if exact_ok:
                model = "exact"
                XF = _kernel_array(X, "F")
            elif float((ws_len.astype(np.float64) ** 2).sum()) <= _BLOCK_MAX_COST * d * k:
                # forming the blocks costs up to n sum_a |J_a|^2, against n d k per pass
                # over X: affordable while the working sets are small (not, e.g., for
                # pure ridge, where every weight is active); else keep the Kronecker model
                model = "blocks"
        if model == "exact":
            D = _kernels.cd_exact(
                XF,
                s,
                Pm,
                grad,
                V,
                P,
                lam1,
                lam2,
                gamma,
                ws,
                ws_len,
                # sweeps (full or over the active set) costing about _EXACT_PASSES
                # passes over X: a sweep costs 2 n |working set| against n d k
                int(min(max(_EXACT_PASSES * d * k / (2.0 * n_active), 3), _EXACT_SWEEPS)),
                _EXACT_TOL * inner_tol,
                m,
            )
        elif model == "blocks":
            D = _block_step(X, G, s, Pm, grad, V, P, lam1, lam2, gamma, ws, ws_len, inner_tol)
        else:
            A = _mean_softmax_hessian(Pm, s) if m == _kernels.MULTINOMIAL else np.diag(c)
            if lam1 == 0.0:
                if eig is None:
                    eig = _centred_eigh(G)
                D = _ridge_step(eig, grad, A, W, P, lam2, gamma)
            else:
                D = _kernels.cd_quadratic(
                    G, grad, A, V, P, lam1, lam2, gamma, ws, ws_len, max_sweeps, inner_tol
                )
        DW, Db = D[:, :d], D[:, d]
        dZ = _mm(X, np.ascontiguousarray(DW.T), dev) + Db
        n_passes += 1
        pen0 = _penalty(W, lam1, lam2, gamma, P)
        f0 = loss + pen0
        decrease = float((grad * D).sum()) + _penalty(W + DW, lam1, lam2, gamma, P) - pen0
        t = 1.0
        while True:
            ft = _kernels.loss_along(Z, dZ, t, Y, s, m) + _penalty(
                W + t * DW, lam1, lam2, gamma, P
            )
            # the 1e-13 slack accepts steps whose change is below float64 round-off,
            # where the Armijo test can no longer tell a decrease from noise
            if ft <= f0 + 1e-4 * t * min(decrease, 0.0) + 1e-13 * abs(f0) or t < 1e-10:
                break
            t *= 0.5
        if t < 1e-10:
            stalled = True
            break
        W = W + t * DW
        b = b + t * Db
        Z += t * dZ
        if m == _kernels.MULTINOMIAL and k > 1:
            # a per-concept shift of all classes lowers the penalty at no change of loss
            # (the model has no curvature along it): exact, by bisection
            W = W - _kernels.null_shift(W, P, lam1, lam2, gamma)
        extrapolated = False
        if anderson is not None and model == "kron":
            # the Kronecker model converges linearly: every _ANDERSON_M + 1
            # iterations, extrapolate; kept only if it lowers the exact objective (its
            # logits are the same combination of the iterates' logits: no pass over X)
            ext = anderson.push(W, b, Z)
            if ext is not None:
                We, be, Ze = ext
                fe = _kernels.loss_along(Ze, Ze, 0.0, Y, s, m) + _penalty(We, lam1, lam2, gamma, P)
                fc = _kernels.loss_along(Z, Z, 0.0, Y, s, m) + _penalty(W, lam1, lam2, gamma, P)
                if fe < fc:
                    extrapolated = True
                    W, b, Z = We, be, Ze
                    if m == _kernels.MULTINOMIAL and k > 1:
                        W = W - _kernels.null_shift(W, P, lam1, lam2, gamma)
    return W, b, Z, it, n_passes, stalled, state, model


class _Anderson:
    """Anderson extrapolation of the proximal-Newton iterates (Bertrand & Massias 2021).

    ``push`` collects iterates ``x_0 .. x_M`` (``x = (W, b)``, with their logits ``Z``);
    at the ``M + 1``-th it returns ``sum_{i>=1} c_i (W_i, b_i, Z_i)``, ``c`` minimising
    ``|sum_i c_i (x_i - x_{i-1})|`` subject to ``sum c = 1``, and starts a new batch
    (else ``None``).  ``Z`` is affine in ``(W, b)`` (up to a per-row constant for the
    multinomial, which leaves its loss unchanged), and ``sum c = 1``, so the combined
    logits are those of the combined weights: the caller evaluates the extrapolated
    point's exact objective without a pass over ``X`` and keeps it only if it is lower.
    On a linear fixed-point iteration in fewer than ``M`` dimensions the extrapolation
    is the fixed point.
    """

    def __init__(self, M):
        self.M = M
        self.xs = []
        self.zs = []

    def push(self, W, b, Z):
        self.xs.append(np.concatenate([W.ravel(), b]))
        self.zs.append(Z.copy())
        if len(self.xs) < self.M + 1:
            return None
        xs, zs = self.xs, self.zs
        self.xs, self.zs = [], []
        U = np.diff(np.array(xs), axis=0)
        UU = U @ U.T
        try:
            c = np.linalg.solve(UU + 1e-12 * np.trace(UU) * np.eye(self.M), np.ones(self.M))
        except np.linalg.LinAlgError:
            return None
        if not np.isfinite(c).all() or c.sum() == 0:
            return None
        c /= c.sum()
        x = sum(ci * xi for ci, xi in zip(c, xs[1:], strict=True))
        Ze = sum(ci * zi for ci, zi in zip(c, zs[1:], strict=True))
        kd = W.size
        return x[:kd].reshape(W.shape), x[kd:], Ze


@dataclass
class DualityGap:
    """Primal value, a dual lower bound on the optimum, and their gap (normalised scale).

    ``primal - optimum <= gap``, so ``relative = gap / primal`` certifies how far a
    solution is from the optimal objective without knowing the optimum.
    """

    primal: float
    dual: float

    @property
    def gap(self) -> float:
        return self.primal - self.dual

    @property
    def relative(self) -> float:
        return self.gap / abs(self.primal) if self.primal else self.gap


def _refit_intercept(Z0, Y, s, m, b, max_iter=50):
    """Residuals ``R`` after Newton on the intercepts with the logits ``Z0 = X W.T`` fixed.

    No pass over ``X``; on return the intercept gradient ``R.sum(0)`` is (nearly) zero:
    below 1e-15, or at its float64 round-off floor (a Newton step no longer halves it).
    """
    b = np.array(b, dtype=np.float64)
    loss, R, c = _kernels.loss_grad(Z0 + b, Y, s, m)
    best_R, best = R, np.inf
    for _ in range(max_iter):
        g = R.sum(axis=0)
        gmax = float(np.abs(g).max()) if g.size else 0.0
        if gmax > 0.5 * best:  # round-off floor: the last step did not halve it
            break
        best_R, best = R, gmax
        if gmax <= 1e-15:
            break
        if m == _kernels.MULTINOMIAL:
            # singular along the all-ones vector (a common shift of the intercepts)
            H = _mean_softmax_hessian(_probabilities(Y, R, s), s)
            step = -np.linalg.lstsq(H, g, rcond=None)[0]
            step -= step.mean()
        else:
            step = -g / np.maximum(c, 1e-300)
        t = 1.0
        while t > 1e-12:
            loss_t, R_t, c_t = _kernels.loss_grad(Z0 + b + t * step, Y, s, m)
            # the 1e-13 slack accepts steps whose change is below float64 round-off
            # (near the optimum the loss can no longer tell a Newton step's decrease
            # from noise; its gradient, the stopping test above, still can)
            if loss_t <= loss + 1e-4 * t * float(g @ step) + 1e-13 * abs(loss):
                break
            t *= 0.5
        if t <= 1e-12:
            break
        b = b + t * step
        loss, R, c = loss_t, R_t, c_t
    return best_R


def duality_gap(
    X: np.ndarray,
    Y: np.ndarray,
    s: np.ndarray,
    mode: str,
    coef: np.ndarray,
    intercept: np.ndarray,
    *,
    lam1: float,
    lam2: float,
    gamma: float = 0.0,
    P: np.ndarray | None = None,
) -> DualityGap:
    """Fenchel duality gap of ``(coef, intercept)`` for the objective ``solve`` minimises.

    Primal: ``sum_i s_i loss_i(W x_i + b) + h(W)`` with ``h(W) = lam1 |W|_1 + lam2/2
    |W|^2 + gamma/2 |W - P|^2`` (``s`` summing to 1).  Dual point: the residuals
    ``u_i = p_i - y_i`` at ``W`` with the intercepts re-optimised (Newton on ``b`` alone,
    so that ``sum_i s_i u_i = 0``, the constraint the unpenalised intercept imposes);
    dual value ``-sum_i s_i loss_i^*(u_i) - h^*(-sum_i s_i u_i x_i^T)``, where
    ``loss^*(u) = sum_a q_a log q_a`` with ``q = y + u`` the predicted probabilities
    (plus ``(1 - q_a) log(1 - q_a)`` per label for the binary losses) and
    ``h^*(V) = sum (|V + gamma P| - lam1)_+^2 / (2 (lam2 + gamma)) - gamma/2 |P|^2``.
    With ``lam2 + gamma = 0`` (lasso) the dual point is scaled by
    ``min(1, lam1 / |grad|_inf)`` to make ``h^*`` finite.  Costs two passes over ``X``.

    Parameters
    ----------
    X, Y, s, mode, lam1, lam2, gamma, P
        As for :func:`solve`.
    coef : ndarray (k, d)
    intercept : ndarray (k,)
        The solution to certify (any point: the bound holds everywhere).

    Returns
    -------
    DualityGap
        ``primal`` (the objective at ``coef, intercept``), ``dual`` (a lower bound on
        the optimum), ``gap`` and ``relative``.

    Examples
    --------
    >>> import numpy as np
    >>> from conceptlens.heads import _solver
    >>> rng = np.random.default_rng(0)
    >>> X, Y = rng.normal(size=(200, 4)), np.eye(3)[rng.integers(0, 3, 200)]
    >>> s = np.full(200, 1 / 200)
    >>> res = _solver.solve(X, Y, s, "multinomial", lam1=0.01, lam2=0.01, tol_abs=1e-10)
    >>> gap = _solver.duality_gap(X, Y, s, "multinomial", res.coef, res.intercept,
    ...                           lam1=0.01, lam2=0.01)
    >>> bool(0 <= gap.relative < 1e-8)
    True
    """
    m = _mode_code(mode)
    k, d = Y.shape[1], X.shape[1]
    if np.shape(coef) != (k, d) or np.shape(intercept) != (k,):
        raise ValueError(
            f"coef must have shape {(k, d)} and intercept {(k,)} for X {X.shape} and Y "
            f"{Y.shape}; got {np.shape(coef)} and {np.shape(intercept)}"
        )
    P = np.zeros((k, d)) if P is None else P
    Y, s = _kernel_array(Y), _kernel_array(s)
    Z = _mm(X, np.ascontiguousarray(coef.T)) + intercept
    return _gap_from_logits(X, Y, s, m, coef, intercept, Z, lam1, lam2, gamma, P)


def _gap_from_logits(X, Y, s, m, coef, intercept, Z, lam1, lam2, gamma, P, dev=None):
    """:func:`duality_gap` given the logits ``Z`` at ``(coef, intercept)`` (one pass over X).

    ``Z`` may include a fixed offset (residual fits): the dual point only needs the
    logits, and the intercepts are re-fitted with ``Z - intercept`` held fixed.
    """
    k, d = Y.shape[1], X.shape[1]
    if P is None:
        P = np.zeros((k, d))
    Z0 = Z - intercept
    loss0 = _kernels.loss_grad(Z, Y, s, m)[0]
    primal = loss0 + _penalty(coef, lam1, lam2, gamma, P)
    R = _refit_intercept(Z0, Y, s, m, intercept)
    grad = _mm(np.ascontiguousarray(R.T), X, dev)  # (k, d) = sum_i s_i u_i x_i^T
    mu = lam2 + gamma
    alpha = 1.0
    if mu == 0.0:
        gmax = float(np.abs(grad).max()) if grad.size else 0.0
        alpha = min(1.0, lam1 / gmax) if gmax > 0 else 1.0
    Q = np.clip(Y + alpha * (_probabilities(Y, R, s) - Y), 0.0, 1.0)
    ent = Q * np.log(np.where(Q > 0, Q, 1.0))
    if m == _kernels.SIGMOID:
        Qc = 1.0 - Q
        ent = ent + Qc * np.log(np.where(Qc > 0, Qc, 1.0))
    conj_loss = float(s @ ent.sum(axis=1))
    if mu == 0.0:
        conj_pen = 0.0
    else:
        V = -alpha * grad + gamma * P
        conj_pen = float((np.maximum(np.abs(V) - lam1, 0.0) ** 2).sum()) / (2.0 * mu)
        conj_pen -= 0.5 * gamma * float((P * P).sum())
    return DualityGap(float(primal), -conj_loss - conj_pen)


def _block_step(X, G, s, Pm, grad, V, P, lam1, lam2, gamma, ws, ws_len, tol):
    """Minimise the block-diagonal second-order model, one class at a time.

    Class ``a``'s block of the Hessian, ``sum_i s_i p_ia (1 - p_ia) [x_i, 1] [x_i, 1]^T``
    on its working set, is formed with BLAS from the rows whose curvature is at least
    ``_BLOCK_ROW_FRACTION`` of the class's largest (with many classes most samples sit
    far from any one class and contribute almost nothing), and minimised by the same
    coordinate descent as the Kronecker model.  The cross-class blocks are dropped, as
    in glmnet's multinomial solver; for the independent binary losses (``sigmoid``)
    the Hessian is block-diagonal, so only the row selection approximates it.  As for
    every model, the step is then checked on the exact objective.
    """
    k, d1 = V.shape
    D = np.zeros((k, d1))
    one = np.ones((1, 1))
    for a in range(k):
        J = ws[a, : ws_len[a]]  # the working set; its last entry is the intercept
        cols = J[:-1]
        w = s * Pm[:, a] * (1.0 - Pm[:, a])
        wmax = float(w.max()) if w.size else 0.0
        if wmax <= 0.0:
            continue
        keep = w >= _BLOCK_ROW_FRACTION * wmax
        rows = np.flatnonzero(keep)
        XS = np.empty((rows.size, cols.size + 1))
        XS[:, :-1] = X[np.ix_(rows, cols)]
        XS[:, -1] = 1.0
        XS *= np.sqrt(w[rows])[:, None]
        Ga = XS.T @ XS
        # the dropped rows' curvature, at the average second moment of all rows
        Ga += (w.sum() - w[rows].sum()) * G[np.ix_(J, J)]
        Pa = np.zeros((1, cols.size + 1))
        Pa[0, :-1] = P[a, cols]
        Da = _kernels.cd_quadratic(
            Ga,
            grad[a : a + 1, J],
            one,
            V[a : a + 1, J],
            Pa,
            lam1,
            lam2,
            gamma,
            np.arange(J.size, dtype=np.int64)[None, :],
            np.array([J.size], dtype=np.int64),
            500,
            tol,
        )
        D[a, J] = Da[0]
    return D
