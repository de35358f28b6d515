"""Estimator contracts: scikit-learn checks, pipelines, labelled outputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
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
@pytest.mark.filterwarnings("ignore:the selected head:conceptlens.exceptions.ConceptLensWarning")
def test_sklearn_compatible(estimator, check):
    # several checks fit random labels, where an intercept-only head is the honest choice
    # (and is warned about, which is tested in test_path.py)
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
    # score takes the labels as fit does: a coordinate name or a Series by sample name
    assert cbm.score(scores, "label") == cbm.score(scores, y)
    by_name = pd.Series(y, index=scores["sample"].values).iloc[::-1]
    assert cbm.score(scores, by_name) == cbm.score(scores, y)
    with pytest.raises(DataError, match=r"lack 4 concept\(s\)"):
        cbm.predict(scores.isel(concept=[0, 1]))
    # a selection that matched nothing (a site name typo) is named as such
    none = scores.where(scores.site == "site_x", drop=True)
    for call in (cbm.predict, cbm.predict_proba, ConceptBottleneckClassifier(C=0.5).fit):
        with pytest.raises(DataError, match="the scores hold 0 samples"):
            call(none, "label") if call.__name__ == "fit" else call(none)
    with pytest.raises(DataError, match="unknown class"):
        cbm.top_concepts("psoriasis")
    # k=-2 sliced [:-2] (all concepts but two), k=0 an empty answer
    for k in (0, -2, 1.5, True):
        with pytest.raises(ConfigError, match=rf"k must be a positive integer, got {k!r}"):
            cbm.top_concepts("melanoma", k=k)
    assert len(cbm.top_concepts("melanoma", k=np.int64(1))) == 1


def test_binary_coef_convention(global_random_seed):
    scores, y = _scores(global_random_seed, k=2)
    cbm = ConceptBottleneckClassifier(C=0.5).fit(scores, y)
    ref = SparseLinearHead(C=0.5).fit(scores.values, y)
    second = str(cbm.classes_[1])
    np.testing.assert_allclose(cbm.coef_.sel({"class": second}).values, ref.coef_[0])
    np.testing.assert_allclose(cbm.coef_[0].values, -cbm.coef_[1].values)
    # NumPy in: scikit-learn's 1-D logit; labelled in: one column per class, X @ coef_.T + b
    z = cbm.decision_function(scores.values)
    assert z.shape == (len(y),)
    np.testing.assert_allclose(z, ref.decision_function(scores.values))
    lab = cbm.decision_function(scores)
    assert lab.dims == ("sample", "class")
    np.testing.assert_allclose(lab.values, np.column_stack([-z, z]))
    np.testing.assert_allclose(
        lab.values,
        (scores @ cbm.coef_).transpose("sample", "class").values + cbm.intercept_.values,
    )


def test_not_fitted_error():
    X, _ = make_problem(0, n=20, d=3)
    for est in (SparseLinearHead(), ConceptBottleneckClassifier(), LinearProbe()):
        with pytest.raises(NotFittedError):
            est.predict(X)
    with pytest.raises(NotFittedError):
        ConceptBottleneckClassifier().top_concepts("a")


def test_pipeline_and_grid_search(global_random_seed):
    X, y = make_problem(global_random_seed, n=240, d=6, k=3)
    Cs = [0.003, 0.1, 1.0]
    pipe = make_pipeline(StandardScaler(), SparseLinearHead(l1_ratio=1.0))
    grid = GridSearchCV(pipe, {"sparselinearhead__C": Cs}, cv=3).fit(X, y)
    # the grid's scores are those of each C fitted by hand on the same folds, the C
    # changes the model (so the parameter reached the head), and the best one is chosen
    folds = StratifiedKFold(3)
    manual = [
        cross_val_score(
            make_pipeline(StandardScaler(), SparseLinearHead(C=C, l1_ratio=1.0)), X, y, cv=folds
        ).mean()
        for C in Cs
    ]
    np.testing.assert_allclose(grid.cv_results_["mean_test_score"], manual)
    assert len(set(np.round(manual, 12))) > 1  # C reached the head
    assert grid.best_params_["sparselinearhead__C"] == Cs[int(np.argmax(manual))]
    assert Cs[int(np.argmax(manual))] == grid.best_estimator_[-1].C
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


def _ridge_gradient(Z, Y, W, b, offset, lam2):
    """Gradient in W of mean cross-entropy(Z W^T + b + offset) + lam2/2 |W|^2 (dense)."""
    logits = Z @ W.T + b + offset
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    return (p - Y).T @ Z / len(Z) + lam2 * W


def test_linear_probe_residual_mode(global_random_seed):
    scores, y = _scores(global_random_seed)
    rng = np.random.default_rng(global_random_seed)
    emb = np.hstack([scores.values[:, :2], rng.normal(size=(len(y), 6))])
    plain = LinearProbe(C=1.0).fit(emb, y)
    assert not plain.residual
    C = 0.05
    hybrid = LinearProbe(C=C, residual=True, tol=1e-10).fit(emb, y, concept_scores=scores)
    concept_only = hybrid.concept_head_.decision_function(scores.values)
    np.testing.assert_allclose(
        hybrid.decision_function(emb, concept_scores=scores),
        concept_only + hybrid.probe_.decision_function(emb),
    )
    # the probe is the ridge optimum of the residual: with the concept head's logits as a
    # fixed offset its gradient vanishes (dense formula, on the standardised embeddings)
    probe = hybrid.probe_
    Z = (emb - probe.mean_) / probe.scale_
    W = probe.coef_ * probe.scale_
    b = probe.intercept_ + probe.coef_ @ probe.mean_
    Y = (y[:, None] == probe.classes_[None, :]).astype(float)
    lam2 = 1.0 / (C * len(y))
    with_offset = _ridge_gradient(Z, Y, W, b, concept_only, lam2)
    assert np.abs(with_offset).max() < 1e-6
    # ... and it is not the probe of the labels alone (the offset matters)
    assert np.abs(_ridge_gradient(Z, Y, W, b, 0.0, lam2)).max() > 1e-2
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


def test_linear_probe_multilabel_predicts_a_label_matrix(global_random_seed):
    rng = np.random.default_rng(global_random_seed)
    X = rng.normal(size=(200, 5))
    Y = np.column_stack([X[:, 0] > 0, X[:, 1] + X[:, 2] > 0, X[:, 3] > 0.5]).astype(int)
    probe = LinearProbe(C=1.0).fit(X, Y)
    head = SparseLinearHead(C=1.0, l1_ratio=0.0).fit(X, Y)
    pred = probe.predict(X)
    assert pred.shape == Y.shape and set(np.unique(pred)) <= {0, 1}
    np.testing.assert_array_equal(pred, head.predict(X))
    np.testing.assert_allclose(probe.predict_proba(X), head.predict_proba(X))
    assert (pred == Y).mean() > 0.8


@pytest.mark.parametrize("k", [2, 3])
def test_labelled_in_labelled_out(k, global_random_seed):
    scores, y = _scores(global_random_seed, k=k)
    cbm = ConceptBottleneckClassifier(C=0.5).fit(scores, y)
    order = np.arange(len(y))[::-1]  # shuffled samples keep their names
    sub = scores.isel(sample=order)
    proba = cbm.predict_proba(sub)
    assert isinstance(proba, xr.DataArray) and proba.dims == ("sample", "class")
    assert list(proba["class"].values) == [str(c) for c in cbm.classes_]
    assert list(proba["sample"].values) == list(sub["sample"].values)
    np.testing.assert_array_equal(proba["site"].values, sub["site"].values)
    np.testing.assert_allclose(proba.values, cbm.predict_proba(sub.values))
    for name in cbm.classes_:  # by name, the column is the class's probability
        col = np.flatnonzero(cbm.classes_ == name)[0]
        np.testing.assert_allclose(
            proba.sel({"class": str(name)}).values, cbm.predict_proba(sub.values)[:, col]
        )
    assert isinstance(cbm.predict_proba(sub.values), np.ndarray)
    # the plain heads and the probe follow the same contract
    for est in (SparseLinearHead(C=0.5), LinearProbe(C=0.5)):
        est.fit(scores, y)
        out = est.predict_proba(sub)
        assert isinstance(out, xr.DataArray) and out.dims == ("sample", "class")
        np.testing.assert_allclose(out.values, est.predict_proba(sub.values))
        dec = est.decision_function(sub)
        assert dec.dims == ("sample", "class") and dec.sizes["class"] == k
        assert isinstance(est.decision_function(sub.values), np.ndarray)


def test_top_concepts_rank_per_standard_deviation(global_random_seed):
    # "ink" has a wide score range and the largest effect per standard deviation; its raw
    # coefficient is small, so a raw ranking hides it behind "veil"
    rng = np.random.default_rng(global_random_seed)
    n = 600
    veil = rng.normal(scale=0.05, size=n)
    ink = rng.normal(scale=20.0, size=n)
    noise = rng.normal(size=n)
    logit = 1.0 * veil / 0.05 + 2.0 * ink / 20.0
    y = np.where(logit + rng.logistic(size=n) > 0, "melanoma", "nevus")
    scores = xr.DataArray(
        np.column_stack([veil, ink, noise]),
        dims=("sample", "concept"),
        coords={"concept": ["veil", "ink", "noise"]},
    )
    cbm = ConceptBottleneckClassifier(C=1.0, l1_ratio=0.5).fit(scores, y)
    raw = cbm.coef_.sel({"class": "melanoma"})
    assert raw.sel(concept="veil") > raw.sel(concept="ink")  # the raw ranking is misleading
    top = cbm.top_concepts("melanoma", k=2)
    assert list(top.concept.values) == ["ink", "veil"]
    assert "standard deviation" in top.attrs["units"]
    std = scores.std("sample")
    np.testing.assert_allclose(top.values, (raw * std).sel(concept=["ink", "veil"]).values)
    np.testing.assert_allclose(cbm.coef_std_.values, (cbm.coef_ * std).values)


@pytest.mark.parametrize(
    ("est", "name"),
    [
        (SparseLinearHead(C=-1.0), "C"),
        (SparseLinearHead(C=float("nan")), "C"),
        (SparseLinearHead(l1_ratio=1.5), "l1_ratio"),
        (SparseLinearHead(class_weight="balance"), "class_weight"),
        (SparseLinearHead(max_iter=0), "max_iter"),
        (SparseLinearHead(tol=0.0), "tol"),
        (SparseLinearHead(standardize="yes"), "standardize"),
        (SparseLinearHead(prior_strength=-1.0), "prior_strength"),
        (SparseLinearHeadCV(eps=0.0), "eps"),
        (SparseLinearHeadCV(eps=2.0), "eps"),
        (SparseLinearHeadCV(Cs=0), "Cs"),
        (SparseLinearHeadCV(Cs=2.5), "Cs"),
        (SparseLinearHeadCV(validation_fraction=1.0), "validation_fraction"),
        (SparseLinearHeadCV(validation_fraction=0), "validation_fraction"),
        (SparseLinearHeadCV(max_concepts_per_class=0), "max_concepts_per_class"),
        (SparseLinearHeadCV(random_state="seed"), "random_state"),
        (SparseLinearHeadCV(refit=None), "refit"),
        (ConceptBottleneckClassifier(C=0.0), "C"),
        (ConceptBottleneckClassifier(eps=-1.0), "eps"),
        (ConceptBottleneckClassifier(max_concepts_per_class=2.5), "max_concepts_per_class"),
        (LinearProbe(residual=1), "residual"),
        (LinearProbe(concept_head="head"), "concept_head"),
    ],
)
def test_parameters_are_validated_before_any_work(est, name):
    X, y = make_problem(0, n=60, d=4, k=2)
    with pytest.raises(ConfigError, match=f"parameter '{name}' must be"):
        est.fit(X, y)


def test_explicit_cs_must_be_positive():
    X, y = make_problem(0, n=60, d=4, k=2)
    with pytest.raises(ConfigError, match="positive"):
        SparseLinearHeadCV(Cs=[0.1, -1.0]).fit(X, y)


def test_validation_mask_with_a_fixed_c_is_an_error():
    scores, y = _scores(0)
    mask = np.arange(len(y)) % 5 == 0
    with pytest.raises(ConfigError, match=r"C=0\.5 is fixed"):
        ConceptBottleneckClassifier(C=0.5).fit(scores, y, validation_mask=mask)


def test_nan_in_labelled_scores_names_the_samples_and_concepts():
    import xarray as xr

    from conceptlens.exceptions import DataError

    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 4))
    y = np.where(X[:, 0] > 0, "a", "b")
    ids = [f"s{i}" for i in range(120)]
    s = xr.DataArray(
        X, dims=("sample", "concept"), coords={"sample": ids, "concept": list("wxyz")}
    )
    m = ConceptBottleneckClassifier(C=0.5).fit(s, y)
    bad = s.copy()
    bad[3, 1], bad[7, 2] = np.nan, np.inf
    msg = (
        r"2 NaN or infinite value\(s\) in 2 sample\(s\) \['s3', 's7'\], "
        r"in concept\(s\) \['x', 'y'\]"
    )
    for call in (m.predict, m.predict_proba, m.decision_function):
        with pytest.raises(DataError, match=msg):
            call(bad)
    with pytest.raises(DataError, match=msg):
        ConceptBottleneckClassifier(C=0.5).fit(bad, y)
    with pytest.raises(DataError, match=msg):
        SparseLinearHead().fit(bad, y)


def test_missing_concepts_are_named_plainly():
    """The message lists concept names, not numpy reprs such as np.str_('b')."""
    from conceptlens.exceptions import DataError
    from conceptlens.heads import ConceptBottleneckClassifier

    rng = np.random.default_rng(0)
    X = xr.DataArray(
        rng.normal(size=(60, 3)),
        dims=("sample", "concept"),
        coords={"sample": np.arange(60), "concept": np.array(["a", "b", "c"])},
    )
    y = np.where(X.values[:, 0] > 0, "p", "q")
    model = ConceptBottleneckClassifier(C=1.0).fit(X, y)
    with pytest.raises(DataError, match=r"lack 2 concept\(s\).*\['b', 'c'\];"):
        model.predict(X.sel(concept=["a"]))


def test_labels_indexed_by_sample_name_are_aligned_not_paired_by_position(global_random_seed):
    scores, y = _scores(global_random_seed)
    ref = ConceptBottleneckClassifier(C=0.5).fit(scores, y)
    names = scores["sample"].values
    # a Series (or labelled DataArray) in another order is put in the scores' sample order
    shuffled = pd.Series(y, index=names).iloc[::-1]
    for labels in (shuffled, xr.DataArray(shuffled.values, coords={"sample": shuffled.index})):
        cbm = ConceptBottleneckClassifier(C=0.5).fit(scores, labels)
        np.testing.assert_allclose(cbm.coef_.values, ref.coef_.values)
    # sample weights and a validation mask indexed by sample name too
    w = np.linspace(0.5, 2.0, len(y))
    val = np.arange(len(y)) % 5 == 0
    ref_w = ConceptBottleneckClassifier(C=0.5).fit(scores, y, sample_weight=w)
    out = ConceptBottleneckClassifier(C=0.5).fit(
        scores, y, sample_weight=pd.Series(w, index=names).iloc[::-1]
    )
    np.testing.assert_allclose(out.coef_.values, ref_w.coef_.values)
    ref_v = ConceptBottleneckClassifier(Cs=5).fit(scores, y, validation_mask=val)
    out = ConceptBottleneckClassifier(Cs=5).fit(
        scores, y, validation_mask=pd.Series(val, index=names).iloc[::-1]
    )
    assert out.C_ == ref_v.C_
    np.testing.assert_allclose(out.coef_.values, ref_v.coef_.values)
    # a Series with a plain RangeIndex still pairs by position
    by_position = ConceptBottleneckClassifier(C=0.5).fit(scores, pd.Series(y))
    np.testing.assert_allclose(by_position.coef_.values, ref.coef_.values)
    with pytest.raises(DataError, match=rf"lack 1 sample\(s\) of the scores: \['{names[0]}'\]"):
        ConceptBottleneckClassifier(C=0.5).fit(scores, shuffled.drop(names[0]))


def test_fit_refuses_duplicated_concepts_and_a_label_count_mismatch(global_random_seed):
    scores, y = _scores(global_random_seed)
    dup = scores.assign_coords(concept=["veil", "streaks", "veil", "ruler", "ink", "hair"])
    with pytest.raises(DataError, match=r"concept\(s\) \['veil'\] more than once"):
        ConceptBottleneckClassifier(C=0.5).fit(dup, y)
    with pytest.raises(DataError, match="10 labels for 300 samples"):
        ConceptBottleneckClassifier(C=0.5).fit(scores, y[:10])
    # (concept, sample) and a sample dim of another name are read as samples x concepts
    ref = ConceptBottleneckClassifier(C=0.5).fit(scores, y)
    for X in (scores.transpose(), scores.rename(sample="image").transpose()):
        cbm = ConceptBottleneckClassifier(C=0.5).fit(X, y)
        np.testing.assert_allclose(cbm.coef_.values, ref.coef_.values)
        np.testing.assert_allclose(
            np.asarray(cbm.predict_proba(X)), ref.predict_proba(scores.values)
        )


@pytest.mark.parametrize("bad", [None, np.nan, pd.NA, "", "Melanoma", "melanoma "])
def test_a_missing_or_misspelt_label_is_not_a_class(global_random_seed, bad):
    scores, y = _scores(global_random_seed)
    good, y = y, y.astype(object)
    y[7] = bad
    if isinstance(bad, str) and bad.strip():
        match = r"labels 'melanoma' and '.*' in y differ only in case, spacing"
    else:  # None and NaN failed in sorting ('<' not supported), '' became a class
        match = r"1 row\(s\) in y have no label \(empty or NaN; the first at position 7\)"
    with pytest.raises(DataError, match=match):
        ConceptBottleneckClassifier(C=0.5).fit(scores, y)
    # integer and boolean labels are classes as they are
    cbm = ConceptBottleneckClassifier(C=0.5).fit(scores, good == "melanoma")
    assert [str(c) for c in cbm.classes_] == ["False", "True"]


def test_predicting_on_raw_scores_with_a_head_fitted_on_standardised_ones_is_refused(
    global_random_seed, tmp_path
):
    from conceptlens.concepts import ConceptStandardizer

    scores, y = _scores(global_random_seed)
    raw = scores.copy(data=scores.values * 0.1 + 0.2)
    raw.attrs = {"score_mode": "relative"}  # as score_concepts writes them
    std = ConceptStandardizer().fit(raw)
    z = std.transform(raw)
    cbm = ConceptBottleneckClassifier(C=0.5).fit(z, y)
    # forgetting std.transform gave confident predictions from the wrong scale
    with pytest.raises(DataError, match="fitted on standardised concept scores, these are raw"):
        cbm.predict(raw)
    np.testing.assert_array_equal(cbm.predict(std.transform(raw)), cbm.predict(z.values))
    on_raw = ConceptBottleneckClassifier(C=0.5).fit(raw, y)
    with pytest.raises(DataError, match="fitted on raw concept scores, these are standardised"):
        on_raw.predict_proba(z)
    # a saved head keeps the check (its trained_on record), and a record from before
    # it was kept (no 'standardized' entry) is not guessed at
    from conceptlens.heads import load_head, save_head

    for head, wrong, right, word in ((cbm, raw, z, "raw"), (on_raw, z, raw, "standardised")):
        back = load_head(save_head(head, tmp_path / word, trained_on=right))
        with pytest.raises(DataError, match=f"these are {word}"):
            back.predict(wrong)
        np.testing.assert_array_equal(back.predict(right), head.predict(right))
    back.trained_on_.pop("standardized")
    assert len(back.predict(z)) == len(y)
    # unknown provenance (no attrs, an array) is not guessed at
    bare = raw.copy()
    bare.attrs = {}
    assert len(cbm.predict(bare)) == len(y) and len(cbm.predict(raw.values)) == len(y)
