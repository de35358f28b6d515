"""Test-time masking on a planted shortcut and a planted under-activation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from sklearn.exceptions import NotFittedError

from conceptlens.exceptions import ConfigError, DataError
from conceptlens.explain import contributions
from conceptlens.heads import ConceptBottleneckClassifier
from conceptlens.masking import MaskingAction, TestTimeMasking

CONCEPTS = ["veil", "streaks", "ink", "ruler"]
GROUPS = ["colour", "structure", "artifact", "artifact"]


def _domain(rng, n, *, shortcut, veil_gain=1.0):
    """Two classes; veil/streaks causal; ink follows the class only where shortcut=True."""
    y = rng.integers(0, 2, n)
    veil = veil_gain * (1.2 * y + rng.normal(scale=1.0, size=n))
    streaks = 0.8 * y + rng.normal(scale=1.0, size=n)
    ink_on = np.where(rng.random(n) < 0.9, y, 1 - y) if shortcut else rng.integers(0, 2, n)
    ink = 1.5 * ink_on + rng.normal(scale=0.3, size=n)
    ruler = rng.normal(size=n)
    X = np.column_stack([veil, streaks, ink, ruler])
    labels = np.array(["nevus", "melanoma"])[y]
    s = xr.DataArray(
        X,
        dims=("sample", "concept"),
        coords={
            "concept": CONCEPTS,
            "concept_group": ("concept", GROUPS),
            "label": ("sample", labels),
        },
        name="concept_score",
    )
    return s, labels


@pytest.fixture
def setting(rng):
    src, ys = _domain(rng, 800, shortcut=True)
    tgt, yt = _domain(rng, 800, shortcut=False)
    cbm = ConceptBottleneckClassifier(C=0.1).fit(src, ys)
    return cbm, src, ys, tgt, yt


def _shots(y, k, rng):
    return np.concatenate(
        [rng.choice(np.flatnonzero(y == c), k, replace=False) for c in np.unique(y)]
    )


def test_masks_the_shortcut_and_helps_the_target(setting, rng):
    cbm, src, _ys, tgt, yt = setting
    coef_before = cbm.coef_.copy()
    src_pred = cbm.predict(src)
    idx = _shots(yt, 8, rng)
    ttm = TestTimeMasking(cbm).fit(tgt.isel(sample=idx), yt[idx])
    assert [a.concept for a in ttm.actions_ if a.action == "mask"] == ["ink"]
    before = np.mean(cbm.predict(tgt) == yt)
    after = np.mean(ttm.predict(tgt) == yt)
    assert after > before + 0.05
    # the masked concept sits at the source mean: its contribution is exactly zero
    c = contributions(cbm, ttm.transform(tgt))
    np.testing.assert_allclose(c.sel(concept="ink").values, 0.0, atol=1e-12)
    # the source model is untouched
    xr.testing.assert_identical(cbm.coef_, coef_before)
    np.testing.assert_array_equal(cbm.predict(src), src_pred)
    np.testing.assert_allclose(ttm.predict_proba(tgt).sum(axis=1), 1.0)
    rep = ttm.report()
    assert list(rep.concept) == ["ink"]
    assert rep.target_loss_after[0] < rep.target_loss_before[0]


def test_user_and_group_masks(setting):
    cbm, src, _ys, tgt, yt = setting
    ttm = TestTimeMasking(cbm, mask_groups=["artifact"], rule=None).fit(tgt[:20], yt[:20])
    assert sorted(a.concept for a in ttm.actions_) == ["ink", "ruler"]
    X = ttm.transform(tgt)
    mean = src.mean("sample")
    np.testing.assert_allclose(X.sel(concept="ink"), float(mean.sel(concept="ink")))
    np.testing.assert_allclose(X.sel(concept="veil"), tgt.sel(concept="veil"))
    only = TestTimeMasking(cbm, mask=["veil"], rule=None).fit(tgt[:20], yt[:20])
    assert [(a.concept, a.reason) for a in only.actions_] == [("veil", "user mask")]
    with pytest.raises(DataError, match="unknown concept group"):
        TestTimeMasking(cbm, mask_groups=["hair"]).fit(tgt[:20], yt[:20])
    with pytest.raises(DataError, match="concept_group"):
        TestTimeMasking(cbm, mask_groups=["artifact"]).fit(tgt.values[:20], yt[:20])
    with pytest.raises(DataError, match="unknown concept"):
        TestTimeMasking(cbm, mask=["hair"]).fit(tgt[:20], yt[:20])


def test_user_mask_survives_the_rule(setting, rng):
    cbm, _src, _ys, tgt, yt = setting
    idx = _shots(yt, 8, rng)
    ttm = TestTimeMasking(cbm, mask=["ruler"]).fit(tgt.isel(sample=idx), yt[idx])
    assert ttm.scale_.sel(concept="ruler") == 0.0
    assert ttm.scale_.sel(concept="ink") == 0.0


def test_amplifies_an_under_activated_concept(rng):
    src, ys = _domain(rng, 800, shortcut=False)
    tgt, yt = _domain(rng, 800, shortcut=False, veil_gain=0.3)
    cbm = ConceptBottleneckClassifier(C=0.1).fit(src, ys)
    idx = _shots(yt, 10, rng)
    ttm = TestTimeMasking(cbm, source_scores=src, source_labels="label", max_masked=0)
    ttm.fit(tgt.isel(sample=idx), yt[idx])
    amp = [a for a in ttm.actions_ if a.action == "amplify"]
    assert [a.concept for a in amp] == ["veil"]
    assert amp[0].scale > 1.5
    # the reason names the class plainly (not as numpy's repr, np.str_('...'))
    cls = str(cbm.classes_[np.argmax(cbm.coef_.sel(concept="veil").values)])
    assert amp[0].reason == f"under-activated at the target for {cls!r}, which it supports"
    assert np.mean(ttm.predict(tgt) == yt) > np.mean(cbm.predict(tgt) == yt)
    before, after = ttm.report().attrs["source_accuracy_before"], ttm.source_accuracy_[1]
    assert before == np.mean(cbm.predict(src) == ys) and 0 <= after <= 1
    # without source statistics nothing is amplified
    plain = TestTimeMasking(cbm, max_masked=0).fit(tgt.isel(sample=idx), yt[idx])
    assert plain.actions_ == []


def test_pluggable_rule(setting):
    cbm, src, _ys, tgt, yt = setting
    seen = {}

    def rule(ctx):
        seen["n"] = len(ctx.target_scores)
        j = list(ctx.concepts).index("streaks")
        return [MaskingAction("streaks", "mask", 0.0, float(ctx.source_mean[j]), "custom")]

    ttm = TestTimeMasking(cbm, rule=rule).fit(tgt[:30], yt[:30])
    assert seen["n"] == 30
    assert ttm.report().reason.tolist() == ["custom"]
    np.testing.assert_allclose(
        ttm.transform(tgt).sel(concept="streaks"), float(src.sel(concept="streaks").mean())
    )


def test_bad_inputs_name_the_problem(setting):
    cbm, _src, _ys, tgt, yt = setting
    only_mel = np.flatnonzero(yt == "melanoma")[:4]
    with pytest.raises(DataError, match=r"nevus \(0\)"):
        TestTimeMasking(cbm).fit(tgt.isel(sample=only_mel), yt[only_mel])
    bad = tgt[:20].copy()
    bad[2, 1] = np.nan
    with pytest.raises(DataError, match=r"NaN.*streaks"):
        TestTimeMasking(cbm).fit(bad, yt[:20])
    with pytest.raises(DataError, match="ink"):
        TestTimeMasking(cbm).fit(tgt[:20].drop_sel(concept="ink"), yt[:20])
    with pytest.raises(DataError, match="does not know"):
        TestTimeMasking(cbm).fit(tgt[:20], np.array(["bcc"] * 20))
    with pytest.raises(ConfigError, match=r"^max_amplification = 0.5 must be >= 1\.$"):
        TestTimeMasking(cbm, max_amplification=0.5).fit(tgt[:20], yt[:20])
    with pytest.raises(ConfigError, match=r"^max_masked = -3 must be >= 0; min_gain = nan"):
        TestTimeMasking(cbm, max_masked=-3, min_gain=float("nan")).fit(tgt[:20], yt[:20])
    with pytest.raises(DataError, match=r"unknown concept 'Ink' \(did you mean 'ink'\?\); the "
                       r"concepts are 'veil', 'streaks', 'ink', 'ruler'\.$"):  # fmt: skip
        TestTimeMasking(cbm, mask=["Ink"]).fit(tgt[:20], yt[:20])
    with pytest.raises(DataError, match=r"unknown concept group 'artefact' \(did you mean "
                       r"'artifact'\?\)"):  # fmt: skip
        TestTimeMasking(cbm, mask_groups=["artefact"]).fit(tgt[:20], yt[:20])
    with pytest.raises(NotFittedError):
        TestTimeMasking(cbm).predict(tgt)


def test_multilabel_heads_are_refused(rng):
    X = rng.normal(size=(200, 3))
    Y = np.column_stack([X[:, 0] > 0, X[:, 1] > 0]).astype(int)
    head = ConceptBottleneckClassifier(C=0.1).fit(X, Y)
    with pytest.raises(ConfigError, match="single-label"):
        TestTimeMasking(head).fit(X[:10], Y[:10])


def test_save_load_roundtrip(setting, tmp_path, rng):
    cbm, src, ys, tgt, yt = setting
    idx = _shots(yt, 8, rng)
    ttm = TestTimeMasking(cbm, mask=["ruler"]).fit(tgt.isel(sample=idx), yt[idx])
    path = ttm.save(tmp_path / "adapter.json")
    back = TestTimeMasking.load(path, cbm)
    np.testing.assert_array_equal(back.predict_proba(tgt), ttm.predict_proba(tgt))
    pd.testing.assert_frame_equal(back.report(), ttm.report())
    assert back.report().attrs == ttm.report().attrs
    other = ConceptBottleneckClassifier(C=0.1).fit(src.isel(concept=[0, 1, 2]), ys)
    with pytest.raises(DataError, match="other concepts"):
        TestTimeMasking.load(path, other)
    (tmp_path / "x.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="not a test-time masking file"):
        TestTimeMasking.load(tmp_path / "x.json", cbm)


def test_source_guard_keeps_source_accuracy(setting, rng):
    cbm, src, ys, tgt, yt = setting
    idx = _shots(yt, 8, rng)
    free = TestTimeMasking(cbm, source_scores=src, source_labels=ys).fit(
        tgt.isel(sample=idx), yt[idx]
    )
    # masking the shortcut costs accuracy at the source, where it is predictive
    assert "ink" in [a.concept for a in free.actions_]
    assert free.source_accuracy_[1] < free.source_accuracy_[0]
    guarded = TestTimeMasking(cbm, source_scores=src, source_labels=ys, max_source_drop=0.0)
    guarded.fit(tgt.isel(sample=idx), yt[idx])
    assert "ink" not in [a.concept for a in guarded.actions_]
    assert guarded.source_accuracy_[1] >= guarded.source_accuracy_[0]
    with pytest.raises(ConfigError, match="max_source_drop needs"):
        TestTimeMasking(cbm, max_source_drop=0.0).fit(tgt.isel(sample=idx), yt[idx])


def _protocol_domain(rng, n, *, offset):
    """No shortcut; the target device adds ``offset`` to every image's concept scores."""
    s, y = _domain(rng, n, shortcut=False)
    return s + np.asarray(offset), y


def test_recentre_rule_undoes_a_device_offset(rng):
    from functools import partial

    from conceptlens.masking import greedy_rule, recentre_rule

    src, ys = _protocol_domain(rng, 1000, offset=[0, 0, 0, 0])
    tgt, yt = _protocol_domain(rng, 1000, offset=[1.5, -0.3, 0.0, 0.1])
    cbm = ConceptBottleneckClassifier(C=0.1).fit(src, ys)
    idx = _shots(yt, 8, rng)
    ttm = TestTimeMasking(cbm, rule=recentre_rule, source_scores=src, source_labels=ys)
    ttm.fit(tgt.isel(sample=idx), yt[idx])

    # dense reference: class-balanced source mean minus class-balanced target-shot mean
    def balanced(scores, labels):
        return np.mean([scores.values[labels == c].mean(0) for c in np.unique(labels)], axis=0)

    ref = balanced(src, ys) - balanced(tgt.isel(sample=idx), yt[idx])
    sd = src.values.std(0)
    expect = {c for c, r, s in zip(CONCEPTS, ref, sd, strict=True) if abs(r / s) > 0.5}
    used = {c for c, w in zip(CONCEPTS, np.abs(cbm.coef_.values).sum(0), strict=True) if w}
    acts = {a.concept: a for a in ttm.actions_}
    assert set(acts) == expect & used and "veil" in acts
    for c, a in acts.items():
        j = CONCEPTS.index(c)
        assert a.action == "recentre" and a.scale == 1.0
        np.testing.assert_allclose(a.shift, ref[j], rtol=1e-12)
    assert np.mean(ttm.predict(tgt) == yt) > np.mean(cbm.predict(tgt) == yt) + 0.1
    # composed with the greedy rule: the same as the greedy adapter fitted on, and applied
    # to, the re-centred scores
    greedy = partial(greedy_rule, min_gain=0.0, max_masked=1)
    both = TestTimeMasking(
        cbm, rule=partial(recentre_rule, then=greedy), source_scores=src, source_labels=ys
    ).fit(tgt.isel(sample=idx), yt[idx])
    after = TestTimeMasking(cbm, rule=greedy, source_scores=src, source_labels=ys)
    after.fit(ttm.transform(tgt.isel(sample=idx)), yt[idx])
    assert after.actions_, "greedy_rule with min_gain=0 takes at least one action"
    assert [(a.concept, a.action) for a in both.actions_] == [
        *((a.concept, a.action) for a in ttm.actions_),
        *((a.concept, a.action) for a in after.actions_),
    ]
    np.testing.assert_allclose(
        both.transform(tgt).values, after.transform(ttm.transform(tgt)).values, atol=1e-12
    )


def test_recentre_rule_needs_source_statistics(setting):
    from conceptlens.masking import recentre_rule

    cbm, _src, _ys, tgt, yt = setting
    with pytest.raises(ConfigError, match="recentre_rule needs per-class source means"):
        TestTimeMasking(cbm, rule=recentre_rule).fit(tgt, yt)


def test_rules_by_name_are_the_rule_functions(rng):
    from functools import partial

    from conceptlens.masking import greedy_rule, recentre_rule

    src, ys = _protocol_domain(rng, 800, offset=[0, 0, 0, 0])
    tgt, yt = _protocol_domain(rng, 800, offset=[1.5, -0.8, 0.0, 0.1])
    cbm = ConceptBottleneckClassifier(C=0.1).fit(src, ys)
    idx = _shots(yt, 8, rng)
    shots = tgt.isel(sample=idx)
    kw = {"source_scores": src, "source_labels": ys}
    for name, fn in [
        ("recentre", recentre_rule),
        ("recentre+greedy", partial(recentre_rule, then=partial(greedy_rule, max_masked=5))),
    ]:
        by_name = TestTimeMasking(cbm, rule=name, **kw).fit(shots, yt[idx])
        by_fn = TestTimeMasking(cbm, rule=fn, **kw).fit(shots, yt[idx])
        assert by_name.actions_ == by_fn.actions_ and by_name.actions_
        xr.testing.assert_equal(by_name.shift_, by_fn.shift_)
    # the threshold knob reaches the rule chosen by name
    for thr in (0.1, 5.0):
        by_name = TestTimeMasking(cbm, rule="recentre", recentre_threshold=thr, **kw)
        by_fn = TestTimeMasking(cbm, rule=partial(recentre_rule, recentre_threshold=thr), **kw)
        assert by_name.fit(shots, yt[idx]).actions_ == by_fn.fit(shots, yt[idx]).actions_
    assert (
        not TestTimeMasking(cbm, rule="recentre", recentre_threshold=50.0, **kw)
        .fit(shots, yt[idx])
        .actions_
    )
    with pytest.raises(ConfigError, match=r"^recentre_threshold = -1 must be >= 0\.$"):
        TestTimeMasking(cbm, rule="recentre", recentre_threshold=-1, **kw).fit(shots, yt[idx])
    with pytest.raises(ConfigError, match=r"rule='recentre' re-centres .* pass source_scores"):
        TestTimeMasking(cbm, rule="recentre").fit(shots, yt[idx])
    with pytest.raises(ConfigError, match=r"rule must be one of \['greedy', 'recentre'"):
        TestTimeMasking(cbm, rule="center").fit(shots, yt[idx])


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda p: p.__setitem__("scale", p["scale"][:-1]), r"'scale' has 3 values for 4"),
        (lambda p: p["shift"].__setitem__(0, float("nan")), r"'shift' holds NaN"),
        (lambda p: p.__setitem__("scale", ["x"] * 4), r"'scale' must be a list of numbers"),
        (lambda p: p.pop("n_shots"), r"'n_shots' must be a list of numbers"),
        (lambda p: p.__setitem__("concepts", "veil"), r"'concepts' must be a list of names"),
        (
            lambda p: p["actions"].append({"concept": "rm -rf", "action": "mask"}),
            r"'actions' must be a list of objects",
        ),
    ],
    ids=["short", "nan", "strings", "missing", "not-a-list", "bad-action"],
)
def test_an_edited_adapter_file_is_refused_naming_the_field(setting, tmp_path, rng, edit, match):
    import json

    cbm, _src, _ys, tgt, yt = setting
    idx = _shots(yt, 8, rng)
    path = (
        TestTimeMasking(cbm, mask=["ruler"])
        .fit(tgt.isel(sample=idx), yt[idx])
        .save(tmp_path / "a.json")
    )
    payload = json.loads(path.read_text())
    edit(payload)
    path.write_text(json.dumps(payload))
    with pytest.raises(DataError, match=r"a\.json: field " + match):
        TestTimeMasking.load(path, cbm)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),  # was a RecursionError
        (b"\xff\xfe{}", "not a readable test-time masking file"),  # was a UnicodeDecodeError
        ("{", "not a readable test-time masking file"),
    ],
    ids=["deep", "not-utf8", "truncated"],
)
def test_an_unreadable_adapter_file_is_a_data_error(setting, tmp_path, content, match):
    cbm = setting[0]
    path = tmp_path / "a.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(DataError, match=r"a\.json: .*" + match):
        TestTimeMasking.load(path, cbm)


def test_target_labels_by_sample_name_are_aligned(setting, rng):
    cbm, _src, _ys, tgt, yt = setting
    idx = _shots(yt, 8, rng)
    shots = tgt.isel(sample=idx).assign_coords(sample=[f"t{i}" for i in idx])
    ref = TestTimeMasking(cbm).fit(shots, yt[idx])
    # labels as a Series in another order (a shuffled or merged frame): paired by name
    series = pd.Series(yt[idx], index=shots["sample"].values).sample(frac=1, random_state=0)
    assert not np.array_equal(series.values, yt[idx])
    ttm = TestTimeMasking(cbm).fit(shots, series)
    pd.testing.assert_frame_equal(ttm.report(), ref.report())
    with pytest.raises(DataError, match="lack 1 sample"):
        TestTimeMasking(cbm).fit(shots, series.iloc[1:])
