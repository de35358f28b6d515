"""Zoomed inference (``patch_embeddings(zoom=z)``): tokens that see ``1 / z`` of a patch.

References are built without the library's zooming code: images already ``z S`` pixels
wide cut into tiles with numpy and encoded on the plain grid, and a tower whose tokens
are the mean colour of their patch compared with dense numpy window means of images
upscaled by PIL's bicubic resampling.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conceptlens.backbones._zoom import tile_layout
from conceptlens.exceptions import ConfigError
from tests.backbones._tiny import TIMM_TOK, VIT_AVG, tiny_backbone
from tests.backbones.test_shift import _mean_colour_tower


@pytest.fixture(scope="module", params=["openclip-vit", "timm-vit"])
def bb(request, tmp_path_factory):
    cfg = VIT_AVG if request.param == "openclip-vit" else TIMM_TOK
    return tiny_backbone(tmp_path_factory.mktemp(request.param), cfg, device="cpu")


def _images(size, n=2, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_zoom_1_is_the_plain_grid_and_its_cache(bb, tmp_path):
    imgs = _images(bb.image_size)
    plain, grid = bb.patch_embeddings(imgs)
    same, same_grid = bb.patch_embeddings(imgs, zoom=1)
    assert same_grid == grid
    np.testing.assert_array_equal(same, plain)
    bb.patch_embeddings(imgs, cache=tmp_path)
    before = bb.n_image_encodes
    cached, _ = bb.patch_embeddings(imgs, cache=tmp_path, zoom=1)
    assert bb.n_image_encodes == before  # zoom=1 reads the entries of kind "patch"
    np.testing.assert_array_equal(cached, plain)
    assert {d.name for d in (tmp_path / bb.fingerprint).iterdir() if d.is_dir()} == {"patch"}


@pytest.mark.parametrize("z", [2, 3])
def test_tiles_are_the_towers_tokens_of_the_crops(bb, z):
    """An image already z S pixels wide is not resampled: tile (a, b) of the stitched
    grid is the plain token grid of crop (a, b) of the image."""
    s = bb.image_size
    big = _images(z * s, seed=z)
    fine, grid = bb.patch_embeddings(big, zoom=z)
    gh, gw = bb.patch_embeddings(_images(s, 1))[1]
    assert grid == (z * gh, z * gw) and fine.shape == (2, z * gh, z * gw, bb.embed_dim)
    for a in range(z):
        for b in range(z):
            crop = np.ascontiguousarray(big[:, a * s : (a + 1) * s, b * s : (b + 1) * s])
            ref, _ = bb.patch_embeddings(crop)
            tile = fine[:, a * gh : (a + 1) * gh, b * gw : (b + 1) * gw]
            np.testing.assert_allclose(tile, ref, rtol=1e-5, atol=1e-5)


def test_overlapping_tiles_keep_their_central_tokens(bb):
    """zoom_overlap=o: tiles of S pixels every (g - 2 o) patches of the reflect-padded
    image, each contributing its central (g - 2 o) tokens."""
    s, z = bb.image_size, 2
    g = bb.patch_embeddings(_images(s, 1))[1][0]
    p = s // g
    o = max(v for v in range(1, g // 2) if (z * g) % (g - 2 * v) == 0)
    big = _images(z * s, seed=7)
    fine, grid = bb.patch_embeddings(big, zoom=z, zoom_overlap=o)
    assert grid == (z * g, z * g)
    padded = np.pad(big, ((0, 0), (o * p, o * p), (o * p, o * p), (0, 0)), mode="reflect")
    k = g - 2 * o
    n_tiles = z * g // k
    assert tile_layout((g, g), z, o) == (n_tiles, n_tiles)
    for a in range(n_tiles):
        for b in range(n_tiles):
            crop = np.ascontiguousarray(
                padded[:, a * k * p : a * k * p + s, b * k * p : b * k * p + s]
            )
            ref = bb.patch_embeddings(crop)[0][:, o : g - o, o : g - o]
            got = fine[:, a * k : (a + 1) * k, b * k : (b + 1) * k]
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    plain_tiles = bb.patch_embeddings(big, zoom=z)[0]
    assert not np.allclose(fine, plain_tiles, atol=1e-3)  # context changed the tokens


def _pil_bicubic(x, size):
    """(N, H, W, 3) floats in [0, 1] -> (N, size, size, 3), PIL's bicubic per channel."""
    out = np.empty((len(x), size, size, 3))
    for n in range(len(x)):
        for c in range(3):
            im = Image.fromarray(x[n, :, :, c].astype(np.float32), mode="F")
            out[n, :, :, c] = np.asarray(im.resize((size, size), Image.BICUBIC))
    return out


@pytest.mark.parametrize("z", [2, 4])
def test_zoomed_tokens_see_p_over_z_windows_mean_colour_reference(tmp_path, z):
    """Token (I, J) of the zoomed grid is the mean colour of the p/z-pixel window of cell
    (I, J) of the S x S image, upscaled bicubically (PIL as the independent resampler)."""
    bb = tiny_backbone(tmp_path, VIT_AVG, device="cpu")
    p = _mean_colour_tower(bb)
    s = bb.image_size
    imgs = _images(s, n=3, seed=2)
    mean = np.asarray(bb.config.mean).reshape(1, 1, 1, 3)
    std = np.asarray(bb.config.std).reshape(1, 1, 1, 3)
    up = np.clip(_pil_bicubic(imgs / 255.0, z * s), 0.0, 1.0)
    up = (up - mean) / std  # the tower's input, z S x z S
    g = z * s // p
    # a p-pixel window of the upscaled image is a p/z-pixel window of the image
    ref = up.reshape(3, g, p, g, p, 3).mean(axis=(2, 4))
    fine, grid = bb.patch_embeddings(imgs, zoom=z)
    assert grid == (g, g)
    np.testing.assert_allclose(fine[..., :3], ref, atol=2e-4)
    np.testing.assert_allclose(fine[..., 3:], 0.0, atol=1e-6)
    # and it is not the plain grid repeated: the windows really are smaller
    plain, _ = bb.patch_embeddings(imgs)
    coarse = np.repeat(np.repeat(plain, z, axis=1), z, axis=2)
    assert np.abs(fine - coarse).max() > 0.1


@pytest.mark.parametrize("bad", [0, -2, 1.5, 2.0, True, "2", None])
def test_bad_zoom_type(bb, bad):
    with pytest.raises(ConfigError, match="zoom must be a positive int"):
        bb.patch_embeddings(_images(bb.image_size, 1), zoom=bad)


def test_overlap_that_does_not_tile_is_refused_before_any_work(bb):
    g = bb.patch_embeddings(_images(bb.image_size, 1))[1][0]
    bad = next(v for v in range(1, g) if g - 2 * v < 1 or (2 * g) % (g - 2 * v))
    ok = [v for v in range(g) if g - 2 * v >= 1 and (2 * g) % (g - 2 * v) == 0]
    before = bb.n_image_encodes
    with pytest.raises(ConfigError, match=rf"zoom_overlap={bad}: .*zoom_overlap in \[0, "):
        bb.patch_embeddings(_images(bb.image_size, 4), zoom=2, zoom_overlap=bad, cache=None)
    with pytest.raises(ConfigError, match=str(ok).replace("[", r"\[").replace("]", r"\]")):
        bb.patch_embeddings(_images(bb.image_size, 1), zoom=2, zoom_overlap=bad)
    for wrong in (-1, 1.0, True):
        with pytest.raises(ConfigError, match="zoom_overlap must be an int >= 0"):
            bb.patch_embeddings(_images(bb.image_size, 1), zoom=2, zoom_overlap=wrong)
    with pytest.raises(ConfigError, match="needs zoom > 1"):
        bb.patch_embeddings(_images(bb.image_size, 1), zoom_overlap=1)
    with pytest.raises(ConfigError, match="zoom=2 and shifts=2 cannot be combined"):
        bb.patch_embeddings(_images(bb.image_size, 1), zoom=2, shifts=2)
    assert bb.n_image_encodes == before


def test_zoomed_grids_are_cached_under_their_own_kind(bb, tmp_path):
    imgs = _images(bb.image_size, n=3, seed=3)
    direct, _ = bb.patch_embeddings(imgs, zoom=2)
    before = bb.n_image_encodes
    first, _ = bb.patch_embeddings(imgs, zoom=2, cache=tmp_path)
    assert bb.n_image_encodes - before == 3 * 4  # z*z tiles per image
    again, _ = bb.patch_embeddings(imgs, zoom=2, cache=tmp_path)
    assert bb.n_image_encodes - before == 12  # read back, not encoded
    np.testing.assert_allclose(first, direct, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(again, first)
    kinds = {d.name for d in (tmp_path / bb.fingerprint).iterdir() if d.is_dir()}
    assert kinds == {"patch-z2"}
    value, _ = bb.patch_embeddings(imgs, zoom=2, tokens="value", cache=tmp_path)
    assert not np.allclose(value, first)
    g = first.shape[1] // 2
    o = max(v for v in range(1, g // 2) if (2 * g) % (g - 2 * v) == 0)
    bb.patch_embeddings(imgs, zoom=2, zoom_overlap=o, cache=tmp_path)
    kinds = {d.name for d in (tmp_path / bb.fingerprint).iterdir() if d.is_dir()}
    assert kinds == {"patch-z2", "patch-value-z2", f"patch-z2o{o}"}


def test_zoom_bounds_the_batch_by_pixels(tmp_path):
    """Without batch_size, zoomed batches hold z*z times fewer images (same pixels)."""
    bb = tiny_backbone(tmp_path, VIT_AVG, device="cpu", batch_size=8)
    bb.patch_embeddings(_images(bb.image_size, n=1), zoom=2)  # probes the token grid
    seen = []
    forward = bb._tokens

    def spy(x, tokens="output"):
        seen.append(int(x.shape[0]))
        return forward(x, tokens)

    bb._tokens = spy
    bb.patch_embeddings(_images(bb.image_size, n=8), zoom=2)
    assert seen == [2] * 16  # 4 batches of 2 images x 4 tiles


def test_zoom_beyond_the_patch_size_is_refused_before_any_work(bb):
    """A token cannot see less than one pixel: zoom is at most the patch size in pixels
    (zoom=100 was accepted and ran 10,000 passes per image)."""
    s = bb.image_size
    p = s // bb.patch_embeddings(_images(s, 1))[1][0]
    before = bb.n_image_encodes
    with pytest.raises(ConfigError, match=rf"zoom={p + 1} .*at most {p}"):
        bb.patch_embeddings(_images(s, 2), zoom=p + 1, cache=None)
    assert bb.n_image_encodes == before
