from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import xarray as xr

from conceptlens.exceptions import ConfigError, DataError
from conceptlens.spatial import concept_maps, upsample


def _images(n, s, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, s, s, 3), dtype=np.uint8)


@pytest.mark.parametrize("mode", ["cosine", "relative"])
def test_maps_match_dense_cosine(tiny, toy_bank, mode):
    s = tiny.image_size
    imgs = _images(3, s)
    maps = concept_maps(tiny, imgs, toy_bank, mode=mode)
    patches, grid = tiny.patch_embeddings(imgs)
    assert maps.dims == ("sample", "concept", "y", "x")
    assert maps.shape == (3, 3, *grid)
    assert list(maps.concept.values) == ["red_dots", "ruler", "irregular_border"]
    assert list(maps.concept_group.values) == ["colour", "artifact", "morphology"]
    # independent reference: torch cosine of each patch with each concept's prompt ensemble
    p = torch.from_numpy(patches)
    for j, concept in enumerate(toy_bank.concepts):
        t = F.normalize(torch.from_numpy(tiny.encode_text(list(concept.prompts))), dim=-1)
        t = F.normalize(t.mean(0), dim=0)
        ref = F.cosine_similarity(p, t.view(1, 1, 1, -1), dim=-1)
        if mode == "relative":
            r = F.normalize(torch.from_numpy(tiny.encode_text(list(toy_bank.reference_prompts))))
            r = F.normalize(r.mean(0), dim=0)
            ref = ref - F.cosine_similarity(p, r.view(1, 1, 1, -1), dim=-1)
        np.testing.assert_allclose(maps.values[:, j], ref.numpy(), atol=1e-5)


def test_precomputed_patches_give_the_same_maps(tiny, toy_bank):
    imgs = _images(2, tiny.image_size, seed=1)
    patches, _ = tiny.patch_embeddings(imgs)
    a = concept_maps(tiny, imgs, toy_bank)
    b = concept_maps(tiny, imgs, toy_bank, patches=patches * 3.0)  # scale must not matter
    np.testing.assert_allclose(a.values, b.values, atol=1e-6)


def test_image_size_mismatch_names_the_sample(tiny, toy_bank):
    s = tiny.image_size
    imgs = [_images(1, s)[0], _images(1, s + 8)[0]]
    with pytest.raises(DataError, match=r"sample 'img000001'.*differs from the backbone"):
        concept_maps(tiny, imgs, toy_bank)
    maps = concept_maps(tiny, imgs, toy_bank, resize=True)
    assert maps.sizes["sample"] == 2


def test_bad_mode(tiny, toy_bank):
    with pytest.raises(ConfigError, match="mode"):
        concept_maps(tiny, _images(1, tiny.image_size), toy_bank, mode="dot")


def test_upsample_bilinear_matches_torch_and_keeps_coords():
    rng = np.random.default_rng(0)
    m = xr.DataArray(
        rng.normal(size=(2, 3, 4, 4)).astype(np.float32),
        dims=("sample", "concept", "y", "x"),
        coords={"sample": ["a", "b"], "concept": ["c0", "c1", "c2"]},
        attrs={"mode": "cosine"},
    )
    up = upsample(m, (8, 12))
    assert up.shape == (2, 3, 8, 12) and up.attrs["mode"] == "cosine"
    assert list(up.sample.values) == ["a", "b"]
    # an up-sampled constant stays constant; bilinear means are preserved on a 2x grid
    const = upsample(xr.full_like(m, 2.0), 16)
    np.testing.assert_allclose(const.values, 2.0)
    # independent reference: bilinear (half-pixel centres) of a 1D ramp along x
    ramp = xr.DataArray(np.tile(np.arange(4.0), (4, 1)), dims=("y", "x"))
    row = upsample(ramp, (4, 8)).values[0]
    centres = (np.arange(8) + 0.5) / 2 - 0.5
    np.testing.assert_allclose(row, np.clip(centres, 0, 3), atol=1e-6)


def test_upsample_rejects_bad_input():
    with pytest.raises(DataError):
        upsample(xr.DataArray(np.zeros((2, 2)), dims=("a", "b")), 4)
    with pytest.raises(ConfigError):
        upsample(xr.DataArray(np.zeros((2, 2)), dims=("y", "x")), 0)


def test_synthderm_lit_ruler_maps_point_at_the_ruler(lit, derm):
    """The ruler's map maximum lands on the ruler far more often than chance."""
    from conceptlens.spatial import pointing_game

    present = derm.concept("ruler").astype(bool)
    assert present.sum() >= 8
    maps = concept_maps(lit, derm.images[present], "synthderm")
    assert maps.shape[-2:] == (12, 12)
    up = upsample(maps.sel(concept="ruler"), 96)
    masks = derm.artifact_masks["ruler"][present]
    hits = pointing_game(up, masks)
    chance = masks.mean()
    assert hits.mean() >= 0.8 > 2 * chance


@pytest.mark.parametrize("tokens", ["value", "self"])
def test_maps_from_dense_tokens(tiny, toy_bank, tokens):
    imgs = _images(2, tiny.image_size)
    maps = concept_maps(tiny, imgs, toy_bank, tokens=tokens)
    dense, _ = tiny.patch_embeddings(imgs, tokens=tokens, normalize=True)
    assert maps.attrs["tokens"] == tokens
    np.testing.assert_allclose(
        maps.values, concept_maps(tiny, imgs, toy_bank, patches=dense).values, atol=1e-6
    )
    assert not np.allclose(maps.values, concept_maps(tiny, imgs, toy_bank).values, atol=1e-3)


def test_shifted_maps_on_the_finer_grid(tiny, toy_bank):
    imgs = _images(2, tiny.image_size, seed=4)
    plain = concept_maps(tiny, imgs, toy_bank)
    fine = concept_maps(tiny, imgs, toy_bank, shifts=2)
    gh, gw = plain.shape[-2:]
    assert fine.shape == (2, 3, 2 * gh, 2 * gw)
    assert fine.attrs["shifts"] == 2 and plain.attrs["shifts"] == 1
    patches, grid = tiny.patch_embeddings(imgs, shifts=2)
    assert grid == (2 * gh, 2 * gw)
    given = concept_maps(tiny, imgs, toy_bank, patches=patches)
    np.testing.assert_allclose(fine.values, given.values, atol=1e-6)
    assert not np.allclose(fine.values[..., ::2, ::2], plain.values, atol=1e-3)
    with pytest.raises(ConfigError, match="shifts=3"):
        concept_maps(tiny, imgs, toy_bank, shifts=3)


def test_zoomed_maps_on_the_finer_grid(tiny, toy_bank):
    """concept_maps(zoom=2) is the maps of patch_embeddings(zoom=2): each tile (a, b) of
    the map is the plain map of crop (a, b) of an image already 2 S pixels wide."""
    s = tiny.image_size
    big = _images(2, 2 * s, seed=5)
    fine = concept_maps(tiny, big, toy_bank, zoom=2, resize=True)
    crop = np.ascontiguousarray(big[:, s:, :s])  # tile (1, 0)
    plain = concept_maps(tiny, crop, toy_bank)
    gh, gw = plain.shape[-2:]
    assert fine.shape == (2, 3, 2 * gh, 2 * gw)
    assert fine.attrs["zoom"] == 2 and plain.attrs["zoom"] == 1
    assert fine.attrs["zoom_overlap"] == 0 and fine.attrs["shifts"] == 1
    np.testing.assert_allclose(fine.values[..., gh:, :gw], plain.values, atol=1e-5)
    imgs = _images(2, s, seed=6)
    patches, _ = tiny.patch_embeddings(imgs, zoom=2)
    given = concept_maps(tiny, imgs, toy_bank, patches=patches)
    np.testing.assert_allclose(
        concept_maps(tiny, imgs, toy_bank, zoom=2).values, given.values, atol=1e-6
    )
    assert given.attrs["zoom"] == "given"
    with pytest.raises(ConfigError, match="zoom must be a positive int"):
        concept_maps(tiny, imgs, toy_bank, zoom=0)
    with pytest.raises(ConfigError, match="cannot be combined"):
        concept_maps(tiny, imgs, toy_bank, zoom=2, shifts=2)


@pytest.mark.parametrize(
    ("shape", "hint"),
    [
        ((2, None, None), "np.repeat"),
        ((2, None, None, 1), "np.repeat"),
        ((2, None, None, 4), ":3"),
    ],
)
def test_non_rgb_images_are_refused_with_the_fix(tiny, toy_bank, shape, hint):
    s = tiny.image_size
    imgs = np.zeros(tuple(s if v is None else v for v in shape), np.uint8)
    with pytest.raises(DataError, match=rf"not RGB.*{hint}"):
        concept_maps(tiny, imgs, toy_bank)
    with pytest.raises(DataError, match=r"sample 'img000001'.*not RGB"):
        concept_maps(tiny, [_images(1, s)[0], imgs[1]], toy_bank)


def test_given_patches_are_checked(tiny, toy_bank):
    imgs = _images(2, tiny.image_size, seed=1)
    patches, _ = tiny.patch_embeddings(imgs)
    with pytest.raises(DataError, match="patches hold 3 images but images has 2"):
        concept_maps(tiny, imgs, toy_bank, patches=np.concatenate([patches, patches[:1]]))
    bad = patches.copy()
    bad[1, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match=r"NaN.*position \[1\]"):
        concept_maps(tiny, None, toy_bank, patches=bad)
    with pytest.raises(DataError, match="all-zero"):
        concept_maps(tiny, None, toy_bank, patches=np.zeros_like(patches))


@pytest.mark.parametrize("size", [96.5, "96", (0, 4), (4,), True, (4, 2.0)])
def test_upsample_refuses_bad_sizes(size):
    m = xr.DataArray(np.zeros((2, 2)), dims=("y", "x"))
    with pytest.raises(ConfigError, match="size must be a positive int"):
        upsample(m, size)


def test_upsample_refuses_rgba_guides():
    m = xr.DataArray(np.zeros((2, 2, 2)), dims=("sample", "y", "x"))
    with pytest.raises(DataError, match=r"4 channels.*\[\.\.\., :3\]"):
        upsample(m, 8, method="guided", image=np.zeros((2, 8, 8, 4), np.uint8))


def test_lists_of_pil_images_in_any_mode_are_mapped(tiny, toy_bank):
    """The backbone converts PIL images to RGB itself, so grey and RGBA PIL images are
    fine (only grey / RGBA arrays are refused)."""
    from PIL import Image

    s = tiny.image_size
    imgs = _images(2, s, seed=3)
    pil = [Image.fromarray(imgs[0]), Image.fromarray(imgs[1]).convert("L")]
    pil.append(Image.fromarray(imgs[0]).convert("RGBA"))
    maps = concept_maps(tiny, pil, toy_bank)
    ref = concept_maps(tiny, imgs[:1], toy_bank)
    assert maps.sizes["sample"] == 3
    np.testing.assert_allclose(maps.values[[0, 2]], np.repeat(ref.values, 2, axis=0), atol=1e-5)
    with pytest.raises(DataError, match=r"sample 'img000000': image size \(8, 8\)"):
        concept_maps(tiny, [Image.fromarray(imgs[0]).resize((8, 8))], toy_bank)
