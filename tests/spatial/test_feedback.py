from __future__ import annotations

import numpy as np
import pytest

from conceptlens.exceptions import ConfigError, DataError
from conceptlens.spatial import (
    PrototypeClassifier,
    build_atlas,
    importance_map,
    pool_to_grid,
    region_feedback,
    unit_patches,
)


@pytest.fixture(scope="module")
def model(tiny, toy_bank):
    s = tiny.image_size
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (36, s, s, 3), dtype=np.uint8)
    P = tiny.patch_embeddings(imgs)[0]
    atlas = build_atlas(tiny, P, toy_bank, n_prototypes=2, top_fraction=0.2)
    act = (unit_patches(P) @ atlas.vectors.T).max(axis=(1, 2))
    y = np.where(act[:, 2] > np.median(act[:, 2]), "malignant", "benign")
    labels = rng.random((36, 3)) > 0.5
    clf = PrototypeClassifier(atlas=atlas, C=1.0).fit(P, y, concept_labels=labels)
    return clf, P


def test_importance_map_semantics():
    a = importance_map((4, 6), positive=[(0, 0, 3, 2)], negative=np.eye(4, 6, dtype=bool))
    assert a[0, 1] == 1.0 and a[3, 5] == pytest.approx(0.2) and a[1, 1] == 0.0
    assert a[0, 0] == 0.0  # negative wins over positive
    assert (importance_map(5) == 1).all()
    np.testing.assert_allclose(importance_map(4, positive=(0, 0, 4, 4), alpha=0.5), 1)


def test_bad_regions_name_the_sample():
    with pytest.raises(DataError, match=r"sample 'case7': positive box \(0, 0, 9, 2\) is outside"):
        importance_map(8, positive=(0, 0, 9, 2), sample="case7")
    with pytest.raises(DataError, match="sample 'case7': negative mask is empty"):
        importance_map(8, negative=np.zeros((8, 8), bool), sample="case7")
    with pytest.raises(DataError, match="mask has shape"):
        importance_map(8, negative=np.ones((4, 4), bool))
    with pytest.raises(ConfigError):
        importance_map(8, alpha=1.5)


def test_a_bare_mask_of_any_dtype_is_one_region():
    # a 0/1 uint8 mask (as read from a PNG) was split into rows and refused as "boxes"
    mask = np.zeros((8, 8), np.uint8)
    mask[:3, :5] = 1
    np.testing.assert_array_equal(
        importance_map(8, negative=mask), importance_map(8, negative=mask.astype(bool))
    )
    assert importance_map(8, negative=mask)[:3, :5].max() == 0.0
    # an (n, 4) array is still n boxes
    boxes = np.array([[0, 0, 2, 2], [4, 4, 8, 8]])
    np.testing.assert_array_equal(
        importance_map(8, negative=boxes), importance_map(8, negative=[(0, 0, 2, 2), (4, 4, 8, 8)])
    )


def test_pool_to_grid_is_the_block_mean(rng):
    a = rng.random((2, 8, 12))
    ref = np.array(
        [
            [
                [a[n, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4].mean() for j in range(3)]
                for i in range(2)
            ]
            for n in range(2)
        ]
    )
    np.testing.assert_allclose(pool_to_grid(a, (2, 3)), ref, rtol=1e-6)
    np.testing.assert_allclose(pool_to_grid(a, (3, 5)).mean(), a.mean(), rtol=0.05)


def test_no_feedback_reproduces_the_model(model):
    clf, P = model
    res = region_feedback(clf, P[:5])
    np.testing.assert_allclose(res.proba.values, clf.predict_proba(P[:5]), atol=1e-9)
    np.testing.assert_array_equal(res.prediction.values, clf.predict(P[:5]).astype(str))
    np.testing.assert_allclose(res.proba.values, res.proba_before.values)


def test_feedback_against_brute_force(model):
    clf, P = model
    s = clf.atlas.image_size
    ph = s // clf.atlas.grid[0]
    U = unit_patches(P[:4])
    sim = np.einsum("nhwd,pd->nphw", U, clf.atlas.vectors)
    # negative box over the top-left patch
    res = region_feedback(clf, P[:4], negative=[(0, 0, ph, ph)])
    ref = sim.copy()
    ref[:, :, 0, 0] = 0.0
    np.testing.assert_allclose(res.activation.values, ref.max(axis=(2, 3)), atol=1e-5)
    # positive box over the first patch row: others x alpha
    res = region_feedback(clf, P[:4], positive=[(0, 0, s, ph)], alpha=0.3)
    ref = sim * 0.3
    ref[:, :, 0, :] = sim[:, :, 0, :]
    np.testing.assert_allclose(res.activation.values, ref.max(axis=(2, 3)), atol=1e-5)
    np.testing.assert_allclose(
        res.proba.values, clf.proba_from_activations(ref.max(axis=(2, 3))), atol=1e-6
    )


def test_excluding_the_best_patch_lowers_that_evidence(model):
    clf, P = model
    s = clf.atlas.image_size
    gh, gw = clf.atlas.grid
    sim = clf.atlas.similarity(P[:1]).values[0, 0]
    y, x = np.unravel_index(np.argmax(sim), sim.shape)
    box = (x * s // gw, y * s // gh, (x + 1) * s // gw, (y + 1) * s // gh)
    res = region_feedback(clf, P[:1], negative=[box])
    assert res.activation.values[0, 0] < sim.max()
    assert res.importance.values[0, y, x] == 0


def test_rejection_uses_the_typical_absent_value(model):
    clf, P = model
    res = region_feedback(clf, P[:3], reject=["ruler"])
    for q in clf.atlas.of_concept("ruler"):
        np.testing.assert_allclose(
            res.activation.sel(prototype=q).values, float(clf.typical_absent_.sel(prototype=q))
        )
    other = clf.atlas.of_concept("red_dots")
    np.testing.assert_allclose(
        res.activation.sel(prototype=other).values,
        clf.activations(P[:3]).sel(prototype=other).values,
        atol=1e-6,
    )
    assert res.attrs["reject"] == ["ruler"]


def test_feedback_errors(model):
    clf, P = model
    s = clf.atlas.image_size
    with pytest.raises(DataError, match=r"sample 'b'.*outside"):
        region_feedback(clf, P[:2], negative=[(0, 0, s + 1, 4)], sample_ids=["b", "c"])
    with pytest.raises(DataError, match="importance map is"):
        region_feedback(clf, P[:1], importance=np.ones((s + 2, s + 2)))
    with pytest.raises(ConfigError, match="either"):
        region_feedback(clf, P[:1], importance=np.ones((s, s)), negative=[(0, 0, 1, 1)])
    with pytest.raises(Exception, match="unknown concept 'veil'"):
        region_feedback(clf, P[:1], reject=["veil"])
    with pytest.raises(DataError, match="the patch embeddings hold 0 images"):
        clf.predict(P[:0])
    unlabelled = PrototypeClassifier(atlas=clf.atlas, C=1.0).fit(P, clf.predict(P).astype(str))
    with pytest.raises(ConfigError, match="concept_labels"):
        region_feedback(unlabelled, P[:1], reject=["ruler"])


def test_masks_must_be_binary_and_reject_takes_a_bare_name(model):
    clf, P = model
    s = clf.atlas.image_size
    fuzzy = np.full((s, s), 0.3)
    with pytest.raises(DataError, match=r"sample 'x': the negative mask must be bool or 0/1"):
        importance_map(s, negative=fuzzy, sample="x")
    # 0/1 and 0/255 masks of any dtype mean the same as the bool mask
    m = np.zeros((s, s), bool)
    m[: s // 2] = True
    ref = importance_map(s, negative=m)
    for same in (m.astype(float), m.astype(np.uint8) * 255):
        np.testing.assert_array_equal(importance_map(s, negative=same), ref)
    bare = region_feedback(clf, P[:2], reject="ruler")
    listed = region_feedback(clf, P[:2], reject=["ruler"])
    np.testing.assert_array_equal(bare.activation.values, listed.activation.values)
    assert bare.attrs["reject"] == ["ruler"]


def test_labelled_importance_maps_are_paired_by_sample_id(model):
    import xarray as xr

    clf, P = model
    s = clf.atlas.image_size
    rng = np.random.default_rng(3)
    maps = (rng.random((3, s, s)) > 0.5).astype(np.float32)
    ids = ["a", "b", "c"]
    ref = region_feedback(clf, P[:3], importance=maps, sample_ids=ids)
    da = xr.DataArray(maps, dims=("sample", "y", "x"), coords={"sample": ids})
    got = region_feedback(clf, P[:3], importance=da.isel(sample=[2, 0, 1]), sample_ids=ids)
    np.testing.assert_array_equal(got.activation.values, ref.activation.values)
    with pytest.raises(ConfigError, match="need sample_ids="):
        region_feedback(clf, P[:3], importance=da)
    with pytest.raises(DataError, match=r"importance maps lack the sample\(s\) \['c'\]"):
        region_feedback(clf, P[:3], importance=da.isel(sample=[0, 1, 1]), sample_ids=ids)
    with pytest.raises(ConfigError, match="size must be a positive int"):
        importance_map(96.5)
