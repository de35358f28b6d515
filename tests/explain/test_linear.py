"""Concept contributions against shap's LinearExplainer and the heads' decision_function."""

from __future__ import annotations

import numpy as np
import pytest
import shap
import xarray as xr

from conceptlens.exceptions import ConfigError, DataError
from conceptlens.explain import (
    contributions,
    global_importance,
    head_parameters,
    standardized_weights,
    to_shap,
    top_concepts,
)
from conceptlens.heads import ConceptBottleneckClassifier, SparseLinearHead

CONCEPTS = ["veil", "streaks", "ruler", "hair", "dots"]


def _data(kind, rng, n=240):
    X = rng.normal(size=(n, len(CONCEPTS))) * [1.0, 3.0, 0.5, 2.0, 1.0] + [0, 1, -2, 0.5, 3]
    if kind == "binary":
        y = np.where(X[:, 0] + 0.3 * X[:, 1] + rng.normal(size=n) > 0.3, "melanoma", "nevus")
    elif kind == "multinomial":
        logits = X[:, :3] * [1.0, 0.4, 2.0] + rng.normal(size=(n, 3))
        y = np.array(["mel", "nev", "sk"])[logits.argmax(axis=1)]
    else:
        y = np.column_stack([X[:, 0] > 0, X[:, 1] > 1, X[:, 3] + rng.normal(size=n) > 0.5]).astype(
            int
        )
    s = xr.DataArray(
        X,
        dims=("sample", "concept"),
        coords={
            "sample": [f"s{i}" for i in range(n)],
            "concept": CONCEPTS,
            "concept_group": ("concept", ["colour", "structure", "artifact", "artifact", "s"]),
            "site": ("sample", np.where(np.arange(n) % 2, "a", "b")),
        },
        name="concept_score",
    )
    return s, y


def _logits(model, s, kind):
    out = np.asarray(model.decision_function(s), dtype=float)
    if kind == "binary" and out.ndim == 1:  # second class vs first
        return out
    return out


@pytest.mark.parametrize("kind", ["binary", "multinomial", "multilabel"])
@pytest.mark.parametrize("standardize", [True, False])
def test_contributions_equal_shap_linear_explainer_and_add_up(kind, standardize, rng):
    s, y = _data(kind, rng)
    train, test = s.isel(sample=slice(0, 200)), s.isel(sample=slice(200, None))
    ytr = y[:200]
    cbm = ConceptBottleneckClassifier(C=0.5, standardize=standardize, max_iter=5000)
    cbm.fit(train, ytr)
    background = None if standardize else train
    c = contributions(cbm, test, background=background)
    assert c.dims == ("sample", "class", "concept")
    assert list(c["concept"].values) == CONCEPTS
    assert list(c["site"].values) == list(test["site"].values)
    assert list(c["concept_group"].values) == list(test["concept_group"].values)

    # independent reference: shap's exact linear explainer on the training background
    coef = np.asarray(cbm.coef_.values)
    intercept = np.asarray(cbm.intercept_.values)
    masker = shap.maskers.Independent(train.values, max_samples=train.sizes["sample"])
    explainer = shap.LinearExplainer((coef, intercept), masker)
    ref = np.asarray(explainer.shap_values(test.values))  # (n, concepts, classes)
    assert c.attrs["kind"] == kind
    np.testing.assert_allclose(c.transpose("sample", "concept", "class").values, ref, atol=1e-6)
    np.testing.assert_allclose(c["base_value"].values, explainer.expected_value, atol=1e-6)

    # additivity against the head's own decision function
    logit = (c.sum("concept") + c["base_value"]).values
    df = np.asarray(cbm.decision_function(test), dtype=float)
    if kind == "binary":
        cls = list(c["class"].values)
        np.testing.assert_allclose(
            logit[:, 1], df if df.ndim == 1 else df[:, 1], rtol=1e-10, atol=1e-10
        )
        np.testing.assert_allclose(logit[:, 0], -logit[:, 1], atol=1e-12)
        assert cls == ["melanoma", "nevus"]
    else:
        np.testing.assert_allclose(logit, df, rtol=1e-10, atol=1e-10)


def test_contributions_of_a_plain_sparse_head_match_shap(rng):
    s, y = _data("binary", rng)
    X = s.values
    head = SparseLinearHead(C=0.5).fit(X, y)
    c = contributions(head, X)
    masker = shap.maskers.Independent(X, max_samples=len(X))
    ref = shap.LinearExplainer(head, masker).shap_values(X)
    np.testing.assert_allclose(c.sel({"class": "nevus"}).values, ref, atol=1e-6)
    np.testing.assert_allclose(
        (c.sum("concept") + c.base_value).sel({"class": "nevus"}), head.decision_function(X)
    )


def test_unstandardised_head_needs_a_background(rng):
    s, y = _data("multinomial", rng)
    cbm = ConceptBottleneckClassifier(C=0.05, standardize=False, max_iter=5000).fit(s, y)
    with pytest.raises(ConfigError, match="background"):
        contributions(cbm, s)
    # an empty background has no mean: an error, not NaN output with RuntimeWarnings
    with pytest.raises(DataError, match="background holds 0 samples"):
        contributions(cbm, s, background=s.isel(sample=slice(0, 0)))


def test_bad_scores_are_named(rng):
    s, y = _data("multinomial", rng)
    cbm = ConceptBottleneckClassifier(C=0.5).fit(s, y)
    with pytest.raises(DataError, match="ruler"):
        contributions(cbm, s.drop_sel(concept="ruler"))
    bad = s.copy()
    bad[3, 1] = np.nan
    with pytest.raises(DataError, match=r"NaN.*streaks"):
        contributions(cbm, bad)
    with pytest.raises(DataError, match="expects"):
        contributions(cbm, s.values[:, :3])


def test_contributions_align_concepts_by_name(rng):
    s, y = _data("multinomial", rng)
    cbm = ConceptBottleneckClassifier(C=0.5).fit(s, y)
    shuffled = s.isel(concept=[4, 2, 0, 1, 3])
    xr.testing.assert_allclose(contributions(cbm, shuffled), contributions(cbm, s))


def test_to_shap_shapes_and_slicing(rng):
    s, y = _data("multinomial", rng)
    cbm = ConceptBottleneckClassifier(C=0.5).fit(s, y)
    c = contributions(cbm, s.isel(sample=slice(0, 10)))
    exp = to_shap(c)
    assert exp.values.shape == (10, 5, 3)
    assert exp.base_values.shape == (10, 3)
    assert exp.feature_names == CONCEPTS and exp.output_names == ["mel", "nev", "sk"]
    np.testing.assert_allclose(
        exp.values.sum(1) + exp.base_values, cbm.decision_function(s.isel(sample=slice(0, 10)))
    )
    one = to_shap(c, cls="sk")
    assert one.values.shape == (10, 5)
    np.testing.assert_array_equal(one.values, exp.values[:, :, 2])
    np.testing.assert_array_equal(one.data, s.values[:10])
    with pytest.raises(DataError, match="unknown class"):
        to_shap(c, cls="xx")


def test_importance_is_weight_times_training_sd(rng):
    s, y = _data("multinomial", rng)
    cbm = ConceptBottleneckClassifier(C=0.5).fit(s, y)
    w = standardized_weights(cbm)
    np.testing.assert_allclose(w.values, cbm.coef_.values * s.std("sample").values)
    # the same with an explicit background, for a head without standardisation
    raw = ConceptBottleneckClassifier(C=0.05, standardize=False, max_iter=5000).fit(s, y)
    np.testing.assert_allclose(
        standardized_weights(raw, background=s).values, raw.coef_.values * s.std("sample").values
    )
    g = global_importance(cbm)
    expected = np.abs(w.values).mean(axis=0)
    assert list(g.concept.values) == [CONCEPTS[j] for j in np.argsort(-expected, kind="stable")]
    np.testing.assert_allclose(g.values, np.sort(expected)[::-1])
    t = top_concepts(cbm, k=2)
    assert t.dims == ("class", "rank")
    for cls in t["class"].values:
        row = w.sel({"class": cls})
        best = row.concept.values[np.argsort(-np.abs(row.values))[:2]]
        assert list(t.concept.sel({"class": cls}).values) == list(best)


def test_head_parameters_binary_rows(rng):
    s, y = _data("binary", rng)
    p = head_parameters(ConceptBottleneckClassifier(C=0.5).fit(s, y))
    assert p.attrs["kind"] == "binary"
    np.testing.assert_array_equal(p.coef.values[0], -p.coef.values[1])


def test_shap_plots_accept_the_documented_slices(rng):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, y = _data("multinomial", rng)
    c = contributions(ConceptBottleneckClassifier(C=0.5).fit(s, y), s.isel(sample=slice(0, 30)))
    exp = to_shap(c)
    shap.plots.beeswarm(exp[:, :, 1], show=False)
    assert plt.gcf().axes and plt.gcf().axes[0].get_yticklabels()
    plt.close("all")
    shap.plots.waterfall(exp[0, :, 1], show=False)
    labels = [t.get_text() for t in plt.gcf().axes[0].get_yticklabels()]
    assert any(name in " ".join(labels) for name in CONCEPTS)
    plt.close("all")
    with pytest.raises(ValueError, match="single explanation"):
        shap.plots.waterfall(exp[0], show=False)
    plt.close("all")
