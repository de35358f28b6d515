from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from conceptlens.exceptions import ConfigError, DataError, UnknownNameError
from conceptlens.spatial import build_atlas, concept_directions, unit_patches
from conceptlens.spatial._atlas import _kmeans_unit


def _patches(tiny, n=10, seed=0):
    s = tiny.image_size
    imgs = np.random.default_rng(seed).integers(0, 256, (n, s, s, 3), dtype=np.uint8)
    return tiny.patch_embeddings(imgs)[0]


def test_spherical_kmeans_recovers_sklearn_partition(rng):
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    centres = rng.normal(size=(4, 16))
    x = np.concatenate([c + 0.05 * rng.normal(size=(30, 16)) for c in centres])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ours = np.argmax(x @ _kmeans_unit(x, 4, seed=0).T, axis=1)
    ref = KMeans(4, n_init=5, random_state=0).fit_predict(x)
    assert adjusted_rand_score(ours, ref) == 1.0


def test_atlas_links_and_wins_against_brute_force(tiny, toy_bank):
    P = _patches(tiny)
    atlas = build_atlas(tiny, P, toy_bank, n_prototypes=3, top_fraction=0.5)
    assert len(atlas) == 9 and atlas.concept_names == ["red_dots", "ruler", "irregular_border"]
    assert atlas.names[:3] == ["red_dots/0", "red_dots/1", "red_dots/2"]
    np.testing.assert_allclose(np.linalg.norm(atlas.vectors, axis=1), 1, atol=1e-5)
    U = unit_patches(P)
    n = len(U)
    for k in range(len(atlas)):
        cos = U @ atlas.vectors[k]  # (n, gh, gw)
        i, y, x = np.unravel_index(np.argmax(cos), cos.shape)
        assert (atlas.source_sample[k], atlas.source_y[k], atlas.source_x[k]) == (i, y, x)
        assert atlas.source_cosine[k] == pytest.approx(cos.max(), abs=1e-5)
    # every image has exactly one winning prototype per concept
    act = atlas.activations(P).values
    np.testing.assert_allclose(act, (U @ atlas.vectors.T).max(axis=(1, 2)), atol=1e-5)
    for c in atlas.concept_names:
        idx = [atlas.names.index(q) for q in atlas.of_concept(c)]
        assert atlas.wins[idx].sum() == n
        np.testing.assert_array_equal(
            atlas.wins[idx], np.bincount(np.argmax(act[:, idx], axis=1), minlength=3)
        )
    assert atlas.info["alive"] == int((atlas.wins > 0).sum())
    cmaps = atlas.concept_maps(P)
    assert cmaps.dims == ("sample", "concept", "y", "x")
    sim = np.einsum("nhwd,pd->nphw", U, atlas.vectors)
    np.testing.assert_allclose(cmaps.sel(concept="ruler").values, sim[:, 3:6].max(1), atol=1e-5)
    table = atlas.table()
    assert table.sizes["prototype"] == 9 and str(table.source_id.values[0]).startswith("img")


def test_candidates_are_the_most_concept_like_patches(tiny, toy_bank):
    """With M = 1 and the minimum 4 candidates, the prototype is their normalised mean."""
    P = _patches(tiny, n=6, seed=2)
    atlas = build_atlas(tiny, P, toy_bank, n_prototypes=1, top_fraction=1e-9, reseed=False)
    U = unit_patches(P).reshape(-1, P.shape[-1])
    w, names, _ = concept_directions(tiny, toy_bank)
    for j in range(len(names)):
        top = U[np.argsort(-(U @ w[j]), kind="stable")[:4]]
        ref = top.sum(0) / np.linalg.norm(top.sum(0))
        np.testing.assert_allclose(atlas.vectors[j], ref, atol=1e-5)


def test_collapse_guard_reseeds_dead_prototypes(tiny, toy_bank):
    P = _patches(tiny, n=8, seed=1)
    labels = np.zeros((8, 3), bool)
    labels[:3] = True  # each concept present on 3 images
    labels[5, 1] = True
    raw = build_atlas(tiny, P, toy_bank, n_prototypes=3, concept_labels=labels, reseed=False)
    fixed = build_atlas(tiny, P, toy_bank, n_prototypes=3, concept_labels=labels)
    assert raw.info["alive"] == raw.info["alive_before_reseed"] == int((raw.wins > 0).sum())
    assert fixed.info["alive"] == 9, fixed.info
    assert fixed.info["reseeded"] >= 9 - fixed.info["alive_before_reseed"]
    # wins are counted only on images where the concept is present
    for j, c in enumerate(fixed.concept_names):
        idx = [fixed.names.index(q) for q in fixed.of_concept(c)]
        assert fixed.wins[idx].sum() == labels[:, j].sum()


def test_more_prototypes_than_images_keeps_some_dead(tiny, toy_bank):
    P = _patches(tiny, n=4, seed=3)
    labels = np.zeros((4, 3), bool)
    labels[0] = True
    atlas = build_atlas(tiny, P, toy_bank, n_prototypes=3, concept_labels=labels)
    # one image per concept: only one prototype per concept can win
    assert atlas.info["alive"] == 3
    assert repr(atlas).startswith("PrototypeAtlas(9 prototypes, 3 concepts, 3 win")


def test_errors(tiny, toy_bank):
    P = _patches(tiny, n=3)
    atlas = build_atlas(tiny, P, toy_bank, n_prototypes=1)
    with pytest.raises(UnknownNameError, match="unknown concept 'veil'"):
        atlas.of_concept("veil")
    with pytest.raises(UnknownNameError, match=r"\['veil'\] of the bank are missing"):
        atlas.check_concepts(["ruler", "veil"])
    with pytest.raises(UnknownNameError, match="unknown prototype"):
        atlas.drop(["ruler/7"])
    assert atlas.drop(["ruler/0"]).names == ["red_dots/0", "irregular_border/0"]
    with pytest.raises(ConfigError):
        build_atlas(tiny, P, toy_bank, n_prototypes=0)
    with pytest.raises(DataError, match=r"concept_labels must have shape \(3, 3\)"):
        build_atlas(tiny, P, toy_bank, concept_labels=np.ones((3, 2)))
    with pytest.raises(DataError, match="'ruler' is present in no training image"):
        build_atlas(tiny, P, toy_bank, concept_labels=np.array([[1, 0, 1]] * 3))
    with pytest.raises(DataError, match="do not match the atlas"):
        atlas.similarity(np.zeros((1, 2, 2, P.shape[-1]), np.float32) + 1)


def test_prototypes_on_masks_uses_the_linked_patch(tiny, toy_bank):
    from conceptlens.spatial import prototypes_on_masks

    P = _patches(tiny, n=5, seed=4)
    atlas = build_atlas(tiny, P, toy_bank, n_prototypes=2)
    s = atlas.image_size
    gh, gw = atlas.grid
    ph, pw = s // gh, s // gw
    masks = np.zeros((5, s, s), bool)
    k = 3
    i, y, x = atlas.source_sample[k], atlas.source_y[k], atlas.source_x[k]
    masks[i, y * ph : (y + 1) * ph, x * pw : x * pw + pw // 2] = True  # half the patch
    assert atlas.names[k] in prototypes_on_masks(atlas, masks, min_overlap=0.5)
    assert atlas.names[k] not in prototypes_on_masks(atlas, masks, min_overlap=0.75)
    with pytest.raises(DataError, match="masks must be"):
        prototypes_on_masks(atlas, masks[:, :4])


def test_names_typos_and_bare_strings(tiny, toy_bank):
    atlas = build_atlas(tiny, _patches(tiny, n=3), toy_bank, n_prototypes=2)
    with pytest.raises(UnknownNameError, match="'rular' \\(did you mean 'ruler'\\?\\)"):
        atlas.of_concept("rular")
    with pytest.raises(UnknownNameError, match="'rular/0' \\(did you mean 'ruler/0'\\?\\)"):
        atlas.drop(["rular/0"])
    # one bare name is one name, not its characters
    assert "ruler/0" not in atlas.drop("ruler/0").names
    assert atlas.drop(["ruler/0", "ruler/0"]).names == atlas.drop("ruler/0").names
    with pytest.raises(DataError, match="leave the atlas empty"):
        atlas.drop(atlas.names)
    assert atlas.drop([]).names == atlas.names  # nothing to drop (a pipeline found none)


@pytest.mark.parametrize("m", [2.7, True, "3", 0])
def test_n_prototypes_must_be_a_positive_int(tiny, toy_bank, m):
    with pytest.raises(ConfigError, match="n_prototypes must be an int >= 1"):
        build_atlas(tiny, _patches(tiny, n=2), toy_bank, n_prototypes=m)


def test_more_prototypes_than_patches_is_refused_before_any_work(tiny, toy_bank):
    P = _patches(tiny, n=2)
    n_patches = 2 * P.shape[1] * P.shape[2]
    # 10**9 prototypes would need terabytes; the check comes first
    for m in (n_patches + 1, 10**9):
        with pytest.raises(ConfigError, match=rf"n_prototypes={m} but concept .* {n_patches} "):
            build_atlas(tiny, P, toy_bank, n_prototypes=m)
    # exactly as many as patches works and gives distinct prototypes
    atlas = build_atlas(tiny, P, toy_bank, n_prototypes=n_patches, reseed=False)
    v = atlas.vectors[: len(atlas) // 3]
    assert len(np.unique(np.round(v, 5), axis=0)) > 1


def test_concept_labels_must_be_binary_and_are_paired_by_sample(tiny, toy_bank):
    P = _patches(tiny, n=4, seed=5)
    lab = np.ones((4, 3), int)
    for bad in (lab * 2, lab - 2):
        with pytest.raises(DataError, match="concept_labels must be bool or 0/1"):
            build_atlas(tiny, P, toy_bank, n_prototypes=1, concept_labels=bad)
    names = ["red_dots", "ruler", "irregular_border"]
    ids = ["a", "b", "c", "d"]
    lab = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], bool)
    da = xr.DataArray(lab, dims=("sample", "concept"), coords={"sample": ids, "concept": names})
    ref = build_atlas(tiny, P, toy_bank, n_prototypes=1, concept_labels=lab, sample_ids=ids)
    shuffled = da.isel(sample=[3, 1, 0, 2])
    got = build_atlas(tiny, P, toy_bank, n_prototypes=1, concept_labels=shuffled, sample_ids=ids)
    np.testing.assert_array_equal(got.vectors, ref.vectors)
    with pytest.raises(DataError, match=r"concept_labels lack the sample\(s\) \['d'\]"):
        build_atlas(
            tiny,
            P,
            toy_bank,
            n_prototypes=1,
            concept_labels=da.isel(sample=[0, 1, 2, 2]),
            sample_ids=ids,
        )
    with pytest.raises(DataError, match=r"sample_ids repeat \['a'\]"):
        build_atlas(tiny, P, toy_bank, n_prototypes=1, sample_ids=["a", "a", "c", "d"])


def test_prototypes_on_masks_refuses_mispaired_or_fuzzy_masks(tiny, toy_bank):
    from conceptlens.spatial import prototypes_on_masks

    P = _patches(tiny, n=5, seed=4)
    ids = [f"case{i}" for i in range(5)]
    atlas = build_atlas(tiny, P, toy_bank, n_prototypes=2, sample_ids=ids)
    s = atlas.image_size
    gh, gw = atlas.grid
    ph, pw = s // gh, s // gw
    masks = np.zeros((5, s, s), bool)
    k = 3
    i, y, x = atlas.source_sample[k], atlas.source_y[k], atlas.source_x[k]
    masks[i, y * ph : (y + 1) * ph, x * pw : (x + 1) * pw] = True
    with pytest.raises(DataError, match=r"exactly 5"):
        prototypes_on_masks(atlas, np.concatenate([masks, masks]))
    with pytest.raises(DataError, match="masks must be bool or 0/1"):
        prototypes_on_masks(atlas, masks * 0.3)
    # a DataArray of masks is matched by sample id, whatever its order
    da = xr.DataArray(masks, dims=("sample", "y", "x"), coords={"sample": ids})
    order = [4, 2, 0, 3, 1]
    assert prototypes_on_masks(atlas, da.isel(sample=order)) == prototypes_on_masks(atlas, masks)
    assert atlas.names[k] in prototypes_on_masks(atlas, da.isel(sample=order))
    with pytest.raises(DataError, match=r"masks lack the sample\(s\) \['case1'\]"):
        prototypes_on_masks(atlas, da.isel(sample=[0, 0, 2, 3, 4]))


def test_concept_labels_frame_indexed_by_sample_id_is_paired(tiny, toy_bank):
    import pandas as pd

    P = _patches(tiny, n=4, seed=5)
    ids = ["a", "b", "c", "d"]
    names = ["red_dots", "ruler", "irregular_border"]
    lab = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]])
    ref = build_atlas(tiny, P, toy_bank, n_prototypes=1, concept_labels=lab, sample_ids=ids)
    frame = pd.DataFrame(lab, index=ids, columns=names).iloc[[3, 1, 0, 2]]
    got = build_atlas(tiny, P, toy_bank, n_prototypes=1, concept_labels=frame, sample_ids=ids)
    np.testing.assert_array_equal(got.vectors, ref.vectors)
    with pytest.raises(DataError, match=r"lack the sample\(s\) \['c'\]"):
        build_atlas(
            tiny, P, toy_bank, n_prototypes=1, concept_labels=frame.iloc[:3], sample_ids=ids
        )


def test_reseeding_stops_when_no_image_is_left(tiny, toy_bank, monkeypatch):
    """A concept seen on k images can have at most k winners; with M >> k the re-seeding
    loop must stop once every image has seeded a prototype, not run M rounds (each a
    pass over all training patches)."""
    import conceptlens.spatial._atlas as mod

    P = _patches(tiny, n=3, seed=6)
    calls = []
    real = mod._max_cos
    monkeypatch.setattr(mod, "_max_cos", lambda *a: calls.append(1) or real(*a))
    m = 40
    atlas = build_atlas(tiny, P, toy_bank, n_prototypes=m)
    assert atlas.info["alive"] <= 3 * 3  # at most one winner per image and concept
    # per concept: the first activations, then at most one round per image (3)
    assert len(calls) <= 3 * (1 + 3)
