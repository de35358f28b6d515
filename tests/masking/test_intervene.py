"""Interventions against a dense re-prediction and SynthDerm-style ground truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from conceptlens.exceptions import ConfigError, DataError
from conceptlens.heads import ConceptBottleneckClassifier
from conceptlens.masking import (
    concept_annotations,
    intervene,
    intervention_curve,
    reference_levels,
)


def _problem(rng, n=600):
    """Class from two annotated concepts; noisy scores of each concept (+ an unannotated one)."""
    truth = rng.integers(0, 2, size=(n, 3))
    y = np.array(["nev", "mel", "sk"])[np.clip(truth[:, 0] + truth[:, 1], 0, 2)]
    X = truth * [2.0, 1.0, 0.5] + rng.normal(scale=0.9, size=(n, 3)) + [0.3, -1.0, 4.0]
    X = np.column_stack([X, rng.normal(size=n)])
    s = xr.DataArray(
        X,
        dims=("sample", "concept"),
        coords={
            "sample": [f"s{i}" for i in range(n)],
            "concept": ["veil", "streaks", "dots", "noise"],
            "veil": ("sample", truth[:, 0]),
            "streaks": ("sample", truth[:, 1]),
            "dots": ("sample", truth[:, 2]),
            "label": ("sample", y),
        },
    )
    return s, y


def test_reference_levels_are_percentiles(rng):
    s, y = _problem(rng)
    cbm = ConceptBottleneckClassifier(C=0.1).fit(s, y)
    lv = reference_levels(cbm, s)
    np.testing.assert_allclose(lv.present.values, np.percentile(s.values, 95, axis=0))
    np.testing.assert_allclose(lv.absent.values, np.percentile(s.values, 5, axis=0))
    with pytest.raises(ConfigError, match="reference_scores"):
        reference_levels(cbm, None)


def test_intervene_matches_a_dense_reprediction(rng):
    s, y = _problem(rng)
    cbm = ConceptBottleneckClassifier(C=0.1).fit(s, y)
    part = s.isel(sample=slice(0, 50))
    out = intervene(
        cbm, part, {"veil": "present", "streaks": "truth", "noise": 0.25}, reference_scores=s
    )
    X = part.values.copy()
    X[:, 0] = np.percentile(s.values[:, 0], 95)
    st = s.values[:, 1]
    X[:, 1] = np.where(part["streaks"].values == 1, np.percentile(st, 95), np.percentile(st, 5))
    X[:, 3] = 0.25
    np.testing.assert_allclose(out.score_after.values, X)
    np.testing.assert_allclose(out.proba_after.values, cbm.predict_proba(X))
    np.testing.assert_array_equal(out.prediction_after.values, cbm.predict(X))
    np.testing.assert_array_equal(out.changed.sel(concept="dots").values, False)
    assert list(out.sample.values) == list(part.sample.values)


def test_intervene_bad_inputs(rng):
    s, y = _problem(rng)
    cbm = ConceptBottleneckClassifier(C=0.1).fit(s, y)
    with pytest.raises(DataError, match="unknown concept"):
        intervene(cbm, s, {"ink": 0.0})
    with pytest.raises(ConfigError, match="reference_scores"):
        intervene(cbm, s, {"veil": "present"})
    with pytest.raises(ConfigError, match="unknown value"):
        intervene(cbm, s, {"veil": "on"}, reference_scores=s)
    with pytest.raises(DataError, match="no ground-truth"):
        intervene(cbm, s, {"noise": "truth"}, reference_scores=s)


def test_intervention_curve_beats_random_and_reaches_truth(rng):
    s, y = _problem(rng)
    train, test = s.isel(sample=slice(0, 400)), s.isel(sample=slice(400, None))
    cbm = ConceptBottleneckClassifier(C=0.1).fit(train, y[:400])
    res = intervention_curve(cbm, test, "label", reference_scores=train, n_random=5)
    acc = res.accuracy
    assert res.attrs["concepts"] == ["veil", "streaks", "dots"]
    # k=0 is the model as is, k=K the same set of corrections in every order
    expected0 = np.mean(cbm.predict(test) == y[400:])
    np.testing.assert_allclose(acc.isel(k=0).values, expected0)
    np.testing.assert_allclose(acc.sel(order="uncertainty").isel(k=-1), acc.sel(order="random")
                               .isel(k=-1))  # fmt: skip
    assert float(acc.isel(k=-1).sel(order="random")) > expected0 + 0.05
    assert float(res.auc.sel(order="uncertainty")) > float(res.auc.sel(order="random"))
    by_contrib = intervention_curve(cbm, test, y[400:], reference_scores=train,
                                    order="contribution", n_random=2)  # fmt: skip
    assert by_contrib.accuracy.sizes["k"] == 4


def test_concept_annotations_need_coordinates():
    s = xr.DataArray(np.zeros((2, 2)), dims=("sample", "concept"), coords={"concept": ["a", "b"]})
    with pytest.raises(DataError, match="ground_truth"):
        concept_annotations(s)


def test_annotated_levels_are_class_conditional_means(rng):
    s, y = _problem(rng)
    cbm = ConceptBottleneckClassifier(C=0.1).fit(s, y)
    lv = reference_levels(cbm, s, method="annotated")
    on = s["veil"].values == 1
    assert float(lv.present.sel(concept="veil")) == pytest.approx(s.values[on, 0].mean())
    assert float(lv.absent.sel(concept="veil")) == pytest.approx(s.values[~on, 0].mean())
    # no annotation for "noise": the percentiles are kept
    assert float(lv.present.sel(concept="noise")) == pytest.approx(
        np.percentile(s.values[:, 3], 95)
    )
    out = intervene(cbm, s[:5], {"veil": "truth"}, reference_scores=s, levels="annotated")
    expected = np.where(s["veil"].values[:5] == 1, s.values[on, 0].mean(), s.values[~on, 0].mean())
    np.testing.assert_allclose(out.score_after.sel(concept="veil"), expected)
    with pytest.raises(ConfigError, match="method"):
        reference_levels(cbm, s, method="median")


def test_intervene_on_a_multilabel_head(rng):
    s, _ = _problem(rng)
    Y = np.column_stack([s["veil"].values, s["streaks"].values])
    head = ConceptBottleneckClassifier(C=0.1).fit(s, Y)
    out = intervene(head, s[:6], {"veil": "truth"}, reference_scores=s)
    assert out.prediction_after.dims == ("sample", "class")
    X = out.score_after.values
    np.testing.assert_array_equal(out.prediction_after.values, head.predict(X).astype(str))
    np.testing.assert_allclose(out.proba_after.values, head.predict_proba(X))


def test_intervention_curve_aligns_labels_by_sample_name(rng):
    s, y = _problem(rng)
    train, test = s.isel(sample=slice(0, 400)), s.isel(sample=slice(400, None))
    cbm = ConceptBottleneckClassifier(C=0.1).fit(train, y[:400])
    ref = intervention_curve(cbm, test, y[400:], reference_scores=train, n_random=2)
    # the same labels as a Series sorted another way: matched by name, not by position
    series = pd.Series(y[400:], index=test["sample"].values).sort_values()
    out = intervention_curve(cbm, test, series, reference_scores=train, n_random=2)
    np.testing.assert_allclose(out.accuracy.values, ref.accuracy.values)


def test_ground_truth_with_sample_names_is_matched_by_name(rng):
    s, y = _problem(rng)
    cbm = ConceptBottleneckClassifier(C=0.1).fit(s, y)
    part = s.isel(sample=slice(0, 60))
    truth = concept_annotations(part)
    ref = intervene(cbm, part, {"veil": "truth"}, reference_scores=s, ground_truth=truth)
    shuffled = truth.isel(sample=rng.permutation(60))
    out = intervene(cbm, part, {"veil": "truth"}, reference_scores=s, ground_truth=shuffled)
    np.testing.assert_allclose(out.score_after.values, ref.score_after.values)
    with pytest.raises(DataError, match=r"ground_truth are indexed by sample name but lack 1"):
        intervene(cbm, part, {"veil": "truth"}, reference_scores=s, ground_truth=shuffled[1:])


def test_intervention_curve_refuses_labels_the_model_does_not_know(rng):
    s, y = _problem(rng)
    cbm = ConceptBottleneckClassifier(C=0.1).fit(s, y)
    codes = np.unique(y, return_inverse=True)[1]  # 0/1/2 instead of the class names
    with pytest.raises(DataError, match=r"labels \['0', '1', '2'\] are not classes of the model"):
        intervention_curve(cbm, s, codes, reference_scores=s, n_random=1)
    missing = y.astype(object)
    missing[0] = np.nan
    with pytest.raises(DataError, match=r"labels \['nan'\] are not classes"):
        intervention_curve(cbm, s, missing, reference_scores=s, n_random=1)
