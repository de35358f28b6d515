"""Regularisation path and validation-split selection."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from conceptlens.heads import SparseLinearHead, SparseLinearHeadCV, fit_path
from tests.heads.conftest import make_problem


def test_path_starts_at_all_zero_and_matches_single_fits(global_random_seed):
    X, y = make_problem(global_random_seed, n=300, d=10, k=3)
    path = fit_path(X, y, Cs=8, l1_ratio=0.8, tol=1e-8)
    assert path["n_nonzero"][0].sum() == 0
    assert path["n_nonzero"][-1].sum() > 0
    # just below the first C some weight enters (the grid starts exactly at C_min)
    below = SparseLinearHead(C=path["Cs"][0] * 1.05, l1_ratio=0.8).fit(X, y)
    assert (below.coef_ != 0).sum() > 0
    # warm-started path points equal cold single fits
    for i in (2, 5, 7):
        single = SparseLinearHead(C=path["Cs"][i], l1_ratio=0.8, tol=1e-8).fit(X, y)
        np.testing.assert_allclose(path["coef"][i], single.coef_, atol=1e-5)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.sampled_from([2, 3]), l1_ratio=st.floats(0.5, 1.0))
def test_path_support_grows_as_penalty_falls(seed, k, l1_ratio):
    X, y = make_problem(seed, n=150, d=8, k=k)
    path = fit_path(X, y, Cs=8, eps=1e-2, l1_ratio=l1_ratio, standardize=False, tol=1e-7)
    total = path["n_nonzero"].sum(axis=1)
    assert total[0] == 0
    assert total[-1] >= total[0]
    # the support of the strongest penalty stays in the support at weaker penalties,
    # allowing rare exits (lasso paths need not be monotone; seed 398, k 3, l1_ratio
    # 0.78 loses two coefficients of 0.003 and 0.0008 at the last step)
    assert np.all(np.diff(total) >= -2)
    assert total[-1] >= total.max() - 2


def test_cv_respects_concept_budget(global_random_seed):
    X, y = make_problem(global_random_seed, n=400, d=12, k=3)
    cv = SparseLinearHeadCV(Cs=15, l1_ratio=1.0, max_concepts_per_class=3).fit(X, y)
    assert (cv.coef_ != 0).sum(axis=1).max() <= 3
    assert cv.Cs_.shape == (15,) and cv.validation_scores_.shape == (15,)
    free = SparseLinearHeadCV(Cs=15, l1_ratio=1.0).fit(X, y)
    assert (
        free.validation_scores_.max()
        >= cv.validation_scores_[np.searchsorted(cv.Cs_, cv.C_, side="right") - 1] - 1e-12
    )
    assert free.score(X, y) > 0.6


def test_cv_uses_given_validation_mask(global_random_seed):
    X, y = make_problem(global_random_seed, n=300, d=8, k=3)
    mask = np.zeros(len(y), dtype=bool)
    mask[::4] = True
    a = SparseLinearHeadCV(Cs=6, refit=False).fit(X, y, validation_mask=mask)
    b = SparseLinearHeadCV(Cs=6, refit=False).fit(X, y, validation_mask=mask)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    best = np.flatnonzero(a.validation_scores_ == a.validation_scores_.max())[0]
    assert a.Cs_[best] == a.C_
