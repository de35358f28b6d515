from __future__ import annotations

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from conceptlens.exceptions import ConfigError, UnknownNameError
from conceptlens.heads import ConceptBottleneckClassifier
from conceptlens.spatial import (
    PrototypeClassifier,
    build_atlas,
    refinement_report,
    unit_patches,
)
from conceptlens.spatial._classifier import _features


@pytest.fixture(scope="module")
def fitted(tiny, toy_bank):
    s = tiny.image_size
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (40, s, s, 3), dtype=np.uint8)
    P = tiny.patch_embeddings(imgs)[0]
    atlas = build_atlas(tiny, P[:30], toy_bank, n_prototypes=2, top_fraction=0.2)
    U = unit_patches(P)
    brute = (U @ atlas.vectors.T).max(axis=(1, 2))
    # labels that depend on two prototypes, so the head has something to find
    score = brute[:, 0] - brute[:, 3]
    y = np.where(score > np.median(score[:30]), "malignant", "benign")
    labels = rng.random((40, 3)) > 0.5
    clf = PrototypeClassifier(atlas=atlas, C=1.0).fit(P[:30], y[:30], concept_labels=labels[:30])
    return clf, P, y, brute, labels


def test_features_are_max_patch_cosines_and_head_matches(fitted):
    clf, P, y, brute, _ = fitted
    np.testing.assert_allclose(clf.activations(P).values, brute, atol=1e-5)
    ref = ConceptBottleneckClassifier(C=1.0).fit(_features(brute[:30], clf.prototypes_), y[:30])
    np.testing.assert_allclose(clf.coef_.values, ref.coef_.values, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        clf.decision_function(P[30:]),
        # numpy in, numpy out (a labelled input would give (sample, class) columns)
        ref.decision_function(_features(brute[30:], clf.prototypes_).values),
        rtol=1e-5,
        atol=1e-5,
    )
    assert clf.coef_.dims == ("class", "prototype")
    assert set(clf.predict(P)) <= {"benign", "malignant"}
    np.testing.assert_allclose(clf.predict_proba(P).sum(axis=1), 1)


def test_reliance_adds_up_to_the_logit(fitted):
    clf, P, *_ = fitted
    rel = clf.reliance(P[30:])
    assert rel.dims == ("sample", "class", "prototype")
    logit = rel.sel({"class": "malignant"}).sum("prototype") + clf.intercept_.sel(
        {"class": "malignant"}
    )
    np.testing.assert_allclose(logit.values, clf.decision_function(P[30:]), atol=1e-6)


def test_evidence_maps_peak_at_the_activation(fitted):
    clf, P, *_ = fitted
    ev = clf.evidence_maps(P[30:33], target="malignant")
    w = clf.coef_.sel({"class": "malignant"}).sel(prototype=ev.prototype.values).values
    assert ev.sizes["prototype"] == int((np.abs(clf.coef_.values).max(0) > 0).sum())
    act = clf.activations(P[30:33]).sel(prototype=ev.prototype.values).values
    peak = np.where(w > 0, ev.max(("y", "x")).values, ev.min(("y", "x")).values) / w
    np.testing.assert_allclose(peak, act, atol=1e-5)
    default = clf.evidence_maps(P[30:33])
    assert list(default.target.values) == [str(t) for t in clf.predict(P[30:33])]


def test_remove_prototypes_refits_only_the_head(fitted):
    clf, P, y, brute, _ = fitted
    top = str(clf.coef_.prototype.values[np.argmax(np.abs(clf.coef_.values).max(0))])
    new = clf.remove_prototypes([top])
    assert top not in new.prototypes_ and top not in new.coef_.prototype.values
    keep = [clf.prototypes_.index(p) for p in new.prototypes_]
    ref = ConceptBottleneckClassifier(C=1.0).fit(
        _features(brute[:30, keep], new.prototypes_), y[:30]
    )
    np.testing.assert_allclose(new.coef_.values, ref.coef_.values, rtol=1e-5, atol=1e-5)
    assert top not in new.evidence_maps(P[30:]).prototype.values
    assert new.atlas is clf.atlas  # atlas untouched, head refitted
    rep = refinement_report(clf, new, P[30:], y[30:])
    assert rep["removed"] == [top] and rep["removed_weight_share"] > 0
    assert set(rep["accuracy"]) == {"before", "after"}
    gone = clf.remove_concepts(["ruler"])
    assert not [p for p in gone.prototypes_ if p.startswith("ruler/")]


def test_typical_absent_is_the_median_where_absent(fitted):
    clf, _, _, brute, labels = fitted
    for j, c in enumerate(clf.atlas.concept_names):
        idx = [clf.prototypes_.index(p) for p in clf.atlas.of_concept(c)]
        ref = np.median(brute[:30][~labels[:30, j]][:, idx], axis=0)
        np.testing.assert_allclose(clf.typical_absent_.values[idx], ref, atol=1e-6)


def test_errors(fitted, toy_bank):
    clf, P, y, *_ = fitted
    with pytest.raises(NotFittedError):
        PrototypeClassifier(atlas=clf.atlas).predict(P)
    with pytest.raises(ConfigError, match="atlas"):
        PrototypeClassifier().fit(P, y)
    with pytest.raises(UnknownNameError, match="unknown concept 'veil'"):
        clf.remove_concepts(["veil"])
    bigger = toy_bank.to_dict()
    bigger["concepts"] = [*bigger["concepts"], {**bigger["concepts"][0], "name": "veil"}]
    bank = type(toy_bank).from_dict(bigger)
    with pytest.raises(UnknownNameError, match=r"concept\(s\) \['veil'\] of the bank are missing"):
        PrototypeClassifier(atlas=clf.atlas, bank=bank, C=1.0).fit(P, y)
    PrototypeClassifier(atlas=clf.atlas, bank=toy_bank, C=1.0).fit(P, y)  # complete bank


def test_concept_labels_as_a_frame_are_read_by_column_name(fitted):
    import pandas as pd

    from conceptlens.exceptions import DataError

    clf, P, y, _, labels = fitted
    names = clf.atlas.concept_names
    frame = pd.DataFrame(labels[:30].astype(int), columns=names)
    # the columns in another order (as a metadata table lists them) are matched by name
    fit = PrototypeClassifier(atlas=clf.atlas, C=1.0).fit(
        P[:30], y[:30], concept_labels=frame[names[::-1]]
    )
    np.testing.assert_allclose(fit.typical_absent_.values, clf.typical_absent_.values)
    with pytest.raises(
        DataError, match=rf"lack column\(s\) for the atlas concept\(s\) \['{names[0]}'\]"
    ):
        PrototypeClassifier(atlas=clf.atlas, C=1.0).fit(
            P[:30], y[:30], concept_labels=frame[names[1:]]
        )
    gaps = frame.astype(float)
    gaps.iloc[4, 1] = np.nan  # a missing annotation was read as "present"
    with pytest.raises(
        DataError, match=rf"1 missing value\(s\) \(NaN\), e.g. image 4, concept '{names[1]}'"
    ):
        PrototypeClassifier(atlas=clf.atlas, C=1.0).fit(P[:30], y[:30], concept_labels=gaps)


def test_refinement_input_errors(fitted):
    from conceptlens.exceptions import DataError

    clf = fitted[0]
    unfitted = PrototypeClassifier(atlas=clf.atlas)
    with pytest.raises(NotFittedError):
        unfitted.remove_concepts(["ruler"])
    # one bare name is one name, not its characters
    assert clf.remove_concepts("ruler").prototypes_ == clf.remove_concepts(["ruler"]).prototypes_
    assert "ruler/0" not in clf.remove_prototypes("ruler/0").prototypes_
    # removing twice is refused, naming what was removed before
    once = clf.remove_prototypes(["ruler/0", "ruler/0"])
    with pytest.raises(DataError, match=r"\['ruler/0'\] were already removed"):
        once.remove_prototypes(["ruler/0"])
    # remove_concepts skips prototypes removed before, refuses a concept with none left
    assert (
        once.remove_concepts(["ruler"]).prototypes_ == clf.remove_concepts(["ruler"]).prototypes_
    )
    with pytest.raises(DataError, match=r"\['ruler'\] have no prototypes left"):
        clf.remove_concepts(["ruler"]).remove_concepts(["ruler"])
    # nothing to remove (e.g. prototypes_on_masks found none): the same classifier
    assert clf.remove_prototypes([]).prototypes_ == clf.prototypes_
    with pytest.raises(UnknownNameError, match="did you mean 'ruler'"):
        clf.remove_concepts(["rular"])


def test_refinement_report_refuses_swapped_or_unrelated_models(fitted, tiny, toy_bank):
    from conceptlens.exceptions import DataError

    clf, P, y, *_ = fitted
    refined = clf.remove_prototypes(["ruler/0"])
    assert refinement_report(clf, refined, P, y)["removed"] == ["ruler/0"]
    with pytest.raises(DataError, match="swap before and after"):
        refinement_report(refined, clf, P, y)
    other_atlas = build_atlas(tiny, P[10:], toy_bank, n_prototypes=2, top_fraction=0.2)
    other = PrototypeClassifier(atlas=other_atlas, C=1.0).fit(P[:30], y[:30])
    with pytest.raises(DataError, match="another atlas"):
        refinement_report(clf, other.remove_prototypes(["ruler/0"]), P, y)


def test_labelled_concept_labels_are_matched_by_id_or_refused(fitted):
    import pandas as pd

    clf, P, y, _, labels = fitted
    names = clf.atlas.concept_names
    ids = [f"s{i}" for i in range(30)]
    frame = pd.DataFrame(labels[:30].astype(int), columns=names, index=ids)
    shuffled = frame.sample(frac=1.0, random_state=0)
    # indexed by id but no ids for X: refused, never paired by position
    with pytest.raises(ConfigError, match=r"carry sample ids .* pass sample_ids="):
        PrototypeClassifier(atlas=clf.atlas, C=1.0).fit(P[:30], y[:30], concept_labels=shuffled)
    fit = PrototypeClassifier(atlas=clf.atlas, C=1.0).fit(
        P[:30], y[:30], concept_labels=shuffled, sample_ids=ids
    )
    np.testing.assert_allclose(fit.typical_absent_.values, clf.typical_absent_.values)
