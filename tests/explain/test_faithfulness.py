"""Deletion/insertion curves, effective concepts and the random-words control."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from conceptlens.exceptions import ConfigError, DataError
from conceptlens.explain import (
    contributions,
    deletion_insertion,
    effective_concepts,
    random_words_control,
)
from conceptlens.heads import ConceptBottleneckClassifier


def _scores(rng, n=300, d=6):
    X = rng.normal(size=(n, d))
    logits = np.column_stack([2 * X[:, 0], X[:, 1] + X[:, 2], 0.5 * X[:, 3]])
    y = np.array(["a", "b", "c"])[(logits + rng.gumbel(size=(n, 3))).argmax(1)]
    s = xr.DataArray(X, dims=("sample", "concept"),
                     coords={"concept": [f"k{j}" for j in range(d)]})  # fmt: skip
    return s, y


def test_deletion_insertion_against_a_dense_loop(rng):
    s, y = _scores(rng)
    cbm = ConceptBottleneckClassifier(C=0.5).fit(s, y)
    part = s.isel(sample=slice(0, 40))
    res = deletion_insertion(cbm, part, n_random=4, seed=1)
    # independent reference: one sample at a time, concepts removed by name
    c = contributions(cbm, part)
    logit = (c.sum("concept") + c.base_value).values
    mu = cbm.head_.mean_
    dele = np.zeros(7)
    ins = np.zeros(7)
    for i in range(40):
        top = int(np.argmax(logit[i]))
        order = np.argsort(-c.values[i, top], kind="stable")
        for k in range(7):
            xd = part.values[i].copy()
            xd[order[:k]] = mu[order[:k]]
            xi = mu.copy()
            xi[order[:k]] = part.values[i, order[:k]]
            dele[k] += cbm.predict_proba(xd[None])[0, top] / 40
            ins[k] += cbm.predict_proba(xi[None])[0, top] / 40
    np.testing.assert_allclose(res.probability.sel(curve="deletion", order="contribution"), dele)
    np.testing.assert_allclose(res.probability.sel(curve="insertion", order="contribution"), ins)
    # both orders start and end at the same points
    p = res.probability
    np.testing.assert_allclose(p.isel(k=0).sel(curve="deletion").values, dele[0])
    np.testing.assert_allclose(p.isel(k=-1).sel(curve="insertion").values, ins[-1])
    # the contribution order is more faithful than random
    auc = res.auc
    assert auc.sel(curve="deletion", order="contribution") < auc.sel(
        curve="deletion", order="random"
    )
    assert auc.sel(curve="insertion", order="contribution") > auc.sel(
        curve="insertion", order="random"
    )


def test_effective_concepts_formula(rng):
    s, y = _scores(rng)
    cbm = ConceptBottleneckClassifier(C=0.5).fit(s, y)
    c = contributions(cbm, s.isel(sample=slice(0, 20)))
    eff = effective_concepts(c)
    logit = (c.sum("concept") + c.base_value).values
    for i in range(20):
        o = np.argsort(-logit[i])
        m = c.values[i, o[0]] - c.values[i, o[1]]
        assert eff.values[i] == pytest.approx(np.abs(m).sum() ** 2 / (m**2).sum())
    assert (eff >= 1 - 1e-12).all() and (eff <= 6 + 1e-12).all()
    with pytest.raises(DataError, match="dims"):
        effective_concepts(c.sum("class"))


def test_multilabel_heads_are_refused(rng):
    X = rng.normal(size=(200, 3))
    Y = np.column_stack([X[:, 0] > 0, X[:, 1] > 0]).astype(int)
    with pytest.raises(ConfigError, match="single-label"):
        deletion_insertion(ConceptBottleneckClassifier(C=0.1).fit(X, Y), X)


def test_random_words_control_on_a_tiny_backbone(tmp_path):
    from tests.backbones._tiny import VIT_AVG, dataset, tiny_backbone, tiny_bank

    bb = tiny_backbone(tmp_path, VIT_AVG, device="cpu")
    ds = dataset(30)
    y = np.arange(30) % 2
    res = random_words_control(bb, ds, tiny_bank(), y, np.arange(20), np.arange(20, 30),
                               n_banks=2, cache=tmp_path / "cache")  # fmt: skip
    assert list(res.bank.values) == ["toy", "random-words-0", "random-words-1"]
    assert (res.n_concepts == len(tiny_bank().names)).all()
    # each entry is score -> fit on train -> accuracy on test, done by hand here
    from conceptlens.concepts import random_words_bank, score_concepts

    second = random_words_bank(tiny_bank(), len(tiny_bank().names), seed=1)
    for name, bank in (("toy", tiny_bank()), ("random-words-1", second)):
        s = score_concepts(bb, ds, bank, mode="relative")
        head = ConceptBottleneckClassifier(C=1.0).fit(s[:20], y[:20])
        acc = np.mean(head.predict(s[20:]) == y[20:])
        assert float(res.accuracy.sel(bank=name)) == pytest.approx(acc)
    # overlapping train/test and a label count that differs from the images are refused
    with pytest.raises(DataError, match=r"train and test share 5 image\(s\)"):
        random_words_control(bb, ds, tiny_bank(), y, np.arange(20), np.arange(15, 30))
    with pytest.raises(DataError, match=r"one label per image \(30,\)"):
        random_words_control(bb, ds, tiny_bank(), y[:10], np.arange(20), np.arange(20, 30))
