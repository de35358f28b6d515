from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from conceptlens.exceptions import ConfigError, DataError
from conceptlens.spatial import mask_iou, normalize_maps, pointing_game, scaled_tolerance


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
