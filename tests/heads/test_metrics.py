"""Metrics with bootstrap CIs against scikit-learn and a numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

from conceptlens.exceptions import DataError
from conceptlens.heads import _kernels, classification_metrics


def _fake(seed, n=300, k=3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    groups = rng.choice(["site_a", "site_b", "site_c"], size=n)
    return y, proba, groups


def _sk(y, proba, k):
    pred = proba.argmax(1)
    auc = (
        roc_auc_score(y, proba[:, 1])
        if k == 2
        else roc_auc_score(y, proba, multi_class="ovr", average="macro")
    )
    return [accuracy_score(y, pred), balanced_accuracy_score(y, pred), auc]


@pytest.mark.parametrize("k", [2, 3])
def test_point_estimates_match_sklearn(k, global_random_seed):
    y, proba, groups = _fake(global_random_seed, k=k)
    ds = classification_metrics(y, proba, groups=groups, n_boot=0)
    np.testing.assert_allclose(ds.estimate.sel(group="all").values, _sk(y, proba, k))
    per_group = []
    for g in ("site_a", "site_b", "site_c"):
        m = groups == g
        expected = _sk(y[m], proba[m], k)
        np.testing.assert_allclose(ds.estimate.sel(group=g).values, expected)
        per_group.append(expected)
    np.testing.assert_allclose(ds.estimate.sel(group="worst").values, np.min(per_group, 0))
    assert int(ds.n_samples.sel(group="all")) == len(y)


def test_bootstrap_resamples_are_stratified_and_seeded(global_random_seed):
    y, proba, _ = _fake(global_random_seed)
    strata = y.astype(np.int64)
    idx = _kernels.bootstrap_indices(strata, 3, 50, 7)
    again = _kernels.bootstrap_indices(strata, 3, 50, 7)
    np.testing.assert_array_equal(idx, again)
    assert not np.array_equal(idx, _kernels.bootstrap_indices(strata, 3, 50, 8))
    for b in range(50):
        np.testing.assert_array_equal(np.bincount(y[idx[b]], minlength=3), np.bincount(y))
    # the replicate metric kernel equals sklearn on every resample
    reps = _kernels.replicate_metrics(
        idx[:5], strata, proba.argmax(1).astype(np.int64), proba, np.zeros(len(y), np.int64), 1, 3
    )
    for b in range(5):
        np.testing.assert_allclose(reps[b, 1], _sk(y[idx[b]], proba[idx[b]], 3))


def test_confidence_intervals(global_random_seed):
    y, proba, groups = _fake(global_random_seed, n=400)
    ds = classification_metrics(y, proba, groups=groups, n_boot=300, seed=3)
    again = classification_metrics(y, proba, groups=groups, n_boot=300, seed=3)
    assert ds.identical(again)
    assert np.all(ds.ci_low <= ds.estimate + 1e-12) and np.all(ds.estimate <= ds.ci_high + 1e-12)
    # percentile CI of a proportion ~ normal approximation width
    acc = float(ds.estimate.sel(group="all", metric="accuracy"))
    width = float(
        ds.ci_high.sel(group="all", metric="accuracy")
        - ds.ci_low.sel(group="all", metric="accuracy")
    )
    normal = 2 * 1.96 * np.sqrt(acc * (1 - acc) / len(y))
    assert 0.6 * normal < width < 1.3 * normal
    assert ds.estimate.dims == ("group", "metric")
    assert list(ds.group.values) == ["all", "site_a", "site_b", "site_c", "worst"]


def test_validation_messages():
    with pytest.raises(DataError, match="expected"):
        classification_metrics([0, 1], np.ones((2, 3)), classes=[0, 1])
    with pytest.raises(DataError, match="not in classes"):
        classification_metrics([0, 5], np.ones((2, 2)), classes=[0, 1])


def test_missing_group_values_and_one_class_groups():
    """NaN/None/empty group values form one '<missing>' group (they were 'nan' and ''),
    and a group whose AUROC is undefined in every replicate stays nan without numpy's
    'All-NaN slice' RuntimeWarning reaching the user."""
    import warnings

    y, proba, groups = _fake(0, n=120)
    groups = groups.astype(object)
    groups[:6], groups[6:12], groups[12:18] = None, np.nan, " "
    one_class = np.flatnonzero(y == 0)[:8]
    groups[one_class] = "only_zeros"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = classification_metrics(y, proba, groups=groups, n_boot=50, seed=0)
    names = list(m.group.values)
    assert "<missing>" in names and "nan" not in names and "" not in names and " " not in names
    missing = ~np.isin(np.arange(120), one_class) & (np.arange(120) < 18)
    assert int(m.n_samples.sel(group="<missing>")) == int(missing.sum())
    auc = m.sel(group="only_zeros", metric="auroc")
    assert np.isnan(float(auc.estimate)) and np.isnan(float(auc.ci_low))


def test_labelled_probabilities_are_read_by_class_and_sample_name(global_random_seed):
    import pandas as pd
    import xarray as xr

    y, proba, groups = _fake(global_random_seed)
    names = np.array([f"s{i}" for i in range(len(y))])
    ref = classification_metrics(y, proba, groups=groups, n_boot=0)
    labelled = xr.DataArray(
        proba, dims=("sample", "class"), coords={"sample": names, "class": ["0", "1", "2"]}
    )
    # columns in another order, and labels/groups as Series in another sample order
    perm = np.random.default_rng(0).permutation(len(y))
    shuffled = labelled.isel({"class": [2, 0, 1]})
    out = classification_metrics(
        pd.Series(y, index=names).iloc[perm],
        shuffled,
        groups=pd.Series(groups, index=names).iloc[perm],
        n_boot=0,
    )
    np.testing.assert_allclose(out.estimate.values, ref.estimate.values)
    np.testing.assert_allclose(out.estimate.sel(group="all").values, _sk(y, proba, 3))
    with pytest.raises(DataError, match=r"classes \['3'\] are not columns of proba"):
        classification_metrics(y, labelled, classes=[0, 3], n_boot=0)
