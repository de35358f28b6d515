"""Estimator contracts: scikit-learn checks, pipelines, labelled outputs."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from conceptlens.exceptions import ConfigError, DataError
from conceptlens.heads import (
    ConceptBottleneckClassifier,
    LinearProbe,
    SparseLinearHead,
    SparseLinearHeadCV,
)
from tests.heads.conftest import make_problem

_SPLIT = (
    "the validation split is drawn per row, so repeating rows changes it; weights are "
    "exact for fixed C (checked for SparseLinearHead)"
)


@parametrize_with_checks(
    [
        SparseLinearHead(),
        SparseLinearHeadCV(Cs=5),
        ConceptBottleneckClassifier(Cs=5),
        LinearProbe(),
    ],
    expected_failed_checks=lambda est: (
        {"check_sample_weight_equivalence_on_dense_data": _SPLIT}
        if isinstance(est, SparseLinearHeadCV | ConceptBottleneckClassifier)
        else {}
    ),
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _scores(seed, n=300, k=3):
    X, y = make_problem(seed, n=n, d=6, k=k)
    names = ["veil", "streaks", "globules", "ruler", "ink", "hair"]
    classes = np.array(["nevus", "melanoma", "seb_k"])[:k]
    da = xr.DataArray(
        X,
        dims=("sample", "concept"),
        coords={
            "sample": [f"s{i}" for i in range(n)],
            "concept": names,
            "concept_group": ("concept", ["colour"] * 3 + ["artifact"] * 3),
            "label": ("sample", classes[y]),
            "site": ("sample", np.where(np.arange(n) % 2, "site_a", "site_b")),
        },
        name="concept_score",
    )
    return da, classes[y]


def test_concept_bottleneck_keeps_names(global_random_seed):
    scores, y = _scores(global_random_seed)
    cbm = ConceptBottleneckClassifier(C=0.5).fit(scores, "label")
    assert cbm.coef_.dims == ("class", "concept")
    assert list(cbm.coef_["concept"].values) == list(scores["concept"].values)
    assert set(cbm.coef_["class"].values) == set(y)
    top = cbm.top_concepts("melanoma", k=2)
    assert top.dims == ("concept",) and len(top) <= 2
    assert np.all(np.diff(top.values) <= 0) and np.all(top.values > 0)
    # predictions equal those on the plain matrix and survive a concept reordering
    shuffled = scores.isel(concept=[5, 3, 1, 0, 2, 4])
    np.testing.assert_array_equal(cbm.predict(shuffled), cbm.predict(scores.values))
    assert cbm.score(scores, y) > 0.6
    with pytest.raises(DataError, match="lack concepts"):
        cbm.predict(scores.isel(concept=[0, 1]))
    with pytest.raises(DataError, match="unknown class"):
        cbm.top_concepts("psoriasis")


def test_binary_coef_convention(global_random_seed):
    scores, y = _scores(global_random_seed, k=2)
    cbm = ConceptBottleneckClassifier(C=0.5).fit(scores, y)
    ref = SparseLinearHead(C=0.5).fit(scores.values, y)
    second = str(cbm.classes_[1])
    np.testing.assert_allclose(cbm.coef_.sel({"class": second}).values, ref.coef_[0])
    np.testing.assert_allclose(cbm.coef_[0].values, -cbm.coef_[1].values)
    assert cbm.decision_function(scores).shape == (len(y),)


def test_not_fitted_error():
    X, _ = make_problem(0, n=20, d=3)
    for est in (SparseLinearHead(), ConceptBottleneckClassifier(), LinearProbe()):
        with pytest.raises(NotFittedError):
            est.predict(X)
    with pytest.raises(NotFittedError):
        ConceptBottleneckClassifier().top_concepts("a")


def test_pipeline_and_grid_search(global_random_seed):
    X, y = make_problem(global_random_seed, n=240, d=6, k=3)
    pipe = make_pipeline(StandardScaler(), SparseLinearHead())
    grid = GridSearchCV(pipe, {"sparselinearhead__C": [0.01, 0.1, 1.0]}, cv=3).fit(X, y)
    assert grid.best_params_["sparselinearhead__C"] in (0.01, 0.1, 1.0)
    assert grid.score(X, y) > 0.6
    cbm_grid = GridSearchCV(ConceptBottleneckClassifier(), {"C": [0.05, 0.5]}, cv=3).fit(X, y)
    assert cbm_grid.best_estimator_.coef_.shape == (3, 6)


def test_multilabel_is_one_vs_rest(global_random_seed):
    rng = np.random.default_rng(global_random_seed)
    X = rng.normal(size=(300, 5))
    Y = np.column_stack([X[:, 0] + rng.logistic(size=300) > 0, X[:, 1] - X[:, 2] > 0.3])
    Y = Y.astype(int)
    head = SparseLinearHead(C=0.2, l1_ratio=0.5, standardize=False, tol=1e-8).fit(X, Y)
    for j in range(2):
        ref = LogisticRegression(
            C=0.2, l1_ratio=0.5, solver="saga", tol=1e-10, max_iter=100_000
        ).fit(X, Y[:, j])
        np.testing.assert_allclose(head.coef_[j], ref.coef_[0], atol=1e-4)
    assert head.predict(X).shape == (300, 2)
    assert head.predict_proba(X).shape == (300, 2)


def test_linear_probe_residual_mode(global_random_seed):
    scores, y = _scores(global_random_seed)
    rng = np.random.default_rng(global_random_seed)
    emb = np.hstack([scores.values[:, :2], rng.normal(size=(len(y), 6))])
    plain = LinearProbe(C=1.0).fit(emb, y)
    assert not plain.residual
    hybrid = LinearProbe(C=0.01, residual=True).fit(emb, y, concept_scores=scores)
    concept_only = hybrid.concept_head_.decision_function(scores.values)
    np.testing.assert_allclose(
        hybrid.decision_function(emb, concept_scores=scores),
        concept_only + hybrid.probe_.decision_function(emb),
    )
    assert (hybrid.predict(emb, concept_scores=scores) == y).mean() > 0.6


def test_knowledge_prior_as_labelled_array(global_random_seed):
    scores, y = _scores(global_random_seed)
    prior = xr.DataArray(
        [[1.0, -1.0], [-1.0, 1.0]],
        dims=("class", "concept"),
        coords={"class": ["melanoma", "nevus"], "concept": ["ruler", "veil"]},
    )
    free = ConceptBottleneckClassifier(C=0.02).fit(scores, y)
    pulled = ConceptBottleneckClassifier(C=0.02, knowledge_prior=prior, prior_strength=2.0)
    pulled.fit(scores, y)
    target = prior.reindex({"class": pulled.coef_["class"].values}, fill_value=0).reindex(
        concept=pulled.coef_["concept"].values, fill_value=0
    )
    scale = pulled.head_.scale_
    dist = lambda m: float(np.abs(m.coef_.values * scale - target.values).sum())  # noqa: E731
    assert dist(pulled) < dist(free)
    with pytest.raises(ConfigError, match="fixed C"):
        ConceptBottleneckClassifier(knowledge_prior=prior, prior_strength=1.0).fit(scores, y)
