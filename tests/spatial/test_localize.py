from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from conceptlens.exceptions import ConfigError, DataError
from conceptlens.spatial import (
    mask_iou,
    normalize_maps,
    patch_masks,
    pointing_game,
    resolution_ceiling,
    scaled_tolerance,
)


def _brute_distance(mask, y, x):
    ys, xs = np.nonzero(mask)
    return np.sqrt((ys - y) ** 2 + (xs - x) ** 2).min()


def test_pointing_game_against_brute_force(rng):
    maps = rng.normal(size=(40, 16, 16))
    masks = np.zeros((40, 16, 16), bool)
    for i in range(40):
        y, x = rng.integers(0, 12, 2)
        masks[i, y : y + rng.integers(1, 5), x : x + rng.integers(1, 5)] = True
    for tol in (0.0, 1.5, 4.0):
        hits = pointing_game(maps, masks, tolerance=tol)
        ref = []
        for i in range(40):
            y, x = np.unravel_index(np.argmax(maps[i]), (16, 16))
            ref.append(_brute_distance(masks[i], y, x) <= tol)
        np.testing.assert_array_equal(hits.values, ref)
    assert pointing_game(maps, masks, tolerance=4).sum() > pointing_game(maps, masks).sum()


def test_iou_against_set_formula(rng):
    maps = rng.random(size=(10, 8, 8))
    masks = rng.random(size=(10, 8, 8)) > 0.6
    iou = mask_iou(maps, masks, threshold=0.3)
    for i in range(10):
        m = maps[i]
        pred = (m - m.min()) / (m.max() - m.min()) >= 0.3
        inter = np.logical_and(pred, masks[i]).sum()
        union = np.logical_or(pred, masks[i]).sum()
        assert iou.values[i] == pytest.approx(inter / union)


def test_ids_come_from_the_maps():
    m = xr.DataArray(np.zeros((2, 4, 4)), dims=("sample", "y", "x"), coords={"sample": ["p", "q"]})
    k = np.ones((2, 4, 4), bool)
    assert list(pointing_game(m, k).sample.values) == ["p", "q"]


def test_empty_mask_names_the_sample():
    m = xr.DataArray(np.zeros((2, 4, 4)), dims=("sample", "y", "x"), coords={"sample": ["p", "q"]})
    k = np.ones((2, 4, 4), bool)
    k[1] = False
    with pytest.raises(DataError, match=r"empty ground-truth mask for sample\(s\) \['q'\]"):
        mask_iou(m, k)


def test_shape_mismatch_and_bad_parameters():
    with pytest.raises(DataError, match="upsample"):
        pointing_game(np.zeros((1, 4, 4)), np.ones((1, 8, 8), bool))
    with pytest.raises(ConfigError):
        mask_iou(np.zeros((1, 4, 4)), np.ones((1, 4, 4), bool), threshold=2)
    with pytest.raises(ConfigError):
        pointing_game(np.zeros((1, 4, 4)), np.ones((1, 4, 4), bool), tolerance=-1)


def test_scaled_tolerance_and_normalize():
    assert scaled_tolerance(224) == 15.0
    assert scaled_tolerance(448, tolerance=10) == 20.0
    n = normalize_maps(np.array([[[1.0, 3.0], [2.0, 5.0]], [[4.0, 4.0], [4.0, 4.0]]]))
    np.testing.assert_allclose(n[0], [[0, 0.5], [0.25, 1]])
    np.testing.assert_allclose(n[1], 0)


def _bilinear_reference(grid_map, size):
    """Independent bilinear upsampling (half-pixel centres, edge clamped), in numpy."""
    g = grid_map.shape[0]
    src = (np.arange(size) + 0.5) * g / size - 0.5
    src = np.clip(src, 0, g - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, g - 1)
    w = src - lo
    rows = grid_map[lo] * (1 - w)[:, None] + grid_map[hi] * w[:, None]
    return rows[:, lo] * (1 - w)[None, :] + rows[:, hi] * w[None, :]


def test_resolution_ceiling_matches_a_brute_force_reference():
    rng = np.random.default_rng(0)
    size, grid = 48, 6
    masks = np.zeros((4, size, size), bool)
    masks[0, 10:30, 5:40] = True  # a rectangle, not aligned with the 8 px patches
    masks[1, 20, :] = True  # a 1 px line
    masks[2] = rng.random((size, size)) < 0.05  # speckle
    yy, xx = np.mgrid[:size, :size]
    masks[3] = (yy - 24) ** 2 + (xx - 20) ** 2 < 9**2  # a disc
    got = resolution_ceiling(masks, grid)
    for i, m in enumerate(masks):
        cov = np.array(
            [
                [m[r * 8 : r * 8 + 8, c * 8 : c * 8 + 8].mean() for c in range(grid)]
                for r in range(grid)
            ]
        )
        up = _bilinear_reference(cov, size)
        best = max(
            ((up >= t) & m).sum() / ((up >= t) | m).sum() for t in np.arange(1, 100) / 100.0
        )
        assert got.values[i] == pytest.approx(best, abs=1e-9)
    # large regions are resolvable, thin or speckled ones are not: at best two pixel rows
    # tie at a patch centre for a 1 px line (IoU 1/2), and speckle stays far below
    assert got.values[0] > 0.8 and got.values[3] > 0.8
    assert got.values[1] == pytest.approx(0.5) and got.values[2] < 0.2


def test_resolution_ceiling_is_one_for_patch_aligned_masks_with_nearest():
    m = np.zeros((1, 32, 32), bool)
    m[0, 8:16, 0:24] = True
    m[0, 16:24, 16:24] = True
    assert float(resolution_ceiling(m, 4, method="nearest")[0]) == 1.0
    assert float(resolution_ceiling(m, 4)[0]) < 1.0  # bilinear rounds the corners


def test_patch_masks_against_loops():
    rng = np.random.default_rng(1)
    masks = rng.random((3, 24, 24)) < 0.4
    got = patch_masks(masks, 3, min_coverage=0.4)
    for i in range(3):
        for r in range(3):
            for c in range(3):
                cov = masks[i, r * 8 : r * 8 + 8, c * 8 : c * 8 + 8].mean()
                assert got[i, r, c] == (cov >= 0.4)


def test_ceiling_and_patch_masks_refuse_bad_input():
    with pytest.raises(DataError, match="empty ground-truth mask for sample"):
        resolution_ceiling(np.zeros((2, 16, 16), bool), 2)
    with pytest.raises(ConfigError, match="grid must be a positive int"):
        resolution_ceiling(np.ones((1, 16, 16), bool), 0)
    with pytest.raises(ConfigError, match="min_coverage"):
        patch_masks(np.ones((1, 16, 16), bool), 2, min_coverage=0)


def test_resolution_ceiling_window_matches_a_brute_force_reference():
    """``window``: each grid value is the mask's coverage of a window centred on its cell
    (mask reflected at the border), as a shifted-inference token sees a whole patch."""
    rng = np.random.default_rng(2)
    size, grid, window = 48, 12, 8  # 4 px cells, 8 px windows
    masks = np.zeros((3, size, size), bool)
    masks[0, 10:30, 5:40] = True
    masks[1, 1, :] = True  # a 1 px line at the border: the reflection doubles it
    masks[2] = rng.random((size, size)) < 0.05
    got = resolution_ceiling(masks, grid, window=window)
    for i, m in enumerate(masks):
        big = np.pad(m, window, mode="reflect")
        cov = np.empty((grid, grid))
        for r in range(grid):
            for c in range(grid):
                cy, cx = (r + 0.5) * 4, (c + 0.5) * 4  # cell centre, pixel units
                y0, x0 = int(cy - window / 2) + window, int(cx - window / 2) + window
                cov[r, c] = big[y0 : y0 + window, x0 : x0 + window].mean()
        up = _bilinear_reference(cov, size)
        best = max(
            ((up >= t) & m).sum() / ((up >= t) | m).sum() for t in np.arange(1, 100) / 100.0
        )
        assert got.values[i] == pytest.approx(best, abs=1e-9)
    # the window equal to the cell is the default ceiling
    np.testing.assert_allclose(
        resolution_ceiling(masks, grid, window=4).values, resolution_ceiling(masks, grid).values
    )
    # a finer grid of whole-patch windows gains less than a grid of small cells
    line = np.zeros((1, 96, 96), bool)
    line[0, 40, :] = True
    assert float(resolution_ceiling(line, 48, window=8)[0]) < float(
        resolution_ceiling(line, 48)[0]
    )
    for bad in (0, 48, 8.5, True):
        with pytest.raises(ConfigError, match="window must be a whole number of pixels"):
            resolution_ceiling(masks, grid, window=bad)


def test_labelled_masks_are_paired_with_maps_by_sample_id():

    rng = np.random.default_rng(0)
    ids = ["a", "b", "c"]
    masks = np.zeros((3, 8, 8), bool)
    maps = rng.random((3, 8, 8))
    for i, (y, x) in enumerate([(1, 1), (4, 6), (6, 2)]):
        masks[i, y : y + 2, x : x + 2] = True
        maps[i, y, x] = 5.0  # each map peaks inside its own mask
    m = xr.DataArray(maps, dims=("sample", "y", "x"), coords={"sample": ids})
    k = xr.DataArray(masks, dims=("sample", "y", "x"), coords={"sample": ids})
    shuffled = k.isel(sample=[2, 0, 1])
    assert pointing_game(m, shuffled).values.all()
    assert pointing_game(m, masks).values.all()
    # by position the shuffled masks would all miss
    assert not pointing_game(m, shuffled.values).values.any()
    np.testing.assert_allclose(mask_iou(m, shuffled).values, mask_iou(m, k).values)
    with pytest.raises(DataError, match=r"masks lack the sample\(s\) \['b'\]"):
        pointing_game(m, k.isel(sample=[0, 2]))
    with pytest.raises(DataError, match="masks must be bool or 0/1"):
        pointing_game(m, masks * 0.5)


@pytest.mark.parametrize("grid", [12.7, True, (4, 0), "12"])
def test_grid_must_be_whole_positive_numbers(grid):
    from conceptlens.spatial import patch_masks

    masks = np.ones((1, 8, 8), bool)
    with pytest.raises(ConfigError, match="grid must be a positive int"):
        patch_masks(masks, grid)
    assert patch_masks(masks, np.array([2, 2])).shape == (1, 2, 2)


def test_masks_with_nan_are_refused_not_read_as_inside():
    """A NaN in a float mask was read as inside the mask (NaN != 0)."""
    maps = np.zeros((1, 4, 4))
    maps[0, 0, 0] = 1.0
    masks = np.zeros((1, 4, 4))
    masks[0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        pointing_game(maps, masks)
    with pytest.raises(DataError, match="NaN"):
        mask_iou(maps, masks)
