"""Shifted inference (``patch_embeddings(shifts=s)``): a token grid ``s`` times finer.

References are built without the library's shifting code: images shifted with numpy's
reflect padding and encoded on the plain grid, and a tower whose tokens are the mean
colour of their patch compared with dense numpy window means.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from conceptlens.exceptions import ConfigError
from tests.backbones._tiny import TEXT_CFG, TIMM_TOK, VIT_AVG, tiny_backbone

#: open_clip ViT with 6-pixel patches: s = 3 gives whole-pixel offsets (-2, 0, 2)
VIT_P6 = {
    "embed_dim": 32,
    "vision_cfg": {
        "image_size": 36,
        "patch_size": 6,
        "width": 64,
        "layers": 1,
        "head_width": 32,
        "pool_type": "avg",
    },
    "text_cfg": TEXT_CFG,
}


@pytest.fixture(scope="module", params=["openclip-vit", "timm-vit"])
def bb(request, tmp_path_factory):
    cfg = VIT_AVG if request.param == "openclip-vit" else TIMM_TOK
    return tiny_backbone(tmp_path_factory.mktemp(request.param), cfg, device="cpu")


def _images(size, n=2, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _moved(images, dy, dx):
    """uint8 images moved up by ``dy`` and left by ``dx`` pixels, borders reflected."""
    pad = max(abs(dy), abs(dx))
    big = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    h, w = images.shape[1:3]
    return big[:, pad + dy : pad + dy + h, pad + dx : pad + dx + w]


def _patch(bb):
    return bb.image_size // bb.patch_embeddings(_images(bb.image_size, 1))[1][0]


def test_shifts_1_is_the_plain_grid_and_its_cache(bb, tmp_path):
    imgs = _images(bb.image_size)
    plain, grid = bb.patch_embeddings(imgs, shifts=1)
    assert grid == plain.shape[1:3]
    if not hasattr(bb.model.visual, "trunk"):  # average-pooled open_clip ViT
        # the tower's own pooled embedding is the mean of its (unshifted) patch tokens
        pooled = bb.encode_images(imgs, normalize=False)
        np.testing.assert_allclose(plain.mean(axis=(1, 2)), pooled, rtol=1e-5, atol=1e-5)
    # shifts=1 reads the cache entries written without it (kind "patch")
    bb.patch_embeddings(imgs, cache=tmp_path)
    before = bb.n_image_encodes
    cached, _ = bb.patch_embeddings(imgs, cache=tmp_path, shifts=1)
    assert bb.n_image_encodes == before
    np.testing.assert_allclose(cached, plain, rtol=1e-6, atol=1e-6)
    assert {d.name for d in (tmp_path / bb.fingerprint).iterdir() if d.is_dir()} == {"patch"}


def test_sub_grids_are_the_shifted_images(bb):
    """Fine token (i*s + k, j*s + l) is token (i, j) of the image moved by (d_k, d_l) =
    ((k - (s-1)/2) p/s, (l - (s-1)/2) p/s) pixels, so fine token (I, J) is centred on
    cell (I, J) of the s-times finer grid."""
    imgs = _images(bb.image_size, seed=1)
    p, s = _patch(bb), 2
    fine, grid = bb.patch_embeddings(imgs, shifts=s)
    plain_grid = bb.patch_embeddings(imgs)[1]
    assert grid == (s * plain_grid[0], s * plain_grid[1])
    assert fine.shape == (2, *grid, bb.embed_dim)
    for k in range(s):
        for m in range(s):
            dy, dx = (2 * k - (s - 1)) * p // (2 * s), (2 * m - (s - 1)) * p // (2 * s)
            ref, _ = bb.patch_embeddings(_moved(imgs, dy, dx))
            np.testing.assert_allclose(fine[:, k::s, m::s], ref, rtol=1e-5, atol=1e-5)


def test_odd_shifts_keep_the_plain_grid_in_the_middle(tmp_path):
    bb = tiny_backbone(tmp_path, VIT_P6, device="cpu")
    imgs = _images(36)
    plain, grid = bb.patch_embeddings(imgs)
    fine, fine_grid = bb.patch_embeddings(imgs, shifts=3)
    assert fine_grid == (3 * grid[0], 3 * grid[1])
    np.testing.assert_allclose(fine[:, 1::3, 1::3], plain, rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match=r"shifts=2 .*not whole pixels.*shifts=\[1, 3\]"):
        bb.patch_embeddings(imgs, shifts=2)  # offsets of +-1.5 px


def _mean_colour_tower(bb):
    """Make an open_clip ViT whose first 3 token dims are the mean (normalised) colour of
    the token's patch: averaging patchify conv, no positional embedding, no norms, every
    residual branch zeroed, identity projection of the first 3 channels."""
    v = bb.model.visual
    p = v.conv1.kernel_size[0]
    with torch.no_grad():
        v.conv1.weight.zero_()
        for c in range(3):
            v.conv1.weight[c, c] = 1.0 / (p * p)
        v.positional_embedding.zero_()
        for blk in v.transformer.resblocks:
            blk.attn.out_proj.weight.zero_()
            blk.attn.out_proj.bias.zero_()
            blk.mlp.c_proj.weight.zero_()
            blk.mlp.c_proj.bias.zero_()
        v.proj.zero_()
        for c in range(3):
            v.proj[c, c] = 1.0
    v.ln_pre = torch.nn.Identity()
    v.ln_post = torch.nn.Identity()
    return p


@pytest.mark.parametrize("s", [2, 4])
def test_fine_grid_is_aligned_mean_colour_reference(tmp_path, s):
    bb = tiny_backbone(tmp_path, VIT_AVG, device="cpu")
    p = _mean_colour_tower(bb)
    imgs = _images(bb.image_size, n=3, seed=2)
    plain, _ = bb.patch_embeddings(imgs)
    x = bb.preprocess(imgs).numpy().astype(np.float64)  # (N, 3, S, S)
    size = x.shape[-1]
    # the model is what it claims: plain tokens = mean colour of each p x p patch
    g = size // p
    means = x.reshape(len(x), 3, g, p, g, p).mean(axis=(3, 5)).transpose(0, 2, 3, 1)
    np.testing.assert_allclose(plain[..., :3], means, atol=1e-5)
    # dense reference: fine token (I, J) = mean over the p x p window centred at the
    # centre ((I + 1/2) p/s, (J + 1/2) p/s) of cell (I, J), borders reflected
    big = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), mode="reflect")
    n_fine = s * g
    ref = np.empty((len(x), n_fine, n_fine, 3))
    for i in range(n_fine):
        for j in range(n_fine):
            top = round((i + 0.5) * p / s - p / 2) + p
            left = round((j + 0.5) * p / s - p / 2) + p
            ref[:, i, j] = big[:, :, top : top + p, left : left + p].mean(axis=(2, 3))
    fine, grid = bb.patch_embeddings(imgs, shifts=s)
    assert grid == (n_fine, n_fine)
    np.testing.assert_allclose(fine[..., :3], ref, atol=1e-5)
    np.testing.assert_allclose(fine[..., 3:], 0.0, atol=1e-6)


@pytest.mark.parametrize("bad", [0, -1, 1.5, 2.0, True, "2", None])
def test_bad_shifts_type(bb, bad):
    with pytest.raises(ConfigError, match="shifts must be a positive int"):
        bb.patch_embeddings(_images(bb.image_size, 1), shifts=bad)


def test_shifts_must_give_whole_pixel_offsets(bb):
    p = _patch(bb)  # 8 (open_clip tiny) or 16 (timm tiny)
    ok = [f for f in (1, 2, 4, 8) if f <= p and p % (2 * f if f % 2 == 0 else f) == 0]
    with pytest.raises(ConfigError, match=rf"shifts=3 .*{p}-pixel patches.*{re.escape(str(ok))}"):
        bb.patch_embeddings(_images(bb.image_size, 1), shifts=3)
    before = bb.n_image_encodes
    with pytest.raises(ConfigError):  # refused before any image is encoded
        bb.patch_embeddings(_images(bb.image_size, 4), shifts=p, cache=None)
    assert bb.n_image_encodes == before


def test_shifted_grids_are_cached_under_their_own_kind(bb, tmp_path):
    imgs = _images(bb.image_size, n=3, seed=3)
    direct, _ = bb.patch_embeddings(imgs, shifts=2)
    before = bb.n_image_encodes
    first, _ = bb.patch_embeddings(imgs, shifts=2, cache=tmp_path)
    assert bb.n_image_encodes - before == 3 * 4  # s*s passes per image
    again, _ = bb.patch_embeddings(imgs, shifts=2, cache=tmp_path)
    assert bb.n_image_encodes - before == 12  # read back, not encoded
    np.testing.assert_allclose(first, direct, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(again, first)
    kinds = {d.name for d in (tmp_path / bb.fingerprint).iterdir() if d.is_dir()}
    assert "patch-s2" in kinds and "patch" not in kinds
    value, _ = bb.patch_embeddings(imgs, shifts=2, tokens="value", cache=tmp_path)
    kinds = {d.name for d in (tmp_path / bb.fingerprint).iterdir() if d.is_dir()}
    assert "patch-value-s2" in kinds
    assert not np.allclose(value, first)
