"""Guided filter (He et al. 2010) and guided upsampling against a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from conceptlens.exceptions import ConfigError, DataError
from conceptlens.spatial import guided_filter, joint_bilateral_upsample, upsample


def _brute_guided(p, guide, r, eps):
    """Dense reference from the definition: in each window (clipped at the border) the
    ridge regression min sum_i (a.I_i + b - p_i)^2 + eps |w| |a|^2, solved by lstsq;
    each pixel averages a.I + b over the windows that contain it."""
    h, w = p.shape
    g = guide.reshape(h, w, -1)
    c = g.shape[-1]
    acc = np.zeros((h, w))
    cnt = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            ys, xs = slice(max(0, y - r), y + r + 1), slice(max(0, x - r), x + r + 1)
            gi = g[ys, xs].reshape(-1, c)
            n = len(gi)
            design = np.vstack(
                [
                    np.hstack([gi, np.ones((n, 1))]),
                    np.hstack([np.sqrt(eps * n) * np.eye(c), np.zeros((c, 1))]),
                ]
            )
            target = np.concatenate([p[ys, xs].ravel(), np.zeros(c)])
            coef = np.linalg.lstsq(design, target, rcond=None)[0]
            acc[ys, xs] += g[ys, xs] @ coef[:c] + coef[c]
            cnt[ys, xs] += 1
    return acc / cnt


@pytest.mark.parametrize("colour", [False, True])
@pytest.mark.parametrize("r,eps", [(1, 0.05), (2, 1e-3), (4, 0.2)])
def test_matches_brute_force(colour, r, eps):
    rng = np.random.default_rng(3)
    guide = rng.random((7, 9, 3) if colour else (7, 9))
    p = rng.normal(size=(7, 9))
    np.testing.assert_allclose(
        guided_filter(p, guide, radius=r, eps=eps), _brute_guided(p, guide, r, eps), atol=1e-9
    )


def test_batched_guides_match_one_by_one():
    rng = np.random.default_rng(4)
    guides = rng.integers(0, 256, (3, 10, 8, 3), dtype=np.uint8)
    p = rng.normal(size=(3, 2, 10, 8))
    out = guided_filter(p, guides, radius=2, eps=0.01)
    assert out.shape == p.shape
    for i in range(3):
        for k in range(2):
            ref = _brute_guided(p[i, k], guides[i] / 255.0, 2, 0.01)
            np.testing.assert_allclose(out[i, k], ref, atol=1e-9)


@pytest.mark.parametrize("colour", [False, True])
def test_constant_map_stays_constant(colour):
    guide = np.random.default_rng(5).random((12, 12, 3) if colour else (12, 12))
    out = guided_filter(np.full((12, 12), 0.37), guide, radius=3, eps=1e-3)
    np.testing.assert_allclose(out, 0.37, atol=1e-12)


def test_linear_function_of_the_guide_is_reproduced():
    rng = np.random.default_rng(6)
    grey = rng.random((10, 11))
    np.testing.assert_allclose(
        guided_filter(2.5 * grey - 0.3, grey, radius=2, eps=1e-12), 2.5 * grey - 0.3, atol=1e-6
    )
    colour = rng.random((10, 11, 3))
    p = colour @ np.array([1.0, -2.0, 0.5]) + 0.1
    np.testing.assert_allclose(guided_filter(p, colour, radius=2, eps=1e-12), p, atol=1e-6)


def test_large_eps_tends_to_the_box_mean():
    rng = np.random.default_rng(7)
    guide, p = rng.random((9, 9)), rng.random((9, 9))
    out = guided_filter(p, guide, radius=1, eps=1e9)
    # a -> 0, b -> mean(p): q is the box mean of the box mean of p
    ones = np.ones((9, 9))
    box = np.array(
        [
            [p[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2].mean() for x in range(9)]
            for y in range(9)
        ]
    )
    ref = np.array(
        [
            [box[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2].mean() for x in range(9)]
            for y in range(9)
        ]
    )
    np.testing.assert_allclose(out, ref * ones, atol=1e-8)


def test_bad_input():
    g = np.zeros((8, 8), np.uint8)
    with pytest.raises(ConfigError, match="radius"):
        guided_filter(np.zeros((8, 8)), g, radius=0)
    with pytest.raises(ConfigError, match="eps"):
        guided_filter(np.zeros((8, 8)), g, radius=2, eps=0)
    with pytest.raises(DataError, match=r"guide image is \(8, 8\)"):
        guided_filter(np.zeros((6, 6)), g, radius=2)
    with pytest.raises(DataError, match=r"must lie in \[0, 1\]"):
        guided_filter(np.zeros((8, 8)), np.full((8, 8), 200.0), radius=2)
    with pytest.raises(DataError, match="one guide image per sample"):
        guided_filter(np.zeros((2, 8, 8)), np.zeros((3, 8, 8, 3), np.uint8), radius=2)


def test_guided_upsample_is_bilinear_then_filter_and_sharpens_an_edge():
    # a 2 x 2 patch map whose left half is the object; the image's edge is at column 10 of 16
    grid = xr.DataArray(
        np.array([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]]),
        dims=("sample", "y", "x"),
        coords={"sample": ["a", "b"]},
    )
    imgs = np.zeros((2, 16, 16, 3), np.uint8)
    imgs[0, :, :10] = 200
    imgs[1, :, 6:] = 200
    bil = upsample(grid, 16)
    gd = upsample(grid, 16, method="guided", image=imgs, eps=1e-3)
    assert gd.dims == grid.dims and list(gd.sample.values) == ["a", "b"]
    assert gd.attrs["guided_radius"] == 16  # twice the 8 px patch
    for i in range(2):
        ref = guided_filter(bil.values[i], imgs[i], radius=16, eps=1e-3)
        np.testing.assert_allclose(gd.values[i], ref, atol=1e-5)
    truth = np.zeros((2, 16, 16), bool)
    truth[0, :, :10] = True
    truth[1, :, 6:] = True

    def iou(m):
        pred = m >= 0.5 * (m.max(axis=(1, 2), keepdims=True) + m.min(axis=(1, 2), keepdims=True))
        return (pred & truth).sum() / (pred | truth).sum()

    assert iou(bil.values) < 0.85 < iou(gd.values)
    # one guide for every map
    one = upsample(grid, 16, method="guided", image=imgs[0], radius=3)
    np.testing.assert_allclose(
        one.values[1], guided_filter(bil.values[1], imgs[0], radius=3, eps=1e-4), atol=1e-5
    )


def test_guided_upsample_bad_input():
    m = xr.DataArray(np.zeros((2, 3, 3)), dims=("sample", "y", "x"))
    with pytest.raises(ConfigError, match="needs image="):
        upsample(m, 12, method="guided")
    with pytest.raises(ConfigError, match="only used by method='guided'"):
        upsample(m, 12, image=np.zeros((12, 12)))
    with pytest.raises(DataError, match="one per sample"):
        upsample(m, 12, method="guided", image=np.zeros((3, 12, 12, 3), np.uint8))
    with pytest.raises(DataError, match="not at the output size"):
        upsample(m, 12, method="guided", image=np.zeros((2, 10, 10, 3), np.uint8))


def _brute_jbu(m, guide, ss, sr):
    """Per-pixel loop over the grid cells from the definition (Kopf et al. 2007)."""
    gh, gw = m.shape
    g = guide.reshape(guide.shape[0], guide.shape[1], -1)
    h, w = g.shape[:2]
    cells = g.reshape(gh, h // gh, gw, w // gw, -1).mean(axis=(1, 3))
    reach = max(1.0, 3 * ss)
    out = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            yy, xx = (y + 0.5) * gh / h - 0.5, (x + 0.5) * gw / w - 0.5
            num = den = 0.0
            for qy in range(gh):
                for qx in range(gw):
                    if abs(yy - qy) > reach or abs(xx - qx) > reach:
                        continue
                    f = np.exp(-0.5 * ((yy - qy) ** 2 + (xx - qx) ** 2) / ss**2)
                    r = np.exp(-0.5 * ((g[y, x] - cells[qy, qx]) ** 2).sum() / sr**2)
                    num += f * r * m[qy, qx]
                    den += f * r
            out[y, x] = num / den
    return out


@pytest.mark.parametrize("colour", [False, True])
@pytest.mark.parametrize("ss,sr", [(0.5, 0.1), (1.0, 0.3), (2.0, 0.05)])
def test_jbu_matches_brute_force(colour, ss, sr):
    rng = np.random.default_rng(8)
    guide = rng.random((12, 15, 3) if colour else (12, 15))
    m = rng.normal(size=(4, 5))
    np.testing.assert_allclose(
        joint_bilateral_upsample(m, guide, sigma_spatial=ss, sigma_range=sr),
        _brute_jbu(m, guide, ss, sr),
        atol=1e-10,
    )


def test_jbu_constant_map_and_no_underflow():
    rng = np.random.default_rng(9)
    guide = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    out = joint_bilateral_upsample(np.full((4, 4), -1.5), guide, sigma_range=1e-3)
    np.testing.assert_allclose(out, -1.5, atol=1e-12)  # tiny sigma_range: weights stay > 0


def test_jbu_upsample_per_sample_and_stops_at_an_edge():
    grid = xr.DataArray(
        np.array([[[1.0, 0.0]], [[0.0, 1.0]]]),
        dims=("sample", "y", "x"),
        coords={"sample": ["a", "b"]},
    )
    imgs = np.zeros((2, 4, 8, 3), np.uint8)
    imgs[0, :, :3] = 255  # object ends at x = 3, before the patch border at 4
    imgs[1, :, 5:] = 255
    up = upsample(grid, (4, 8), method="jbu", image=imgs)
    assert up.attrs["upsample"] == "jbu"
    np.testing.assert_allclose(up.values[0, 0], [1, 1, 1, 0, 0, 0, 0, 0], atol=1e-3)
    np.testing.assert_allclose(up.values[1, 0], [0, 0, 0, 0, 0, 1, 1, 1], atol=1e-3)
    rng = np.random.default_rng(10)
    noisy = rng.integers(0, 256, (2, 4, 8, 3), dtype=np.uint8)
    up = upsample(grid, (4, 8), method="jbu", image=noisy, sigma_spatial=0.7, sigma_range=0.3)
    for i in range(2):
        ref = joint_bilateral_upsample(
            grid.values[i], noisy[i], sigma_spatial=0.7, sigma_range=0.3
        )
        np.testing.assert_allclose(up.values[i], ref, atol=1e-6)
    assert not np.allclose(ref, joint_bilateral_upsample(grid.values[1], noisy[1]), atol=1e-3)
    with pytest.raises(DataError, match="whole multiple"):
        joint_bilateral_upsample(np.zeros((3, 3)), np.zeros((8, 8)))
    with pytest.raises(ConfigError, match="sigma_range"):
        joint_bilateral_upsample(np.zeros((2, 2)), np.zeros((8, 8)), sigma_range=0)


def test_guided_radius_default_counts_patches_not_cells_of_a_shifted_grid():
    """Maps from shifted inference (attrs shifts=s) have s cells per patch; the default
    radius stays two patches (16 px for 8 px patches), not two cells."""
    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
    fine = xr.DataArray(rng.random((24, 24)), dims=("y", "x"), attrs={"shifts": 2})
    plain = xr.DataArray(rng.random((12, 12)), dims=("y", "x"), attrs={"shifts": 1})
    given = xr.DataArray(rng.random((24, 24)), dims=("y", "x"), attrs={"shifts": "given"})
    assert upsample(fine, 96, method="guided", image=img).attrs["guided_radius"] == 16
    assert upsample(plain, 96, method="guided", image=img).attrs["guided_radius"] == 16
    assert upsample(given, 96, method="guided", image=img).attrs["guided_radius"] == 8
    ref = guided_filter(upsample(fine, 96).values, img, radius=16, eps=1e-4)
    got = upsample(fine, 96, method="guided", image=img).values
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_guided_radius_default_of_zoomed_maps_is_two_tower_patches():
    """Maps from zoomed inference (attrs zoom=z) have z cells per patch of the tower; the
    default radius is two such patches (16 px at 96 px, 12 x 12 patches), the best of
    4, 8 and 16 px at z = 1, 2, 4 in docs/spatial.md, not two (z-times smaller) cells."""
    rng = np.random.default_rng(6)
    img = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
    for z in (2, 4):
        fine = xr.DataArray(rng.random((12 * z, 12 * z)), dims=("y", "x"), attrs={"zoom": z})
        assert upsample(fine, 96, method="guided", image=img).attrs["guided_radius"] == 16
    fine = xr.DataArray(rng.random((24, 24)), dims=("y", "x"), attrs={"zoom": 2, "shifts": 1})
    ref = guided_filter(upsample(fine, 96).values, img, radius=16, eps=1e-4)
    got = upsample(fine, 96, method="guided", image=img).values
    np.testing.assert_allclose(got, ref, atol=1e-5)
    given = xr.DataArray(fine.values, dims=("y", "x"), attrs={"zoom": "given", "shifts": "given"})
    assert upsample(given, 96, method="guided", image=img).attrs["guided_radius"] == 8
