"""End to end on SynthDerm with synthderm-lit: evidence follows the ground-truth masks."""

from __future__ import annotations

import numpy as np
import pytest

from conceptlens.spatial import (
    PrototypeClassifier,
    build_atlas,
    prototypes_on_masks,
    region_feedback,
)


@pytest.fixture(scope="module")
def fitted(lit, derm):
    P = lit.patch_embeddings(derm.images)[0]
    y = np.asarray(derm.class_names)[derm.labels]
    atlas = build_atlas(lit, P, "synthderm", n_prototypes=2, concept_labels=derm.concepts)
    clf = PrototypeClassifier(atlas=atlas, C=0.5).fit(P, y, concept_labels=derm.concepts)
    return clf, P


def test_every_prototype_wins_after_reseeding(fitted, derm):
    """As many prototypes win as the training images allow (a concept seen on one image
    can have only one winning prototype)."""
    clf, _ = fitted
    possible = np.minimum(2, derm.concepts.sum(axis=0)).sum()
    assert possible < 34  # blue-white veil is on a single image of this sample
    assert clf.atlas.info["alive"] == possible


def test_ruler_prototypes_come_from_rulers(fitted, derm):
    clf, _ = fitted
    found = prototypes_on_masks(clf.atlas, derm.artifact_masks["ruler"], min_overlap=0.5)
    assert set(clf.atlas.of_concept("ruler")) <= set(found)
    lesion = prototypes_on_masks(clf.atlas, derm.lesion_mask, min_overlap=0.5)
    assert not set(clf.atlas.of_concept("ruler")) & set(lesion)


def test_excluding_the_ruler_region_removes_ruler_evidence(fitted, derm):
    clf, P = fitted
    has = np.flatnonzero(derm.concept("ruler").astype(bool))
    importance = np.where(derm.artifact_masks["ruler"][has], 0.0, 1.0)
    before = clf.activations(P[has])
    after = region_feedback(clf, P[has], importance=importance).activation
    ruler = clf.atlas.of_concept("ruler")
    drop = (before.sel(prototype=ruler) - after.sel(prototype=ruler)).mean("sample")
    assert (drop > 0.1).all(), drop.values
    # lesion concepts barely move: the ruler mask does not cover the lesion
    lesion = clf.atlas.of_concept("blue_white_veil")
    moved = np.abs(before.sel(prototype=lesion) - after.sel(prototype=lesion)).mean()
    assert float(moved) < float(drop.min()) / 3


def test_refinement_removes_the_removed_prototypes_evidence(fitted):
    clf, P = fitted
    arts = ["ruler", "purple_ink", "dark_corners", "hair", "gel_bubbles"]
    refined = clf.remove_concepts(arts)
    ev = refined.evidence_maps(P[:6])
    assert not {str(c) for c in ev.concept.values} & set(arts)
    rel = refined.reliance(P[:6])
    assert not [q for q in rel.prototype.values if str(q).split("/")[0] in arts]
