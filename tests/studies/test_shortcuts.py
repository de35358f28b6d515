"""concept_audit against direct formulas; find_shortcuts on SynthDerm plantings."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from conceptlens.exceptions import DataError, UnknownNameError
from conceptlens.heads import ConceptBottleneckClassifier
from conceptlens.studies import concept_audit, find_shortcuts
from tests.studies._synth import noisy_scores, synthderm_batch, synthderm_config

TRAIN_SITES = ["site_a", "site_b"]

# plantings the finder was not tuned on: (preset, changes, planted (concept, class))
PLANTINGS = {
    "confounded": ("confounded", None, {("purple_ink", "melanoma"), ("ruler", "melanoma")}),
    "hair_on_sk": (
        "iid",
        [
            {"site": "site_a", "hair": 0.05},
            {"site": "site_b", "hair": 0.05},
            {"site": "site_a", "cls": "seborrheic_keratosis", "hair": 0.9},
            {"site": "site_b", "cls": "seborrheic_keratosis", "hair": 0.9},
        ],
        {("hair", "seborrheic_keratosis")},
    ),
    "corners_on_nevus_one_site": (
        "iid",
        [
            {"site": "site_a", "dark_corners": 0.05},
            {"site": "site_a", "cls": "nevus", "dark_corners": 0.9},
        ],
        {("dark_corners", "nevus")},
    ),
    "bubbles_on_melanoma_site_b": (
        "iid",
        [
            {"site": "site_b", "gel_bubbles": 0.05},
            {"site": "site_b", "cls": "melanoma", "gel_bubbles": 0.85},
        ],
        {("gel_bubbles", "melanoma")},
    ),
}


def _fit(scores):
    train = np.isin(scores.site.values, TRAIN_SITES)
    return ConceptBottleneckClassifier(C=0.5).fit(scores[train], scores.label.values[train])


@pytest.fixture(scope="module")
def iid_scores():
    return noisy_scores(synthderm_batch(synthderm_config("iid"), 1500, seed=1))


@pytest.mark.parametrize("name", sorted(PLANTINGS))
def test_planted_shortcuts_rank_first(name):
    preset, plant, planted = PLANTINGS[name]
    scores = noisy_scores(synthderm_batch(synthderm_config(preset, plant), 1500, seed=1))
    df = find_shortcuts(_fit(scores), scores)
    top = set(zip(df["concept"][: len(planted)], df["class"][: len(planted)], strict=True))
    assert top == planted, df.head(5)
    for concept, cls in planted:
        row = df[(df.concept == concept) & (df["class"] == cls)].iloc[0]
        assert row.suspect and row.artifact
        # the class's own ranking starts with its planted concepts
        own = df[df["class"] == cls].concept.tolist()[: len([p for p in planted if p[1] == cls])]
        assert concept in own
    # nothing unplanted is flagged with a lesion concept
    flagged = df[df.suspect]
    assert set(flagged.concept) <= {c for c, _ in planted}


def test_nothing_flagged_on_iid(iid_scores):
    df = find_shortcuts(_fit(iid_scores), iid_scores)
    assert not df.suspect.any(), df.head()
    assert df.suspicion.iloc[0] < 0.1
    assert list(df.columns[:2]) == ["concept", "class"]
    assert df.suspicion.is_monotonic_decreasing


def test_concept_audit_matches_direct_formulas(iid_scores):
    s = iid_scores
    ca = concept_audit(s)
    site = s.site.values
    for concept in ["ruler", "asymmetry"]:
        col = s.sel(concept=concept).values
        truth = s[concept].values
        for v in ["site_a", "site_c"]:
            rows = site == v
            assert float(ca.detection_auroc.sel(concept=concept, site=v)) == pytest.approx(
                roc_auc_score(truth[rows], col[rows])
            )
            assert float(ca.prevalence.sel(concept=concept, site=v)) == pytest.approx(
                truth[rows].mean()
            )
            got = ca.label_association.sel(concept=concept, site=v, **{"class": "melanoma"})
            ref = roc_auc_score(s.label.values[rows] == "melanoma", col[rows])
            assert float(got) == pytest.approx(ref)
        per_site = [
            float(ca.label_association.sel(concept=concept, site=v, **{"class": "melanoma"}))
            for v in ["site_a", "site_b", "site_c"]
        ]
        shift = float(ca.association_shift.sel(concept=concept, **{"class": "melanoma"}))
        assert shift == pytest.approx(max(per_site) - min(per_site))
    assert ca.attrs["backbone_fingerprint"] == "ground-truth+noise"


def test_concept_audit_unannotated_and_errors(iid_scores):
    s = iid_scores.drop_vars("ruler")
    ca = concept_audit(s, by="skin_tone")
    assert np.isnan(ca.detection_auroc.sel(concept="ruler")).all()
    assert ca.detection_auroc.sel(concept="hair", skin_tone="all") > 0.8
    with pytest.raises(UnknownNameError, match=r"'hospital'.*available columns"):
        concept_audit(s, by="hospital")
    with pytest.raises(UnknownNameError, match="available columns"):
        find_shortcuts(_fit(iid_scores), iid_scores, by="hospital")


def test_concept_audit_matches_labels_and_annotations_by_sample_name(iid_scores):
    import pandas as pd

    from conceptlens.masking import concept_annotations

    s = iid_scores.isel(sample=slice(0, 400))
    ref = concept_audit(s, annotations=concept_annotations(s))
    perm = np.random.default_rng(0).permutation(400)
    names = s["sample"].values
    labels = pd.Series(s.label.values, index=names).iloc[perm]
    out = concept_audit(s, labels=labels, annotations=concept_annotations(s).isel(sample=perm))
    for var in ("detection_auroc", "label_association", "association_shift"):
        np.testing.assert_allclose(out[var].values, ref[var].values)
    with pytest.raises(DataError, match=r"annotations are indexed by sample name but lack 1"):
        concept_audit(s, annotations=concept_annotations(s)[1:])


def test_find_shortcuts_needs_two_values_of_by(iid_scores):
    one_site = iid_scores.where(iid_scores.site == "site_a", drop=True)
    # one site: no shift can be measured, and every row read "not suspect"
    with pytest.raises(
        DataError, match=r"compares the values of 'site', but the scores hold only \['site_a'\]"
    ):
        find_shortcuts(_fit(iid_scores), one_site)
