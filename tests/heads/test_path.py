"""Regularisation path and validation-split selection."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conceptlens.exceptions import ConceptLensWarning, ConfigError, DataError
from conceptlens.heads import RegularizationPath, SparseLinearHead, SparseLinearHeadCV, fit_path
from tests.heads.conftest import make_problem


def test_path_starts_at_all_zero_and_matches_single_fits(global_random_seed):
    X, y = make_problem(global_random_seed, n=300, d=10, k=3)
    path = fit_path(X, y, Cs=8, l1_ratio=0.8, tol=1e-8)
    assert isinstance(path, RegularizationPath)
    np.testing.assert_array_equal(path.classes, np.unique(y))
    assert path.n_nonzero[0].sum() == 0
    assert path.n_nonzero[-1].sum() > 0
    # just below the first C some weight enters (the grid starts exactly at C_min)
    below = SparseLinearHead(C=path.Cs[0] * 1.05, l1_ratio=0.8).fit(X, y)
    assert (below.coef_ != 0).sum() > 0
    # warm-started path points equal cold single fits
    for i in (2, 5, 7):
        single = SparseLinearHead(C=path.Cs[i], l1_ratio=0.8, tol=1e-8).fit(X, y)
        np.testing.assert_allclose(path.coef[i], single.coef_, atol=1e-5)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.sampled_from([2, 3]), l1_ratio=st.floats(0.5, 1.0))
def test_path_support_grows_as_penalty_falls(seed, k, l1_ratio):
    X, y = make_problem(seed, n=150, d=8, k=k)
    path = fit_path(X, y, Cs=8, eps=1e-2, l1_ratio=l1_ratio, standardize=False, tol=1e-7)
    total = path.n_nonzero.sum(axis=1)
    assert total[0] == 0
    assert total[-1] >= total[0]
    # the support of the strongest penalty stays in the support at weaker penalties,
    # allowing rare exits (lasso paths need not be monotone; seed 398, k 3, l1_ratio
    # 0.78 loses two coefficients of 0.003 and 0.0008 at the last step)
    assert np.all(np.diff(total) >= -2)
    assert total[-1] >= total.max() - 2


def _path_accuracy(path, X, y):
    """Accuracy of every path point on (X, y), from the labelled-free coefficients."""
    logits = np.einsum("nd,ckd->cnk", X, path.coef) + path.intercept[:, None, :]
    if logits.shape[2] == 1:
        pred = path.classes[(logits[:, :, 0] > 0).astype(int)]
    else:
        pred = path.classes[logits.argmax(axis=2)]
    return (pred == y[None, :]).mean(axis=1)


def test_cv_respects_concept_budget(global_random_seed):
    X, y = make_problem(global_random_seed, n=400, d=12, k=3)
    free = SparseLinearHeadCV(Cs=15, l1_ratio=1.0, refit=False).fit(X, y)
    assert (free.coef_ != 0).sum(axis=1).max() > 3  # a budget of 3 changes the choice
    # at seed 0, within a budget of 5 the accuracy peaks twice and falls before the
    # budget's end, so "last point in budget" or "denser on ties" would be caught
    for budget in (3, 5):
        cv = SparseLinearHeadCV(Cs=15, l1_ratio=1.0, max_concepts_per_class=budget, refit=False)
        cv.fit(X, y)
        assert (cv.coef_ != 0).sum(axis=1).max() <= budget
        # the most accurate path point within the budget, the sparser on ties, from the
        # path's own record; its support is that of fit_path on the training part
        within = cv.n_nonzero_path_.max(axis=1) <= budget
        top = cv.validation_scores_[within].max()
        best = np.flatnonzero(within & (cv.validation_scores_ == top))[0]
        assert cv.Cs_[best] == cv.C_
        np.testing.assert_array_equal(cv.coef_ != 0, _support(X, y, cv, best))
    # refitting on every row keeps the budget too
    refit = SparseLinearHeadCV(Cs=15, l1_ratio=1.0, max_concepts_per_class=3).fit(X, y)
    assert (refit.coef_ != 0).sum(axis=1).max() <= 3
    assert refit.score(X, y) > 0.6


def _support(X, y, cv, i):
    """Support of path point i, from fit_path on the training part."""
    mask = cv.validation_mask_
    ref = fit_path(X[~mask], y[~mask], Cs=cv.Cs_, l1_ratio=1.0)
    return ref.coef[i] != 0


@pytest.mark.parametrize("k", [2, 3])
def test_cv_uses_given_validation_mask(k, global_random_seed):
    X, y = make_problem(global_random_seed, n=300, d=8, k=k)
    mask = np.zeros(len(y), dtype=bool)
    mask[::4] = True
    cv = SparseLinearHeadCV(Cs=6, refit=False).fit(X, y, validation_mask=mask)
    np.testing.assert_array_equal(cv.validation_mask_, mask)
    # the same path fitted on the unmasked rows alone, scored on the masked rows
    ref = fit_path(X[~mask], y[~mask], Cs=cv.Cs_)
    np.testing.assert_allclose(ref.Cs, cv.Cs_)
    acc = _path_accuracy(ref, X[mask], y[mask])
    np.testing.assert_allclose(cv.validation_scores_, acc, atol=1e-12)
    best = int(np.flatnonzero(acc == acc.max())[0])
    assert cv.Cs_[best] == cv.C_
    np.testing.assert_allclose(cv.coef_, ref.coef[best], atol=1e-10)
    np.testing.assert_allclose(cv.intercept_, ref.intercept[best], atol=1e-10)
    # a different mask gives a different selection record
    other = SparseLinearHeadCV(Cs=6, refit=False).fit(X, y, validation_mask=np.roll(mask, 1))
    assert not np.array_equal(other.coef_, cv.coef_)


def test_cv_rejects_an_unusable_split():
    X, y = make_problem(0, n=120, d=5, k=3)
    n = len(y)
    with pytest.raises(DataError, match="selects no sample"):
        SparseLinearHeadCV(Cs=4).fit(X, y, validation_mask=np.zeros(n, dtype=bool))
    with pytest.raises(DataError, match="selects every sample"):
        SparseLinearHeadCV(Cs=4).fit(X, y, validation_mask=np.ones(n, dtype=bool))
    with pytest.raises(DataError, match="length n_samples=120"):
        SparseLinearHeadCV(Cs=4).fit(X, y, validation_mask=np.ones(n - 1, dtype=bool))
    with pytest.raises(DataError, match="boolean"):
        SparseLinearHeadCV(Cs=4).fit(X, y, validation_mask=np.arange(n) % 2)
    missing = y == y.max()  # every sample of one class in validation
    with pytest.raises(DataError, match=rf"\['{y.max()}'\] have no sample"):
        SparseLinearHeadCV(Cs=4).fit(X, y, validation_mask=missing)
    # one sample per class: nothing can be held out
    with pytest.raises(DataError, match="2 samples"):
        SparseLinearHeadCV(Cs=4).fit(X[:3], np.array([0, 1, 2]))


def test_cv_budget_no_point_meets_is_an_error():
    X, y = make_problem(0, n=300, d=8, k=3)
    with pytest.raises(ConfigError, match="max_concepts_per_class=1"):
        SparseLinearHeadCV(Cs=[10.0, 100.0], l1_ratio=1.0, max_concepts_per_class=1).fit(X, y)


def test_cv_warns_when_it_selects_an_intercept_only_head(global_random_seed):
    rng = np.random.default_rng(global_random_seed)
    X = rng.normal(size=(200, 4))
    y = rng.integers(0, 2, size=200)  # labels unrelated to X
    with pytest.warns(ConceptLensWarning, match="uses no feature"):
        cv = SparseLinearHeadCV(Cs=[1e-4, 1e-3], l1_ratio=1.0).fit(X, y)
    assert not np.any(cv.coef_)


def test_path_reports_each_points_duality_gap(global_random_seed):
    from conceptlens.heads import _solver

    X, y = make_problem(global_random_seed, n=300, d=8, k=3)
    path = fit_path(X, y, Cs=5, l1_ratio=0.5, standardize=False, tol=1e-3)
    assert path.duality_gap.shape == (5,)
    n = X.shape[0]
    s = np.full(n, 1.0 / n)
    Y = np.eye(3)[y]
    for i, C in enumerate(path.Cs):
        g = _solver.duality_gap(
            X,
            Y,
            s,
            "multinomial",
            path.coef[i],
            path.intercept[i],
            lam1=0.5 / (C * n),
            lam2=0.5 / (C * n),
        )
        assert path.duality_gap[i] == pytest.approx(max(g.relative, 0.0), rel=1e-6, abs=1e-13)


def test_cv_and_classifier_report_the_selected_heads_duality_gap(global_random_seed):
    # recomputed independently on the standardised problem at the selected C
    from conceptlens.heads import ConceptBottleneckClassifier, _solver

    X, y = make_problem(global_random_seed, n=300, d=8, k=3)
    X = X * np.arange(1, 9) + 2.0  # not standardised: the head standardises
    cv = SparseLinearHeadCV(Cs=6, l1_ratio=0.5, refit=True).fit(X, y)
    n = X.shape[0]
    mean, sd = X.mean(0), X.std(0)
    W = cv.coef_ * sd
    b = cv.intercept_ + cv.coef_ @ mean
    g = _solver.duality_gap(
        (X - mean) / sd,
        np.eye(3)[y],
        np.full(n, 1.0 / n),
        "multinomial",
        W,
        b - b.mean(),
        lam1=0.5 / (cv.C_ * n),
        lam2=0.5 / (cv.C_ * n),
    )
    assert cv.duality_gap_ == pytest.approx(max(g.relative, 0.0), rel=1e-5, abs=1e-12)
    cbm = ConceptBottleneckClassifier(C=0.3).fit(X, y)
    assert cbm.duality_gap_ == cbm.head_.duality_gap_
    assert 0.0 <= cbm.duality_gap_ < 1e-4


def test_path_warm_start_follows_the_tangent_without_changing_support_or_sign():
    from conceptlens.heads import _path

    Cs = np.array([1.0, 2.0, 8.0, 16.0])  # log-steps 1, 2, 1 (in units of log 2)
    coef = np.zeros((4, 1, 4))
    coef[0, 0] = [1.0, 0.0, 0.5, 0.2]
    coef[1, 0] = [2.0, 1.0, 0.1, 0.3]
    intercept = np.array([[0.5], [1.0], [0.0], [0.0]])
    W, b = _path._predict(Cs, 1, coef, intercept)
    # weight 0 moves by r = log(8/2) / log(2/1) = 2 steps of its last change: 2 + 2 * 1;
    # weight 1 just entered (kept), weight 2 would cross zero (kept), weight 3 moves
    np.testing.assert_allclose(W[0], [4.0, 1.0, 0.1, 0.5])
    np.testing.assert_allclose(b, [2.0])
    # the first point has no tangent, and the last needs no prediction
    W0, _ = _path._predict(Cs, 0, coef, intercept)
    np.testing.assert_array_equal(W0, coef[0])
