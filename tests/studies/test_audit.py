"""audit(): metrics against scikit-learn, bootstrap against a direct resampling, DeLong
against the direct structural-components formula, small groups, errors, netCDF."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    roc_auc_score,
)

from conceptlens.exceptions import DataError, UnknownNameError
from conceptlens.heads._kernels import bootstrap_indices
from conceptlens.studies import audit, delong_test, load_audit, save_audit

CLASSES = ["nevus", "melanoma", "sk"]


def _data(rng, n=600, k=3, skill=1.5):
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + skill * np.eye(k)[y]
    p = np.exp(logits)
    p /= p.sum(1, keepdims=True)
    logits2 = rng.normal(size=(n, k)) + 0.8 * skill * np.eye(k)[y]
    q = np.exp(logits2)
    q /= q.sum(1, keepdims=True)
    meta = pd.DataFrame(
        {
            "label": np.array(CLASSES[:k])[y],
            "site": rng.choice(["site_a", "site_b", "site_c"], n),
            "tone": rng.integers(1, 5, n).astype(str),
        }
    )
    models = {
        "m1": xr.DataArray(p, dims=("sample", "class"), coords={"class": CLASSES[:k]}),
        "m2": xr.DataArray(q, dims=("sample", "class"), coords={"class": CLASSES[:k]}),
    }
    return y, p, q, meta, models


def _ece(y, p, bins=15):
    conf = p.max(1)
    hit = p.argmax(1) == y
    b = np.minimum((conf * bins).astype(int), bins - 1)
    return sum(abs(hit[b == i].sum() - conf[b == i].sum()) for i in range(bins)) / len(y)


def _sk_metrics(y, p):
    k = p.shape[1]
    pred = p.argmax(1)
    auc = roc_auc_score(y, p[:, 1]) if k == 2 else roc_auc_score(y, p, multi_class="ovr")
    return [accuracy_score(y, pred), balanced_accuracy_score(y, pred), auc, _ece(y, p)]


@pytest.mark.parametrize("k", [2, 3])
def test_point_metrics_match_sklearn(rng, k):
    y, p, q, meta, models = _data(rng, k=k)
    ds = audit(models, metadata=meta, groups=["tone"], n_boot=0)
    est = ds.metrics.sel(stat="estimate")
    for site in ["site_a", "site_b", "site_c"]:
        rows = meta.site.values == site
        got = est.sel(model="m1", split=site, group="all").values
        np.testing.assert_allclose(got, _sk_metrics(y[rows], p[rows]), rtol=1e-12)
        for tone in ["1", "2", "3", "4"]:
            r = rows & (meta.tone.values == tone)
            got = est.sel(model="m2", split=site, group=f"tone={tone}").values
            np.testing.assert_allclose(got, _sk_metrics(y[r], q[r]), rtol=1e-12)
        # per-class sensitivity, specificity and one-vs-rest AUROC
        cm = confusion_matrix(y[rows], p[rows].argmax(1), labels=range(k))
        for c in range(k):
            tp = cm[c, c]
            fn = cm[c].sum() - tp
            fp = cm[:, c].sum() - tp
            tn = cm.sum() - tp - fn - fp
            got = ds.class_metrics.sel(model="m1", split=site, group="all", stat="estimate")
            got = got.isel({"class": c}).values
            ref_auc = roc_auc_score(y[rows] == c, p[rows, c])
            np.testing.assert_allclose(got, [tp / (tp + fn), tn / (tn + fp), ref_auc])


def test_bootstrap_intervals_equal_direct_resampling(rng):
    """The weighted kernel gives the same replicates as sklearn on the resampled rows."""
    y, p, _q, meta, models = _data(rng, n=300)
    n_boot = 40
    ds = audit({"m1": models["m1"]}, metadata=meta, split=None, n_boot=n_boot, seed=3)
    idx = bootstrap_indices(y.astype(np.int64), 3, n_boot, 3)  # split 0 -> seed + 0
    reps = np.array([_sk_metrics(y[i], p[i]) for i in idx])
    got = ds.metrics.sel(model="m1", split="all", group="all")
    np.testing.assert_allclose(got.sel(stat="ci_low"), np.quantile(reps, 0.025, axis=0))
    np.testing.assert_allclose(got.sel(stat="ci_high"), np.quantile(reps, 0.975, axis=0))


def test_seeded_and_estimate_inside_interval(rng):
    _y, _p, _q, meta, models = _data(rng)
    a = audit(models, metadata=meta, n_boot=200, seed=1)
    b = audit(models, metadata=meta, n_boot=200, seed=1)
    c = audit(models, metadata=meta, n_boot=200, seed=2)
    xr.testing.assert_identical(a, b)
    assert not np.allclose(a.metrics.sel(stat="ci_low"), c.metrics.sel(stat="ci_low"))
    # ECE is biased upward under resampling, so its point estimate may sit below the
    # percentile interval; the other metrics are checked
    m = a.metrics.sel(group="all", metric=["accuracy", "balanced_accuracy", "auroc"])
    assert bool((m.sel(stat="ci_low") <= m.sel(stat="estimate")).all())
    assert bool((m.sel(stat="estimate") <= m.sel(stat="ci_high")).all())


def test_paired_gap_and_delong_consistency(rng):
    y, p, q, meta, models = _data(rng, n=900)
    ds = audit(models, metadata=meta, n_boot=300, reference="site_a")
    est = ds.metrics.sel(stat="estimate")
    diff = ds.paired.sel(pair="m1 - m2", stat="estimate")
    np.testing.assert_allclose(diff, est.sel(model="m1") - est.sel(model="m2"))
    gap = ds.gap.sel(stat="estimate", model="m1", split="site_b")
    np.testing.assert_allclose(
        gap, est.sel(model="m1", split="site_a") - est.sel(model="m1", split="site_b")
    )
    assert bool(ds.gap.sel(split="site_a").isnull().all())
    # m1 is more skilful: the paired bootstrap and DeLong both see it on all cases of a site
    d = ds.delong.sel(pair="m1 - m2", split="site_a", group="all")
    rows = meta.site.values == "site_a"
    for c in range(3):
        ref = delong_test(y[rows] == c, p[rows, c], q[rows, c])
        np.testing.assert_allclose(d.isel({"class": c}).values, list(ref.values()))
    assert (
        0
        <= float(
            ds.paired_p_value.sel(pair="m1 - m2", split="site_a", group="all", metric="auroc")
        )
        <= 1
    )


def _delong_direct(y, a, b):
    """DeLong 1988 directly: psi kernel over all positive-negative pairs."""
    y = np.asarray(y, bool)
    out = []
    comps = []
    for s in (np.asarray(a, float), np.asarray(b, float)):
        x, z = s[y], s[~y]
        psi = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
        out.append(psi.mean())
        comps.append((psi.mean(1), psi.mean(0)))
    m, n = y.sum(), (~y).sum()
    s10 = np.cov(np.vstack([comps[0][0], comps[1][0]]))
    s01 = np.cov(np.vstack([comps[0][1], comps[1][1]]))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    z = (out[0] - out[1]) / math.sqrt(var)
    return out[0], out[1], math.sqrt(var), z


def test_delong_matches_direct_formula(rng):
    y = rng.integers(0, 2, 150).astype(bool)
    a = y * 1.0 + rng.normal(size=150)
    b = np.round(y * 0.6 + rng.normal(size=150), 1)  # ties
    r = delong_test(y, a, b)
    auc_a, auc_b, se, z = _delong_direct(y, a, b)
    np.testing.assert_allclose(
        [r["auroc_a"], r["auroc_b"], r["se"], r["z"]], [auc_a, auc_b, se, z]
    )
    assert r["auroc_a"] == pytest.approx(roc_auc_score(y, a))
    assert r["p_value"] == pytest.approx(math.erfc(abs(z) / math.sqrt(2)))


def test_delong_errors():
    with pytest.raises(DataError, match="at least 2 positive"):
        delong_test([1, 0, 0], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1])
    with pytest.raises(DataError, match="same cases"):
        delong_test([1, 0, 0, 1], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1])


def test_small_and_single_class_groups_are_nan_with_reason(rng):
    y, _p, _q, meta, models = _data(rng, n=300)
    meta["tiny"] = "big"
    meta.loc[:4, "tiny"] = "small"  # 5 cases
    one = np.flatnonzero(y == 0)[5:25]
    meta.loc[one, "tiny"] = "oneclass"
    ds = audit(models, metadata=meta, split=None, groups=["tiny"], n_boot=50).sel(split="all")
    assert bool(ds.metrics.sel(group="tiny=small").isnull().all())
    assert "fewer than 10 cases (n=5)" in str(
        ds.reason.sel(group="tiny=small", metric="accuracy").values
    )
    m = ds.metrics.sel(group="tiny=oneclass", stat="estimate", model="m1")
    assert m.sel(metric="accuracy").notnull() and m.sel(metric="auroc").isnull()
    assert "only class ['nevus']" in str(
        ds.reason.sel(group="tiny=oneclass", metric="auroc").values
    )
    # worst group skips the undefined groups
    worst = ds.metrics.sel(group="worst:tiny", metric="auroc", stat="estimate", model="m1")
    assert float(worst) == pytest.approx(
        float(ds.metrics.sel(group="tiny=big", metric="auroc", stat="estimate", model="m1"))
    )


def test_worst_group_is_minimum(rng):
    _y, _p, _q, meta, models = _data(rng)
    ds = audit(models, metadata=meta, split=None, groups="tone", n_boot=0)
    est = ds.metrics.sel(stat="estimate", split="all")
    tones = [g for g in ds.group.values if g.startswith("tone=")]
    np.testing.assert_allclose(
        est.sel(group="worst:tone", metric="accuracy"),
        est.sel(group=tones, metric="accuracy").min("group"),
    )
    np.testing.assert_allclose(
        est.sel(group="worst:tone", metric="ece"), est.sel(group=tones, metric="ece").max("group")
    )
    acc = est.sel(group=tones, metric="accuracy")
    for m in ("m1", "m2"):
        expect = str(acc.sel(model=m).idxmin("group").values)
        got = ds.worst_group.sel(model=m, split="all", group="worst:tone", metric="accuracy")
        assert str(got.values) == expect
        ece = est.sel(group=tones, metric="ece", model=m).idxmax("group")
        got = ds.worst_group.sel(model=m, split="all", group="worst:tone", metric="ece")
        assert str(got.values) == str(ece.values)


def test_worst_group_interval_is_the_named_groups_interval(rng):
    """The worst-group row carries the named group's estimate and interval (a per-replicate
    minimum over groups would be biased low: its interval could end below the estimate)."""
    _y, _p, _q, meta, models = _data(rng)
    ds = audit(models, metadata=meta, split=None, groups="tone", n_boot=200)
    for m in ("m1", "m2"):
        for metric in ("accuracy", "balanced_accuracy", "auroc", "ece"):
            named = str(ds.worst_group.sel(model=m, split="all", group="worst:tone",
                                           metric=metric).values)  # fmt: skip
            for var in ("metrics", "gap"):
                got = ds[var].sel(model=m, split="all", group="worst:tone", metric=metric)
                want = ds[var].sel(model=m, split="all", group=named, metric=metric)
                np.testing.assert_array_equal(got.values, want.values)
            lo, est, hi = (float(ds.metrics.sel(model=m, split="all", group="worst:tone",
                                                metric=metric, stat=s))
                           for s in ("ci_low", "estimate", "ci_high"))  # fmt: skip
            assert lo <= est <= hi


def test_unknown_column_names_available(rng):
    _y, _p, _q, meta, models = _data(rng)
    with pytest.raises(
        UnknownNameError, match=r"'skin_tone'.*available columns: \['label', 'site', 'tone'\]"
    ):
        audit(models, metadata=meta, groups=["skin_tone"])
    with pytest.raises(UnknownNameError, match="hospital"):
        audit(models, metadata=meta, split="hospital")
    with pytest.raises(DataError, match="not classes"):
        audit(models, metadata=meta.assign(label="x"))


def test_fitted_models_inputs_provenance_netcdf(rng, tmp_path):
    from conceptlens.heads import ConceptBottleneckClassifier, LinearProbe

    n = 400
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 5)) + y[:, None]
    emb = rng.normal(size=(n, 8)) + 0.5 * y[:, None]
    labels = np.array(["benign", "malignant"])[y]
    scores = xr.DataArray(
        x,
        dims=("sample", "concept"),
        coords={
            "sample": [f"s{i}" for i in range(n)],
            "concept": list("abcde"),
            "label": ("sample", labels),
            "site": ("sample", np.where(np.arange(n) < 250, "in", "out")),
        },
        attrs={"backbone_fingerprint": "bb-123", "bank_fingerprint": "bank-456"},
    )
    cbm = ConceptBottleneckClassifier(C=1.0).fit(scores[:250], labels[:250])
    probe = LinearProbe(C=1.0).fit(emb[:250], labels[:250])
    ds = audit(
        {"cbm": cbm, "probe": probe}, scores, inputs={"probe": emb}, n_boot=50, reference="in"
    )
    assert ds.attrs["backbone_fingerprint"] == "bb-123"
    assert ds.attrs["bank_fingerprint"] == "bank-456"
    assert ds.attrs["seed"] == 0 and "version_numpy" in ds.attrs
    auc = ds.metrics.sel(model="cbm", split="out", group="all", metric="auroc", stat="estimate")
    assert float(auc) == pytest.approx(
        roc_auc_score(y[250:], cbm.predict_proba(scores[250:])[:, 1])
    )
    save_audit(ds, tmp_path / "audit.nc")
    back = load_audit(tmp_path / "audit.nc")
    xr.testing.assert_allclose(back.metrics, ds.metrics)
    assert back.reason.values.tolist() == ds.reason.values.tolist()
    assert back.attrs["bank_fingerprint"] == "bank-456"


def test_weighted_kernel_matches_sklearn_sample_weight(rng):
    """Replicate weights, ties and overlapping group slots against sklearn's weighted metrics."""
    from sklearn.metrics import recall_score

    from conceptlens.studies import _kernels

    n, k = 300, 3
    y = rng.integers(0, k, n)
    p = np.round(rng.dirichlet(np.ones(k), n), 1)  # many exact ties
    slots = np.column_stack([1 + rng.integers(0, 3, n), 4 + rng.integers(0, 2, n)])
    W = rng.integers(0, 3, (4, n)).astype(float)
    pred = p.argmax(1)
    main, per = _kernels.weighted_metrics(
        W, y, pred, p.max(1), p, np.argsort(p, axis=0, kind="mergesort").T.copy(), slots, 6, 15
    )
    for r in range(len(W)):
        for s in range(6):
            rows = np.ones(n, bool) if s == 0 else (slots == s).any(1)
            w = W[r] * rows
            acc = np.average(pred == y, weights=w)
            per_ref = [roc_auc_score(y == c, p[:, c], sample_weight=w) for c in range(k)]
            auc = np.mean(per_ref)  # sklearn's macro one-vs-rest
            sens = recall_score(y, pred, average=None, sample_weight=w, labels=range(k))
            np.testing.assert_allclose(main[r, s, :3], [acc, sens.mean(), auc], rtol=1e-10)
            np.testing.assert_allclose(per[r, s, :, 2], per_ref, rtol=1e-10)


def test_missing_group_values_form_one_named_group(rng):
    """NaN, None and empty cells were groups 'tone=nan', 'tone=None' and 'tone='."""
    _y, _p, _q, meta, models = _data(rng)
    tone = meta["tone"].astype(object)
    tone[:20], tone[20:40], tone[40:60] = np.nan, None, ""
    ds = audit(models, metadata=meta.assign(tone=tone), split=None, groups="tone", n_boot=0)
    groups = list(ds.group.values)
    assert "tone=<missing>" in groups
    assert not [g for g in groups if g in ("tone=nan", "tone=None", "tone=")]
    n = ds["n_cases"].sel(split="all", group="tone=<missing>")
    assert int(np.asarray(n).max()) == 60


def test_load_audit_names_the_file_and_what_it_is(tmp_path):
    from conceptlens.exceptions import MissingFileError

    with pytest.raises(MissingFileError, match="no audit file"):
        load_audit(tmp_path / "none.nc")
    with pytest.raises(DataError, match="is a folder"):
        load_audit(tmp_path)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("id,path,label\na,a.png,nevus\n")
    with pytest.raises(DataError, match=r"manifest\.csv is not a netCDF file"):
        load_audit(manifest)
    scores = xr.Dataset({"concept_score": (("sample", "concept"), np.zeros((2, 3)))})
    scores.to_netcdf(tmp_path / "scores.nc", engine="netcdf4")
    with pytest.raises(DataError, match=r"not an audit \(no 'metrics', 'n_cases'.*concept_score"):
        load_audit(tmp_path / "scores.nc")
    broken = tmp_path / "broken.nc"
    broken.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(DataError, match=r"broken\.nc could not be read as an audit"):
        load_audit(broken)


def test_probabilities_labels_and_metadata_are_aligned_by_sample_name(rng):
    """Inputs that carry sample names in another order than the scores are matched by
    name (paired by position they silently mislabelled the cases)."""
    y, p, _q, meta, _models = _data(rng, n=300)
    names = [f"s{i}" for i in range(len(y))]
    scores = xr.DataArray(
        rng.normal(size=(len(y), 2)),
        dims=("sample", "concept"),
        coords={
            "sample": names,
            "concept": ["a", "b"],
            "label": ("sample", meta.label.to_numpy()),
            "site": ("sample", meta.site.to_numpy()),
        },
    )
    proba = xr.DataArray(p, dims=("sample", "class"), coords={"sample": names, "class": CLASSES})
    ref = audit({"m": proba}, scores, n_boot=0)
    perm = rng.permutation(len(y))
    # the probabilities in another sample order
    out = audit({"m": proba.isel(sample=perm)}, scores, n_boot=0)
    xr.testing.assert_allclose(out.metrics, ref.metrics)
    # labels as a shuffled Series; metadata as a shuffled frame indexed by sample
    labels = pd.Series(meta.label.values, index=names).iloc[perm]
    out = audit({"m": proba}, scores, labels=labels, n_boot=0)
    xr.testing.assert_allclose(out.metrics, ref.metrics)
    frame = meta.set_axis(names).iloc[perm]
    out = audit({"m": proba}, scores, metadata=frame, n_boot=0)
    xr.testing.assert_allclose(out.metrics, ref.metrics)
    # and the point estimate is sklearn's on the correctly paired cases
    auc = ref.metrics.sel(model="m", split="site_a", group="all", metric="auroc", stat="estimate")
    a = (meta.site == "site_a").to_numpy()
    assert float(auc) == pytest.approx(roc_auc_score(y[a], p[a], multi_class="ovr"))
    with pytest.raises(DataError, match=r"probabilities of model 'm'.*lack 1 sample\(s\)"):
        audit({"m": proba.isel(sample=perm[1:])}, scores, n_boot=0)
