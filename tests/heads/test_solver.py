"""The numba proximal-Newton solver against scikit-learn's saga and the numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from conceptlens.heads import SparseLinearHead, _kernels, _reference, _solver
from tests.heads.conftest import make_problem


def _targets(y, k):
    if k == 2:
        return (y == 1).astype(float)[:, None], "sigmoid"
    return np.eye(k)[y], "multinomial"


def _saga(X, y, C, l1_ratio, sample_weight=None, class_weight=None):
    return LogisticRegression(
        C=C,
        l1_ratio=l1_ratio,
        solver="saga",
        tol=1e-10,
        max_iter=100_000,
        class_weight=class_weight,
    ).fit(X, y, sample_weight=sample_weight)


@pytest.mark.parametrize(
    ("k", "C", "l1_ratio"),
    [(3, 0.05, 0.5), (3, 0.2, 1.0), (2, 0.05, 0.8), (4, 0.1, 0.0)],
)
@pytest.mark.parametrize("exact_first", [False, True])
def test_matches_sklearn_saga(k, C, l1_ratio, exact_first, global_random_seed, monkeypatch):
    if exact_first:  # the exact second-order model from the first iteration
        monkeypatch.setattr(_solver, "_SLOW_ITERS", 0)
    X, y = make_problem(global_random_seed, n=300, d=10, k=k)
    Xtest, _ = make_problem(global_random_seed + 1, n=200, d=10, k=k)
    head = SparseLinearHead(C=C, l1_ratio=l1_ratio, standardize=False, tol=1e-8).fit(X, y)
    ref = _saga(X, y, C, l1_ratio)
    Y, mode = _targets(y, k)
    kw = dict(C=C, l1_ratio=l1_ratio, mode=mode)
    obj = _reference.objective(X, Y, head.coef_, head.intercept_, **kw)
    obj_ref = _reference.objective(X, Y, ref.coef_, ref.intercept_, **kw)
    assert head.converged_
    assert obj <= obj_ref * (1 + 1e-4)
    assert abs(obj - obj_ref) <= 1e-4 * abs(obj_ref)
    np.testing.assert_array_equal(head.coef_ != 0, ref.coef_ != 0)
    np.testing.assert_array_equal(head.predict(Xtest), ref.predict(Xtest))
    np.testing.assert_allclose(head.predict_proba(Xtest), ref.predict_proba(Xtest), atol=1e-4)


def test_standardisation_is_folded_back(global_random_seed):
    X, y = make_problem(global_random_seed, n=300, d=8, k=3)
    rng = np.random.default_rng(global_random_seed)
    Xraw = X * rng.uniform(0.1, 10, size=8) + rng.normal(size=8) * 5
    C, l1 = 0.1, 0.7
    head = SparseLinearHead(C=C, l1_ratio=l1, tol=1e-8).fit(Xraw, y)
    lr = LogisticRegression(C=C, l1_ratio=l1, solver="saga", tol=1e-10, max_iter=100_000)
    pipe = make_pipeline(StandardScaler(), lr)
    pipe.fit(Xraw, y)
    scaler, lr = pipe[0], pipe[1]
    np.testing.assert_allclose(head.coef_ * scaler.scale_, lr.coef_, atol=1e-4)
    np.testing.assert_allclose(
        head.decision_function(Xraw) - head.decision_function(Xraw).mean(1, keepdims=True),
        pipe.decision_function(Xraw) - pipe.decision_function(Xraw).mean(1, keepdims=True),
        atol=1e-3,
    )


def test_blockwise_standardisation_is_the_dense_formula(global_random_seed):
    # the centred copy is filled in blocks of rows: many blocks, a short last one, a
    # constant column (scale 1) and weights; against StandardScaler's numbers
    from conceptlens.heads import _base

    rng = np.random.default_rng(global_random_seed)
    X = rng.normal(size=(1003, 37)) * rng.uniform(0.1, 10, size=37) + 5.0
    X[:, 3] = 2.5
    sw = rng.uniform(0.0, 3.0, size=1003)
    w = sw / sw.sum()
    mean = w @ X
    scale = np.sqrt(w @ (X - mean) ** 2)
    scale[3] = 1.0
    got_mean, got_scale, Xs = _base._standardize(X, sw)  # one block (14,169 rows)
    np.testing.assert_allclose(got_mean, mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got_scale, scale, rtol=1e-12)
    np.testing.assert_allclose(Xs, (X - mean) / scale, atol=1e-12)
    assert Xs.flags.c_contiguous
    sc = StandardScaler().fit(X[:, :3], sample_weight=sw)
    np.testing.assert_allclose(got_scale[:3], sc.scale_, rtol=1e-10)
    # 20,060 rows: a full block of 14,169 and a short one
    X2 = np.repeat(X, 20, axis=0)
    m2, s2, Xs2 = _base._standardize(X2, np.repeat(sw, 20))
    np.testing.assert_allclose(m2, mean, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(s2, scale, rtol=1e-10)
    np.testing.assert_allclose(Xs2[::20], (X - mean) / scale, atol=1e-10)


def test_sample_and_class_weights_match_sklearn(global_random_seed):
    X, y = make_problem(global_random_seed, n=300, d=8, k=3)
    sw = np.random.default_rng(global_random_seed).uniform(0.2, 3.0, size=len(y))
    C, l1 = 0.1, 0.6
    head = SparseLinearHead(
        C=C, l1_ratio=l1, standardize=False, tol=1e-8, class_weight="balanced"
    ).fit(X, y, sample_weight=sw)
    ref = _saga(X, y, C, l1, sample_weight=sw, class_weight="balanced")
    np.testing.assert_allclose(head.coef_, ref.coef_, atol=2e-4)
    np.testing.assert_array_equal(head.coef_ != 0, ref.coef_ != 0)


def test_integer_weights_equal_repeated_rows(global_random_seed):
    X, y = make_problem(global_random_seed, n=120, d=6, k=3)
    w = np.random.default_rng(global_random_seed).integers(0, 4, size=len(y))
    a = SparseLinearHead(C=0.3, tol=1e-9).fit(X, y, sample_weight=w)
    b = SparseLinearHead(C=0.3, tol=1e-9).fit(np.repeat(X, w, 0), np.repeat(y, w))
    np.testing.assert_allclose(a.coef_, b.coef_, atol=1e-7)


@pytest.mark.parametrize(("k", "mode"), [(3, "multinomial"), (2, "sigmoid")])
def test_numba_solver_matches_numpy_reference(k, mode, global_random_seed):
    X, y = make_problem(global_random_seed, n=200, d=8, k=k)
    Y, _ = _targets(y, k)
    s = np.full(len(y), 1.0 / len(y))
    P = np.sign(np.random.default_rng(0).normal(size=(Y.shape[1], 8)))
    kw = dict(lam1=0.02, lam2=0.01, gamma=0.005, P=P)
    fast = _solver.solve(X, Y, s, mode, tol_abs=1e-10, max_iter=1000, **kw)
    slow = _reference.solve_reference(X, Y, s, mode, tol_abs=1e-10, **kw)
    assert fast.converged and slow.converged
    np.testing.assert_allclose(fast.coef, slow.coef, atol=1e-6)
    np.testing.assert_allclose(fast.intercept, slow.intercept, atol=1e-6)


def test_deterministic(global_random_seed):
    X, y = make_problem(global_random_seed, n=200, d=8, k=3)
    a = SparseLinearHead(C=0.1).fit(X, y)
    b = SparseLinearHead(C=0.1).fit(X, y)
    np.testing.assert_array_equal(a.coef_, b.coef_)


def test_knowledge_prior_pulls_towards_prior(global_random_seed):
    X, y = make_problem(global_random_seed, n=200, d=6, k=3)
    P = np.array([[1, -1, 0, 0, 1, 0], [0, 1, 0, -1, 0, 0], [-1, 0, 1, 0, 0, 1]], float)
    free = SparseLinearHead(C=0.05, standardize=False).fit(X, y)
    pulled = SparseLinearHead(
        C=0.05, standardize=False, knowledge_prior=P, prior_strength=5.0
    ).fit(X, y)
    assert np.abs(pulled.coef_ - P).sum() < np.abs(free.coef_ - P).sum()


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    k=st.sampled_from([2, 3]),
    C=st.floats(0.01, 1.0),
    l1_ratio=st.floats(0.0, 1.0),
)
def test_kkt_conditions_hold(seed, k, C, l1_ratio):
    X, y = make_problem(seed, n=80, d=5, k=k)
    head = SparseLinearHead(C=C, l1_ratio=l1_ratio, standardize=False, tol=1e-9).fit(X, y)
    Y, mode = _targets(y, k)
    W, b = head.coef_, head.intercept_
    Z = X @ W.T + b
    if mode == "multinomial":
        P = np.exp(Z - Z.max(1, keepdims=True))
        P /= P.sum(1, keepdims=True)
    else:
        P = 1 / (1 + np.exp(-Z))
    grad = C * (P - Y).T @ X + (1 - l1_ratio) * W  # smooth part, sklearn scale
    scale = max(np.abs(C * (P - Y).T @ X).max(), 1.0)
    nz = W != 0
    assert np.all(np.abs(grad[nz] + l1_ratio * np.sign(W[nz])) <= 1e-5 * scale)
    assert np.all(np.abs(grad[~nz]) <= l1_ratio + 1e-5 * scale)
    assert np.all(np.abs(C * (P - Y).sum(0)) <= 1e-5 * scale)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), l1_ratio=st.floats(0.2, 1.0))
def test_permuting_features_permutes_coefficients(seed, l1_ratio):
    X, y = make_problem(seed, n=100, d=6, k=3)
    perm = np.random.default_rng(seed).permutation(6)
    a = SparseLinearHead(C=0.2, l1_ratio=l1_ratio, tol=1e-9).fit(X, y)
    b = SparseLinearHead(C=0.2, l1_ratio=l1_ratio, tol=1e-9).fit(X[:, perm], y)
    np.testing.assert_allclose(b.coef_, a.coef_[:, perm], atol=1e-6)


def test_offset_is_a_fixed_logit(global_random_seed):
    X, y = make_problem(global_random_seed, n=200, d=6, k=3)
    Y, _ = _targets(y, 3)
    s = np.full(len(y), 1 / len(y))
    offset = np.random.default_rng(0).normal(size=(len(y), 3))
    with_off = _solver.solve(X, Y, s, "multinomial", lam1=0.01, lam2=0.01, offset=offset)
    # optimality of the intercepts with the offset included in the logits
    Z = X @ with_off.coef.T + with_off.intercept + offset
    P = np.exp(Z - Z.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    np.testing.assert_allclose(((P - Y) * s[:, None]).sum(0), 0, atol=1e-6)


@pytest.mark.parametrize("weights", ["uniform", "random"])
def test_gram_matches_dense_formula(weights, global_random_seed):
    rng = np.random.default_rng(global_random_seed)
    X = rng.normal(size=(120, 7))
    s = np.full(120, 1 / 120) if weights == "uniform" else rng.random(120)
    if weights == "random":
        s[:5] = 0.0
        s /= s.sum()
    Xa = np.hstack([X, np.ones((120, 1))])
    dense = (Xa * s[:, None]).T @ Xa
    np.testing.assert_allclose(_solver.gram(X, s, precision="float64"), dense, atol=1e-13)
    # float32 (the default): the X block within its rounding error plus the diagonal
    # shift, the feature means (last row and column) exact
    G = _solver.gram(X, s)
    shift = _solver.gram_shift(dense.diagonal()[:7], 120)
    diff = G - dense
    diff[np.arange(7), np.arange(7)] -= shift
    bound = 4 * 2.0**-24 * 120 * np.sqrt(np.outer(dense.diagonal(), dense.diagonal()))
    assert np.all(np.abs(diff[:7, :7]) <= bound[:7, :7] + 1e-15)
    np.testing.assert_allclose(G[7], dense[7], atol=1e-13)
    np.testing.assert_allclose(G[:, 7], dense[:, 7], atol=1e-13)
    assert np.array_equal(G, G.T)


def test_gram_precision_is_validated():
    with pytest.raises(ValueError, match="'float32' or 'float64'"):
        _solver.gram(np.ones((3, 2)), np.full(3, 1 / 3), precision="half")


@pytest.mark.parametrize("n", [500, 5000])
def test_float32_gram_is_positive_semidefinite_on_collinear_columns(n):
    # rank-8 concept scores in 200 columns: the exact Gram matrix is singular, and
    # float32 rounding alone leaves negative eigenvalues that the shift must cover
    rng = np.random.default_rng(n)
    X = rng.normal(size=(n, 8)) @ rng.normal(size=(8, 200))
    X = (X - X.mean(0)) / X.std(0)
    s = np.full(n, 1 / n)
    G = _solver.gram(X, s)[:200, :200]
    raw = G - _solver.gram_shift(G.diagonal(), n) * np.eye(200)
    assert np.linalg.eigvalsh(raw).min() < 0  # the rounding is real ...
    assert np.linalg.eigvalsh(G).min() > 0  # ... and the shift covers it


def _nearly_collinear(seed, n, d, k):
    X, y = make_problem(seed, n=n, d=d, k=k)
    rng = np.random.default_rng(seed)
    X[:, d // 2 :] = X[:, : d - d // 2] + 1e-3 * rng.normal(size=(n, d - d // 2))
    return (X - X.mean(0)) / X.std(0), y


@pytest.mark.parametrize(
    ("k", "l1_ratio", "collinear"),
    [(3, 0.5, False), (3, 1.0, False), (3, 1.0, True), (2, 1.0, True), (4, 0.0, True)],
)
def test_float32_gram_gives_the_float64_solution(
    k, l1_ratio, collinear, global_random_seed, monkeypatch
):
    # the float32 Gram matrix only changes the quadratic model: the solution and the
    # objective are those of the float64 Gram path.  Pure lasso on nearly collinear
    # columns converges slowly with either matrix (a known limit of the Kronecker
    # model), so there only the objectives after the same iteration budget are compared.
    make = _nearly_collinear if collinear else make_problem
    X, y = make(global_random_seed, 400, 16, k)
    Y, mode = _targets(y, k)
    s = np.full(len(y), 1 / len(y))
    lam1, lam2 = 0.02 * l1_ratio, 0.02 * (1 - l1_ratio)
    kw = dict(lam1=lam1, lam2=lam2, tol_abs=1e-8, max_iter=500)
    res32 = _solver.solve(X, Y, s, mode, **kw)
    exact = _solver.gram
    monkeypatch.setattr(
        _solver, "gram", lambda X, s, **kw: exact(X, s, **{**kw, "precision": "float64"})
    )
    res64 = _solver.solve(X, Y, s, mode, **kw)
    # the solved objective, on scikit-learn's scale: with weights s summing to 1 it is
    # C * mean loss + l1_ratio |W|_1 + ..., i.e. C = 1 / (lam1 + lam2) (= 50)
    f32, f64 = (
        _reference.objective(
            X, Y, r.coef, r.intercept, C=1.0 / (lam1 + lam2), l1_ratio=l1_ratio, mode=mode,
            sample_weight=s,
        )
        for r in (res32, res64)
    )  # fmt: skip
    assert abs(f32 - f64) <= 1e-6 * abs(f64)
    if l1_ratio < 1.0 or not collinear:  # unique solution, reached
        assert res32.converged and res64.converged
        np.testing.assert_allclose(res32.coef, res64.coef, atol=1e-5)
        np.testing.assert_allclose(res32.intercept, res64.intercept, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    lam1=st.floats(0.0, 1.0),
    lam2=st.floats(0.01, 1.0),
    gamma=st.sampled_from([0.0, 0.5]),
)
def test_null_shift_minimises_the_penalty(seed, lam1, lam2, gamma):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(4, 6))
    W[rng.random(W.shape) < 0.5] = 0.0
    P = rng.integers(-1, 2, size=W.shape).astype(float)
    tau = _kernels.null_shift(W, P, lam1, lam2, gamma)

    def pen(t):  # penalty of column j shifted by t, for every candidate t (m,)
        V = W[:, j][None, :] - t[:, None]
        Vp = V - P[:, j][None, :]
        return lam1 * np.abs(V).sum(1) + 0.5 * lam2 * (V * V).sum(1) + 0.5 * gamma * (Vp**2).sum(1)

    for j in range(W.shape[1]):
        grid = np.concatenate([np.linspace(-4, 4, 4001), W[:, j]])
        assert pen(np.array([tau[j]]))[0] <= pen(grid).min() + 1e-10


def test_no_pass_is_repeated():
    X, y = make_problem(0, n=200, d=6, k=3)
    Y, _ = _targets(y, 3)
    s = np.full(len(y), 1 / len(y))
    # zero is optimal: one gradient pass, no pass for the logits of W = 0
    zero = _solver.solve(X, Y, s, "multinomial", lam1=10.0, lam2=0.01)
    assert zero.converged and zero.n_iter == 0 and zero.n_passes == 1
    # each iteration costs two passes (step logits, gradient) plus the first gradient
    res = _solver.solve(X, Y, s, "multinomial", lam1=0.01, lam2=0.01)
    assert res.converged and res.n_passes == 2 * res.n_iter + 1
    # a warm start at the solution: one pass for its logits, one for the gradient
    warm = _solver.solve(
        X, Y, s, "multinomial", lam1=0.01, lam2=0.01, coef0=res.coef, intercept0=res.intercept
    )
    assert warm.converged and warm.n_iter == 0 and warm.n_passes == 2


def test_gram_row_step_keeps_every_row_below_16_rows_per_feature():
    assert _solver.gram_row_step(15 * 100, 100) == 1
    assert _solver.gram_row_step(16 * 100, 100) == 2
    assert _solver.gram_row_step(50_000, 2_000) == 3
    assert _solver.gram_row_step(10, 0) == 1


@pytest.mark.parametrize("weights", ["uniform", "random"])
def test_subsampled_gram_is_the_dense_formula_on_the_kept_rows(weights, global_random_seed):
    rng = np.random.default_rng(global_random_seed)
    n, d = 2000, 10
    X = rng.normal(size=(n, d)) + 0.5
    s = np.full(n, 1 / n) if weights == "uniform" else rng.random(n)
    s /= s.sum()
    step = _solver.gram_row_step(n, d)
    assert step == 25
    Xk, sk = X[::step], s[::step] / s[::step].sum()
    G = _solver.gram(X, s, precision="float64", subsample=True)
    np.testing.assert_allclose(G[:d, :d], (Xk * sk[:, None]).T @ Xk, atol=1e-13)
    # the feature means and the total weight come from every row
    np.testing.assert_allclose(G[d, :d], s @ X, atol=1e-13)
    np.testing.assert_allclose(G[:d, d], s @ X, atol=1e-13)
    assert G[d, d] == pytest.approx(1.0)
    # float32 blocks on the kept rows, within their rounding bound plus the shift
    G32 = _solver.gram(X, s, subsample=True)
    diff = G32[:d, :d] - G[:d, :d]
    diff[np.arange(d), np.arange(d)] -= _solver.gram_shift(G[:d, :d].diagonal(), len(Xk))
    bound = 4 * 2.0**-24 * len(Xk) * np.sqrt(np.outer(G.diagonal()[:d], G.diagonal()[:d]))
    assert np.all(np.abs(diff) <= bound + 1e-15)


@pytest.mark.parametrize(("k", "l1_ratio"), [(3, 0.5), (2, 0.9), (4, 0.0)])
def test_subsampled_gram_gives_the_full_gram_solution(
    k, l1_ratio, global_random_seed, monkeypatch
):
    # the subsample only changes the quadratic model: same solution and objective
    X, y = make_problem(global_random_seed, n=3000, d=12, k=k)
    Y, mode = _targets(y, k)
    s = np.full(len(y), 1 / len(y))
    kw = dict(lam1=0.01 * l1_ratio, lam2=0.01 * (1 - l1_ratio), tol_abs=1e-9, max_iter=500)
    assert _solver.gram_row_step(3000, 12) > 1
    sub = _solver.solve(X, Y, s, mode, **kw)
    exact = _solver.gram
    monkeypatch.setattr(
        _solver, "gram", lambda X, s, **kw: exact(X, s, **{**kw, "subsample": False})
    )
    full = _solver.solve(X, Y, s, mode, **kw)
    assert sub.converged and full.converged
    np.testing.assert_allclose(sub.coef, full.coef, atol=1e-6)
    np.testing.assert_allclose(sub.intercept, full.intercept, atol=1e-6)
    np.testing.assert_array_equal(sub.coef != 0, full.coef != 0)


def _gap_problem(seed, mode):
    X, y = make_problem(seed, n=300, d=8, k=3)
    rng = np.random.default_rng(seed)
    if mode == "sigmoid":  # multi-label targets
        Y = (rng.random((300, 2)) < 0.4).astype(float)
    else:
        Y = np.eye(3)[y]
    return X, Y, np.full(300, 1 / 300), rng


@pytest.mark.parametrize(
    ("mode", "lam1", "lam2", "gamma"),
    [
        ("multinomial", 5e-3, 5e-3, 0.0),
        ("multinomial", 1e-2, 0.0, 0.0),  # lasso: the dual point is scaled
        ("multinomial", 0.0, 1e-2, 0.0),
        ("multinomial", 2e-3, 2e-3, 1e-2),  # knowledge prior
        ("sigmoid", 5e-3, 1e-3, 0.0),
    ],
)
def test_duality_gap_bounds_the_suboptimality(mode, lam1, lam2, gamma, global_random_seed):
    X, Y, s, rng = _gap_problem(global_random_seed, mode)
    k = Y.shape[1]
    P = rng.choice([-1.0, 0.0, 1.0], size=(k, 8)) if gamma else None
    kw = dict(lam1=lam1, lam2=lam2, gamma=gamma, P=P)
    best = _solver.solve(X, Y, s, mode, tol_abs=1e-11, max_iter=5000, **kw)
    at_best = _solver.duality_gap(X, Y, s, mode, best.coef, best.intercept, **kw)
    # the optimum from the dense objective formula, independent of the gap's code
    scale = 1.0 / (lam1 + lam2) if lam1 + lam2 else 1.0  # any C: the objective is rescaled
    opt = (
        _reference.objective(
            X,
            Y,
            best.coef,
            best.intercept,
            C=scale / 300,
            l1_ratio=lam1 * scale,
            mode=mode,
            prior=P,
            prior_strength=gamma * scale,
        )
        / scale
    )
    assert at_best.primal == pytest.approx(opt, rel=1e-12)
    assert 0 <= at_best.relative <= 1e-9 or abs(at_best.gap) <= 1e-14
    for W, b in [
        (rng.normal(size=(k, 8)), rng.normal(size=k)),  # a random point
        (_solver.solve(X, Y, s, mode, tol_abs=1e-2, **kw).coef, best.intercept),  # loose
    ]:
        g = _solver.duality_gap(X, Y, s, mode, W, b, **kw)
        assert g.dual <= opt + 1e-12  # weak duality
        assert g.primal - opt <= g.gap + 1e-12


@pytest.mark.parametrize(
    ("mode", "k", "gamma", "fraction"),
    [("multinomial", 5, 0.0, 0.03), ("multinomial", 4, 1e-2, 0.5), ("sigmoid", 3, 0.0, 0.03)],
)
def test_block_model_reaches_the_same_solution(
    mode, k, gamma, fraction, global_random_seed, monkeypatch
):
    # the per-class block model (used for many samples x classes once the Kronecker
    # model stalls) forced from the first iteration: same optimum as the default path
    X, y = make_problem(global_random_seed, n=600, d=15, k=k)
    rng = np.random.default_rng(global_random_seed)
    Y = np.eye(k)[y] if mode == "multinomial" else (rng.random((600, k)) < 0.3).astype(float)
    s = np.full(600, 1 / 600)
    P = rng.choice([-1.0, 0.0, 1.0], size=(k, 15)) if gamma else None
    kw = dict(lam1=4e-3, lam2=2e-3, gamma=gamma, P=P, tol_abs=1e-9, max_iter=1000)
    default = _solver.solve(X, Y, s, mode, **kw)
    calls = []
    block_step = _solver._block_step
    monkeypatch.setattr(_solver, "_SLOW_ITERS", 0)
    monkeypatch.setattr(_solver, "_EXACT_MAX_NK", 0)
    monkeypatch.setattr(_solver, "_EXACT_MAX_K", 0)
    monkeypatch.setattr(_solver, "_BLOCK_ROW_FRACTION", fraction)
    monkeypatch.setattr(_solver, "_block_step", lambda *a: calls.append(1) or block_step(*a))
    blocks = _solver.solve(X, Y, s, mode, **kw)
    assert calls  # the block model did the work
    assert default.converged and blocks.converged
    np.testing.assert_allclose(blocks.coef, default.coef, atol=1e-6)
    np.testing.assert_allclose(blocks.intercept, default.intercept, atol=1e-6)


def test_block_step_is_the_newton_step_for_binary_losses(global_random_seed, monkeypatch):
    # independent binary losses have a block-diagonal Hessian: with every row kept and
    # no L1 term, the block step solves each label's Newton system (dense numpy)
    rng = np.random.default_rng(global_random_seed)
    n, d, k = 200, 6, 3
    X = rng.normal(size=(n, d))
    Y = (rng.random((n, k)) < 0.4).astype(float)
    s = np.full(n, 1 / n)
    W, b = rng.normal(size=(k, d)) * 0.3, rng.normal(size=k) * 0.1
    Z = X @ W.T + b
    _, R, _ = _kernels.loss_grad(Z, Y, s, _kernels.SIGMOID)
    Xa = np.hstack([X, np.ones((n, 1))])
    grad = R.T @ Xa
    Pm = 1 / (1 + np.exp(-Z))
    V = np.hstack([W, b[:, None]])
    ws = np.tile(np.arange(d + 1), (k, 1))
    lam2 = 0.05
    monkeypatch.setattr(_solver, "_BLOCK_ROW_FRACTION", 0.0)
    G = _solver.gram(X, s, precision="float64")
    D = _solver._block_step(
        X, G, s, Pm, grad, V, np.zeros((k, d)), 0.0, lam2, 0.0, ws, np.full(k, d + 1), 1e-14
    )
    for a in range(k):
        H = (Xa * (s * Pm[:, a] * (1 - Pm[:, a]))[:, None]).T @ Xa
        H[:d, :d] += lam2 * np.eye(d)
        g = grad[a] + np.append(lam2 * W[a], 0.0)
        np.testing.assert_allclose(D[a], np.linalg.solve(H, -g), atol=1e-8)


def test_block_model_is_skipped_when_every_weight_is_active(global_random_seed, monkeypatch):
    # pure ridge: every coordinate is in the working set, the blocks would cost
    # n sum_a |J_a|^2 > 16 n d k, so the Kronecker model (exact ridge step) carries on
    X, y = make_problem(global_random_seed, n=600, d=15, k=4)
    Y, s = np.eye(4)[y], np.full(600, 1 / 600)
    calls = []
    block_step = _solver._block_step
    monkeypatch.setattr(_solver, "_SLOW_ITERS", 0)
    monkeypatch.setattr(_solver, "_EXACT_MAX_NK", 0)
    monkeypatch.setattr(_solver, "_EXACT_MAX_K", 0)
    monkeypatch.setattr(_solver, "_block_step", lambda *a: calls.append(1) or block_step(*a))
    res = _solver.solve(X, Y, s, "multinomial", lam1=0.0, lam2=1e-2, tol_abs=1e-8, max_iter=5000)
    assert res.converged and not calls
    gap = _solver.duality_gap(X, Y, s, "multinomial", res.coef, res.intercept, lam1=0.0, lam2=1e-2)
    assert gap.relative <= 1e-9


def test_duality_gap_and_solve_reject_bad_input():
    X, Y, s = np.ones((5, 2)), np.eye(3)[[0, 1, 2, 0, 1]], np.full(5, 0.2)
    with pytest.raises(ValueError, match="'multinomial' or 'sigmoid', got 'softmax'"):
        _solver.solve(X, Y, s, "softmax", lam1=0.1, lam2=0.1)
    with pytest.raises(ValueError, match=r"coef must have shape \(3, 2\)"):
        _solver.duality_gap(
            X, Y, s, "multinomial", np.zeros((2, 3)), np.zeros(3), lam1=0.1, lam2=0.1
        )


@pytest.mark.parametrize(("k", "l1_ratio"), [(3, 0.5), (2, 1.0), (4, 0.0)])
def test_duality_gap_attribute_certifies_the_fit(k, l1_ratio, global_random_seed):
    # duality_gap_ (computed from the solver's final logits, one pass) equals the
    # two-pass duality_gap of the returned solution, and bounds its distance from a
    # tight scikit-learn optimum
    X, y = make_problem(global_random_seed, n=300, d=10, k=k)
    C = 0.05
    head = SparseLinearHead(C=C, l1_ratio=l1_ratio, standardize=False, tol=1e-2).fit(X, y)
    Y, mode = _targets(y, k)
    n = X.shape[0]
    s = np.full(n, 1.0 / n)
    kw = dict(lam1=l1_ratio / (C * n), lam2=(1 - l1_ratio) / (C * n))
    W, b = head.coef_, head.intercept_
    if mode == "multinomial":
        b = b - b.mean()
    independent = _solver.duality_gap(X, Y, s, mode, W, b, **kw)
    assert head.duality_gap_ >= 0.0
    assert head.duality_gap_ == pytest.approx(max(independent.relative, 0.0), rel=1e-6, abs=1e-13)
    ref = _saga(X, y, C, l1_ratio)
    obj = _reference.objective(
        X, Y, head.coef_, head.intercept_, C=C, l1_ratio=l1_ratio, mode=mode
    )
    opt = _reference.objective(X, Y, ref.coef_, ref.intercept_, C=C, l1_ratio=l1_ratio, mode=mode)
    assert (obj - opt) / obj <= head.duality_gap_ + 1e-9
    tight = SparseLinearHead(C=C, l1_ratio=l1_ratio, standardize=False, tol=1e-9).fit(X, y)
    assert tight.duality_gap_ < 1e-8


def test_solve_gap_with_offset_matches_the_shifted_problem(global_random_seed):
    # with a fixed offset the certificate is the gap of the problem whose logits include it
    X, y = make_problem(global_random_seed, n=250, d=6, k=3)
    Y = np.eye(3)[y]
    s = np.full(250, 1 / 250)
    rng = np.random.default_rng(global_random_seed)
    off = rng.normal(size=(250, 3))
    kw = dict(lam1=0.02, lam2=0.01)
    res = _solver.solve(X, Y, s, "multinomial", offset=off, tol_abs=1e-3, gap=True, **kw)
    # the offset as three extra features with fixed unit weights: compare primal values
    Z = X @ res.coef.T + res.intercept + off
    lse = np.log(np.exp(Z - Z.max(1, keepdims=True)).sum(1)) + Z.max(1)
    loss = float(s @ (lse - (Z * Y).sum(1)))
    pen = kw["lam1"] * np.abs(res.coef).sum() + 0.5 * kw["lam2"] * (res.coef**2).sum()
    assert res.gap.primal == pytest.approx(loss + pen, rel=1e-10)
    tight = _solver.solve(X, Y, s, "multinomial", offset=off, tol_abs=1e-11, **kw)
    Zt = X @ tight.coef.T + tight.intercept + off
    lse_t = np.log(np.exp(Zt - Zt.max(1, keepdims=True)).sum(1)) + Zt.max(1)
    opt = float(s @ (lse_t - (Zt * Y).sum(1)))
    opt += kw["lam1"] * np.abs(tight.coef).sum() + 0.5 * kw["lam2"] * (tight.coef**2).sum()
    assert res.gap.dual <= opt + 1e-12  # weak duality
    assert res.gap.primal - opt <= res.gap.gap + 1e-12


def test_convergence_warning_reports_the_duality_gap():
    X, y = make_problem(0, n=300, d=10, k=3)
    from sklearn.exceptions import ConvergenceWarning

    with pytest.warns(
        ConvergenceWarning, match=r"Duality gap: \d\.\de[-+]\d+.*tolerance: 1\.0e-08"
    ):
        head = SparseLinearHead(C=1.0, tol=1e-8, max_iter=1).fit(X, y)
    assert not head.converged_
    assert head.duality_gap_ > 0.0


_ONE_SPECIALISATION = """
import numpy as np
from conceptlens.heads import SparseLinearHead, _kernels, _solver
from tests.heads.conftest import make_problem

X, y = make_problem(0, n=300, d=12, k=4)
ro = X.copy(); ro.setflags(write=False)
Yml = (np.random.default_rng(0).random((300, 3)) < 0.4).astype(float); Yml.setflags(write=False)
prior = np.sign(np.random.default_rng(1).normal(size=(4, 12))); prior.setflags(write=False)
SparseLinearHead(C=0.3, tol=1e-8).fit(X[:60, :5], y[:60])
SparseLinearHead(C=0.3, standardize=False, tol=1e-8).fit(ro, y)
SparseLinearHead(C=0.3, standardize=False, tol=1e-8).fit(np.asfortranarray(X), y)
SparseLinearHead(C=0.3, tol=1e-8).fit(X.astype(np.float32), y)
SparseLinearHead(C=0.3, tol=1e-8, knowledge_prior=prior, prior_strength=1.0).fit(X, y)
SparseLinearHead(C=0.3, standardize=False, tol=1e-8).fit(ro, Yml)
_solver._EXACT_MAX_NK = _solver._EXACT_MAX_K = 0  # the block model
SparseLinearHead(C=0.3, tol=1e-8).fit(X, y)
_solver._SLOW_ITERS = 0  # every model from the first iteration
SparseLinearHead(C=0.3, standardize=False, tol=1e-8).fit(ro, y)
_solver._EXACT_MAX_NK = 10**9
SparseLinearHead(C=0.3, standardize=False, tol=1e-8).fit(ro, Yml)
for name in ("loss_grad", "loss_along", "cd_quadratic", "cd_exact", "null_shift"):
    print(name, len(getattr(_kernels, name).signatures))
"""


def test_each_kernel_is_compiled_once_per_process():
    # a fit on read-only, Fortran-ordered or float32 inputs, with a prior, multi-label,
    # or through any of the three models, reuses the one compiled (and cached) version
    # of each kernel: no second compilation in a fresh process
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [sys.executable, "-c", _ONE_SPECIALISATION],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
        env=env,
    ).stdout.split()
    counts = dict(zip(out[::2], map(int, out[1::2]), strict=True))
    assert counts == {n: 1 for n in counts}
    assert set(counts) == {"loss_grad", "loss_along", "cd_quadratic", "cd_exact", "null_shift"}


@pytest.mark.parametrize("mode", ["multinomial", "sigmoid"])
@pytest.mark.parametrize("lam1", [0.0, 0.02])
def test_cd_exact_minimises_the_dense_second_order_model(mode, lam1, global_random_seed):
    # the model's optimality conditions, from the dense Hessian sum_i s_i M_i kron x_i x_i^T
    rng = np.random.default_rng(global_random_seed)
    n, d, k = 60, 5, 3
    X = rng.normal(size=(n, d))
    s = rng.random(n)
    s /= s.sum()
    Z = rng.normal(size=(n, k))
    if mode == "multinomial":
        Pm = np.exp(Z) / np.exp(Z).sum(1, keepdims=True)
        M = [np.diag(p) - np.outer(p, p) for p in Pm]
    else:
        Pm = 1 / (1 + np.exp(-Z))
        M = [np.diag(p * (1 - p)) for p in Pm]
    Xt = np.hstack([X, np.ones((n, 1))])
    H = sum(s[i] * np.kron(M[i], np.outer(Xt[i], Xt[i])) for i in range(n))
    V = rng.normal(size=(k, d + 1)) * (rng.random((k, d + 1)) < 0.6)
    grad = rng.normal(size=(k, d + 1)) * 0.1
    if mode == "multinomial":
        # as every multinomial gradient, the intercepts' sums to zero over the classes
        # (else the model is unbounded along the common shift, which it does not curve)
        grad[:, d] -= grad[:, d].mean()
    P = np.zeros((k, d))
    lam2 = 0.05
    ws = np.tile(np.arange(d + 1), (k, 1)).astype(np.int64)
    ws_len = np.full(k, d + 1, dtype=np.int64)
    code = _kernels.MULTINOMIAL if mode == "multinomial" else _kernels.SIGMOID
    D = _kernels.cd_exact(
        np.asfortranarray(X), s, Pm, grad, V, P, lam1, lam2, 0.0, ws, ws_len, 2000, 1e-13, code
    )
    U = V + D
    g = (grad.ravel() + H @ D.ravel()).reshape(k, d + 1)
    g[:, :d] += lam2 * U[:, :d]
    np.testing.assert_allclose(g[:, d], 0.0, atol=1e-9)  # the intercepts: unpenalised
    gw, w = g[:, :d], U[:, :d]
    nz = w != 0
    np.testing.assert_allclose(gw[nz] + lam1 * np.sign(w[nz]), 0.0, atol=1e-9)
    assert np.all(np.abs(gw[~nz]) <= lam1 + 1e-9)


def test_gap_intercept_refit_stops_at_its_round_off_floor(monkeypatch):
    # n=6000 sigmoid logits on which the intercept's Newton steps reach float64
    # round-off: the loss can no longer confirm a decrease, and the old line search
    # halved each step 40 times per iteration (212 loss evaluations here)
    from scipy.optimize import brentq

    rng = np.random.default_rng(1)
    n = 6000
    Z0 = rng.normal(size=(n, 1)) * 2
    Y = (rng.random((n, 1)) < 0.3).astype(float)
    s = np.full(n, 1.0 / n)
    calls = []
    loss_grad = _kernels.loss_grad
    monkeypatch.setattr(
        _kernels, "loss_grad", lambda *a: calls.append(1) or loss_grad(*a), raising=True
    )
    R = _solver._refit_intercept(Z0, Y, s, _kernels.SIGMOID, np.zeros(1))
    assert len(calls) <= 10

    # against the intercept solved by bracketing, and the residuals by their formula
    def intercept_grad(b):
        return float(s @ (1.0 / (1.0 + np.exp(-(Z0[:, 0] + b))) - Y[:, 0]))

    b = brentq(intercept_grad, -20.0, 20.0, xtol=1e-14)
    expected = s[:, None] * (1.0 / (1.0 + np.exp(-(Z0 + b))) - Y)
    np.testing.assert_allclose(R, expected, rtol=1e-9, atol=1e-18)
    assert abs(R.sum()) <= 1e-15


def test_crawling_kronecker_model_gives_way_to_the_exact_model():
    # independent design, n=6000 d=300 k=5, the 27th penalty of the default 50-C path
    # (46% of the weights active, beyond the exact model's default share) from the
    # path's warm start: with the path's subsampled Gram matrix the Kronecker model
    # shrank the violation by under 1% per iteration and stopped at max_iter=500
    from conceptlens.heads import _path

    rng = np.random.default_rng(0)
    n, d, k = 6000, 300, 5
    X = rng.normal(size=(n, d))
    X = np.ascontiguousarray((X - X.mean(0)) / X.std(0))
    W = np.zeros((k, d))
    cols = rng.choice(d, size=40, replace=False)
    W[:, cols] = rng.normal(size=(k, cols.size))
    y = np.unique(np.argmax(X @ W.T + rng.gumbel(size=(n, k)), axis=1), return_inverse=True)[1]
    Y, s = np.eye(k)[y], np.full(n, 1.0 / n)
    Cs = _path.grid(X, Y, np.ones(n), "multinomial", 50, 1e-3, 0.5)
    path = _path.solve_path(X, Y, np.ones(n), "multinomial", Cs[:26], l1_ratio=0.5, gaps=False)
    scale = float(np.abs(_solver.grad_scale(X, Y, s, _kernels.MULTINOMIAL)).max())
    lam = 0.5 / (Cs[26] * n)
    res = _solver.solve(
        X,
        Y,
        s,
        "multinomial",
        lam1=lam,
        lam2=lam,
        coef0=path.coef[25],
        intercept0=path.intercept[25],
        G=_solver.gram(X, s, subsample=True),
        tol_abs=1e-4 * scale,
        max_iter=500,
        gap=True,
    )
    assert res.converged and res.n_iter < 100
    assert res.kkt <= 1e-4 * scale
    assert 0 <= res.gap.relative < 1e-6


def test_anderson_extrapolation_is_the_fixed_point_of_a_linear_iteration(global_random_seed):
    # x -> A x + c on (W, b) of 3 entries in all: an affine combination of 4 residuals
    # (5 iterates) vanishes at the fixed point, which the extrapolation therefore is;
    # the logits Z = X W^T + b are
    # combined with the same weights, so they are the extrapolated point's logits
    rng = np.random.default_rng(global_random_seed)
    A = 0.8 * np.linalg.qr(rng.normal(size=(3, 3)))[0]
    c = rng.normal(size=3)
    fixed = np.linalg.solve(np.eye(3) - A, c)
    X = rng.normal(size=(50, 2))
    acc = _solver._Anderson(4)
    x = rng.normal(size=3)
    out = None
    for _ in range(5):
        W, b = x[:2].reshape(1, 2), x[2:]
        out = acc.push(W, b, X @ W.T + b)
        x = A @ x + c
    assert out is not None
    We, be, Ze = out
    np.testing.assert_allclose(np.concatenate([We.ravel(), be]), fixed, atol=1e-8)
    np.testing.assert_allclose(Ze, X @ We.T + be, atol=1e-10)
    # it starts a new batch: the next iterate alone gives nothing
    assert acc.push(W, b, X @ W.T + b) is None


def test_rejected_anderson_extrapolation_changes_nothing(global_random_seed, monkeypatch):
    # an extrapolated point is kept only when it lowers the exact objective: one that
    # raises it (the weights and logits of the extrapolation, 10x) leaves every iterate
    # as without extrapolation, bit for bit
    X, y = make_problem(global_random_seed, n=400, d=12, k=3)
    Y, s = np.eye(3)[y], np.full(len(y), 1 / len(y))
    kw = dict(lam1=0.002, lam2=0.002, tol_abs=1e-12, max_iter=300)
    monkeypatch.setattr(_solver, "_ANDERSON_M", 0)
    plain = _solver.solve(X, Y, s, "multinomial", **kw)
    monkeypatch.setattr(_solver, "_ANDERSON_M", 2)
    push, offered = _solver._Anderson.push, []

    def bad_push(self, W, b, Z):
        ext = push(self, W, b, Z)
        if ext is None:
            return None
        offered.append(1)
        return 10.0 * ext[0], 10.0 * ext[1], 10.0 * ext[2]

    monkeypatch.setattr(_solver._Anderson, "push", bad_push)
    res = _solver.solve(X, Y, s, "multinomial", **kw)
    assert offered  # extrapolations were offered, and all rejected
    np.testing.assert_array_equal(res.coef, plain.coef)
    np.testing.assert_array_equal(res.intercept, plain.intercept)
    assert res.n_iter == plain.n_iter


def _factor_problem(seed, n=600, d=40, k=3):
    """Columns driven by 3 shared factors (as concept scores are), 6 true concepts."""
    rng = np.random.default_rng(seed)
    X = np.tanh(rng.normal(size=(n, 3)) @ rng.normal(size=(3, d)) / np.sqrt(3))
    X += 0.3 * rng.normal(size=(n, d))
    X = np.ascontiguousarray((X - X.mean(0)) / X.std(0))
    W = np.zeros((k, d))
    W[:, rng.choice(d, 6, replace=False)] = 2.0 * rng.normal(size=(k, 6))
    return X, np.argmax(X @ W.T + rng.gumbel(size=(n, k)), axis=1)


@pytest.mark.parametrize("mode", ["multinomial", "sigmoid"])
def test_anderson_and_working_set_shrinking_keep_the_solution(
    mode, global_random_seed, monkeypatch
):
    # on correlated columns the first working set is every column and many leave it:
    # the solver rebuilds a smaller one, and extrapolates the Kronecker iterates; the
    # solution is the one without either, and the certificate (from the solver's own
    # logits) is the duality gap recomputed from the returned weights
    X, y = _factor_problem(global_random_seed)
    Y = np.eye(3)[y] if mode == "multinomial" else np.eye(3)[y][:, 1:]
    s = np.full(len(y), 1 / len(y))
    kw = dict(lam1=0.004, lam2=0.004, tol_abs=1e-10, max_iter=500, gap=True)
    newton, rounds = _solver._newton, []
    # rebuild once at most 90% of the columns are active (default 50%: the columns'
    # share that stays active here depends on the seed)
    monkeypatch.setattr(_solver, "_SHRINK", 0.9)

    def counted(*args):
        rounds.append(args[0].shape[1])
        return newton(*args)

    monkeypatch.setattr(_solver, "_newton", counted)
    res = _solver.solve(X, Y, s, mode, **kw)
    fast_rounds, rounds[:] = list(rounds), []
    monkeypatch.setattr(_solver, "_ANDERSON_M", 0)
    monkeypatch.setattr(_solver, "_SHRINK", 0.0)
    plain = _solver.solve(X, Y, s, mode, **kw)
    assert fast_rounds[0] == X.shape[1] and min(fast_rounds) < 0.9 * X.shape[1]
    assert len(fast_rounds) > len(rounds)
    assert res.converged and plain.converged
    np.testing.assert_allclose(res.coef, plain.coef, atol=1e-6)
    np.testing.assert_array_equal(res.coef != 0, plain.coef != 0)
    again = _solver.duality_gap(X, Y, s, mode, res.coef, res.intercept, lam1=0.004, lam2=0.004)
    assert abs(again.primal - res.gap.primal) <= 1e-12 * abs(res.gap.primal)
    assert -1e-12 <= again.relative < 1e-8  # tight: the gap is down to round-off


def test_shrinking_working_set_matches_sklearn_saga(global_random_seed):
    X, y = _factor_problem(global_random_seed, n=400, d=30)
    C = 0.05
    head = SparseLinearHead(C=C, l1_ratio=0.5, standardize=False, tol=1e-8).fit(X, y)
    ref = _saga(X, y, C, 0.5)
    kw = dict(C=C, l1_ratio=0.5, mode="multinomial")
    obj = _reference.objective(X, np.eye(3)[y], head.coef_, head.intercept_, **kw)
    obj_ref = _reference.objective(X, np.eye(3)[y], ref.coef_, ref.intercept_, **kw)
    assert head.converged_
    assert abs(obj - obj_ref) <= 1e-6 * abs(obj_ref)
    np.testing.assert_array_equal(head.coef_ != 0, ref.coef_ != 0)
