"""Localisation metrics of saliency / concept maps against ground-truth masks.

* :func:`pointing_game` (Zhang et al. 2016): a hit when the map's maximum lies inside the
  mask, or within ``tolerance`` pixels of it (the usual 15 px at 224 px; use
  :func:`scaled_tolerance` for other sizes).
* :func:`mask_iou`: IoU of the thresholded map (min-max normalised per sample, then
  ``>= threshold``) with the mask.
* :func:`resolution_ceiling`: the best pixel IoU a map on a patch grid can reach against
  each mask, so a shortfall can be told apart from the grid's resolution;
  :func:`patch_masks` brings masks to the patch grid (IoU at patch resolution).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from scipy import ndimage

from conceptlens.exceptions import ConfigError, DataError
from conceptlens.spatial._atlas import check_binary, select_samples

__all__ = [
    "mask_iou",
    "normalize_maps",
    "patch_masks",
    "pointing_game",
    "resolution_ceiling",
    "scaled_tolerance",
]


def scaled_tolerance(image_size: int, *, tolerance: float = 15.0, reference: int = 224) -> float:
    """The pointing game's ``tolerance`` pixels at ``reference`` size, scaled to ``image_size``.

    Examples
    --------
    >>> round(scaled_tolerance(96), 2)
    6.43
    """
    return float(tolerance) * float(image_size) / float(reference)


def _pairs(maps: Any, masks: Any) -> tuple[np.ndarray, np.ndarray, list[str]]:
    m = maps.values if isinstance(maps, xr.DataArray) else np.asarray(maps)
    if m.ndim == 2:
        m = m[None]
    if isinstance(maps, xr.DataArray) and "sample" in maps.coords:
        ids = [str(s) for s in np.atleast_1d(maps["sample"].values)]
    else:
        ids = [f"img{i:06d}" for i in range(len(m))]
    if isinstance(maps, xr.DataArray) and "sample" in maps.coords and m.ndim == 3:
        # both labelled: pair by sample id, never by position
        masks = select_samples(masks, ids, "masks")
    k = np.asarray(masks.values if isinstance(masks, xr.DataArray) else masks)
    if k.ndim == 2:
        k = k[None]
    if m.ndim != 3:
        raise DataError(f"maps must be (sample, y, x) for one concept; got shape {m.shape}")
    if k.shape != m.shape:
        raise DataError(
            f"masks {k.shape} and maps {m.shape} differ in shape; bring the maps to the mask "
            "size with conceptlens.spatial.upsample(maps, (H, W)) first"
        )
    k = check_binary(k, "masks")
    empty = [ids[i] for i in np.flatnonzero(~k.reshape(len(k), -1).any(axis=1))]
    if empty:
        raise DataError(
            f"empty ground-truth mask for sample(s) {empty[:5]}"
            + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
            + "; evaluate only samples where the concept is present (non-empty mask)"
        )
    if not np.isfinite(m).all():
        raise DataError("the maps contain NaN or infinite values")
    return m.astype(np.float64, copy=False), k, ids


def normalize_maps(maps: np.ndarray) -> np.ndarray:
    """Min-max normalise each (y, x) map to [0, 1] (a constant map becomes all zeros)."""
    m = np.asarray(maps, dtype=np.float64)
    lo = m.min(axis=(-2, -1), keepdims=True)
    span = m.max(axis=(-2, -1), keepdims=True) - lo
    return np.where(span > 0, (m - lo) / np.where(span > 0, span, 1.0), 0.0)


def pointing_game(maps: Any, masks: Any, *, tolerance: float = 0.0) -> xr.DataArray:
    """Pointing-game hits: is each map's maximum inside (or near) the mask?

    Parameters
    ----------
    maps : array or xr.DataArray (sample, y, x)
        One concept's maps at the mask resolution (see :func:`upsample`).
    masks : bool (or 0/1) array or xr.DataArray (sample, y, x)
        Ground truth; every mask must be non-empty. When both ``maps`` and ``masks``
        are DataArrays with a ``sample`` coordinate they are paired by sample id.
    tolerance : float, default 0
        A maximum within this many pixels (Euclidean) of the mask counts as a hit.

    Returns
    -------
    xr.DataArray of bool, dims ("sample",), name "hit"
        ``.mean()`` is the pointing-game accuracy.

    Examples
    --------
    >>> m = np.zeros((1, 8, 8)); m[0, 2, 2] = 1
    >>> k = np.zeros((1, 8, 8), bool); k[0, 2:4, 4:6] = True
    >>> bool(pointing_game(m, k)[0]), bool(pointing_game(m, k, tolerance=2)[0])
    (False, True)
    """
    if not tolerance >= 0:
        raise ConfigError(f"tolerance must be >= 0 pixels, got {tolerance!r}")
    m, k, ids = _pairs(maps, masks)
    flat = m.reshape(len(m), -1).argmax(axis=1)
    ys, xs = np.unravel_index(flat, m.shape[1:])
    hits = np.empty(len(m), bool)
    for i in range(len(m)):
        if k[i, ys[i], xs[i]]:
            hits[i] = True
        elif tolerance > 0:
            dist = ndimage.distance_transform_edt(~k[i])
            hits[i] = bool(dist[ys[i], xs[i]] <= tolerance)
        else:
            hits[i] = False
    return xr.DataArray(
        hits, dims=("sample",), coords={"sample": ids}, name="hit", attrs={"tolerance": tolerance}
    )


def mask_iou(maps: Any, masks: Any, *, threshold: float = 0.5) -> xr.DataArray:
    """IoU of each thresholded map (min-max normalised, ``>= threshold``) with its mask.

    Parameters
    ----------
    maps : array or xr.DataArray (sample, y, x)
    masks : bool (or 0/1) array or xr.DataArray (sample, y, x), every mask non-empty
        Paired with ``maps`` by sample id when both are DataArrays with ``sample``.
    threshold : float in [0, 1], default 0.5

    Returns
    -------
    xr.DataArray, dims ("sample",), name "iou"

    Examples
    --------
    >>> m = np.zeros((1, 4, 4)); m[0, :2] = 1
    >>> k = np.zeros((1, 4, 4), bool); k[0, :1] = True
    >>> float(mask_iou(m, k)[0])
    0.5
    """
    if not 0 <= threshold <= 1:
        raise ConfigError(f"threshold must be in [0, 1], got {threshold!r}")
    m, k, ids = _pairs(maps, masks)
    pred = normalize_maps(m) >= threshold
    inter = (pred & k).reshape(len(m), -1).sum(axis=1)
    union = (pred | k).reshape(len(m), -1).sum(axis=1)
    return xr.DataArray(
        inter / np.maximum(union, 1),
        dims=("sample",),
        coords={"sample": ids},
        name="iou",
        attrs={"threshold": threshold},
    )


def _mask_stack(masks: Any, what: str) -> tuple[np.ndarray, list[str]]:
    k = np.asarray(masks.values if isinstance(masks, xr.DataArray) else masks)
    if k.ndim == 2:
        k = k[None]
    if k.ndim != 3:
        raise DataError(f"{what}: masks must be (sample, H, W), got shape {k.shape}")
    if isinstance(masks, xr.DataArray) and "sample" in masks.coords:
        ids = [str(v) for v in np.atleast_1d(masks["sample"].values)]
    else:
        ids = [f"img{i:06d}" for i in range(len(k))]
    k = check_binary(k, f"{what}: masks")
    empty = [ids[i] for i in np.flatnonzero(~k.reshape(len(k), -1).any(axis=1))]
    if empty:
        raise DataError(
            f"{what}: empty ground-truth mask for sample(s) {empty[:5]}; pass only samples "
            "where the concept is present"
        )
    return k, ids


def _grid(grid: Any) -> tuple[int, int]:
    from conceptlens.spatial._maps import _size

    try:
        return _size(tuple(grid) if isinstance(grid, (list, tuple, np.ndarray)) else grid)
    except ConfigError:
        raise ConfigError(
            f"grid must be a positive int or a (gh, gw) pair of positive ints, got {grid!r}"
        ) from None


def patch_masks(masks: Any, grid: Any, *, min_coverage: float = 0.5) -> np.ndarray:
    """Masks on the patch grid: a patch is in when the mask covers ``>= min_coverage`` of it.

    For IoU at patch resolution (with maps on the grid, e.g. :func:`concept_maps` output or
    pixel maps averaged per patch with :func:`pool_to_grid`). Thin structures can vanish:
    check that the result is non-empty before scoring it.

    Parameters
    ----------
    masks : bool array (sample, H, W) or (H, W)
    grid : int or (int, int)
        Patch grid ``(gh, gw)``, e.g. ``concept_maps(...).shape[-2:]``.
    min_coverage : float in (0, 1], default 0.5

    Returns
    -------
    bool array (sample, gh, gw)

    Examples
    --------
    >>> m = np.zeros((4, 4), bool); m[:2, :3] = True
    >>> patch_masks(m, 2).astype(int).tolist()
    [[[1, 1], [0, 0]]]
    """
    from conceptlens.spatial._feedback import pool_to_grid

    if not 0 < min_coverage <= 1:
        raise ConfigError(f"min_coverage must be in (0, 1], got {min_coverage!r}")
    k = np.asarray(masks.values if isinstance(masks, xr.DataArray) else masks)
    k = k[None] if k.ndim == 2 else k
    if k.ndim != 3:
        raise DataError(f"patch_masks: masks must be (sample, H, W), got shape {k.shape}")
    k = check_binary(k, "patch_masks: masks")
    return pool_to_grid(k.astype(np.float32), _grid(grid)) >= np.float32(min_coverage)


def _window_coverage(k: np.ndarray, grid: tuple[int, int], window: int) -> np.ndarray:
    """(n, gh, gw): the mask's coverage of the ``window``-pixel square centred on each
    grid cell's centre (rounded to whole pixels), the border reflected."""
    n, h, w = k.shape
    if not 1 <= window < min(h, w):
        raise ConfigError(
            f"window must be a whole number of pixels in [1, {min(h, w) - 1}] for "
            f"{h}x{w} masks, got {window!r}"
        )
    big = np.pad(k.astype(np.float64), ((0, 0), (window, window), (window, window)), "reflect")
    c = np.zeros((n, big.shape[1] + 1, big.shape[2] + 1))
    c[:, 1:, 1:] = big.cumsum(axis=1).cumsum(axis=2)
    gh, gw = grid
    top = np.round((np.arange(gh) + 0.5) * h / gh - window / 2).astype(int) + window
    left = np.round((np.arange(gw) + 0.5) * w / gw - window / 2).astype(int) + window
    t, b, lo, r = top[:, None], top[:, None] + window, left[None, :], left[None, :] + window
    area = c[:, b, r] - c[:, t, r] - c[:, b, lo] + c[:, t, lo]
    return (area / float(window * window)).astype(np.float32)


def resolution_ceiling(
    masks: Any, grid: Any, *, method: str = "bilinear", window: int | None = None
) -> xr.DataArray:
    """Per mask, the best pixel IoU that a map living on a ``grid`` patch grid reaches.

    The map is the ideal patch-level map -- the mask's own coverage of each patch --
    brought to the mask's size with :func:`upsample` (``method``, as the concept maps are)
    and thresholded at the best of the thresholds 0.01, 0.02, ..., 0.99 for that image.
    With ``window`` the ideal map's value at each cell is instead the mask's coverage of
    the ``window x window`` pixel square centred on the cell: the best a map reaches
    whose tokens each see a whole patch while the grid is finer, as with shifted
    inference (``concept_maps(shifts=s)``: pass the patch size, e.g. 8 for
    synthderm-lit, with ``grid`` 24 or 48). Zoomed inference (``concept_maps(zoom=z)``)
    gives tokens that see their own cells: its ceiling is the one without ``window``.
    Reported next to a method's IoU it separates what the grid's resolution forbids (thin
    lines, small dots: a low ceiling) from what the method misses (a high ceiling). It is
    an estimate of the best grid map, not a bound: another grid map may do slightly
    better, and pixel-level maps (Integrated Gradients) are not limited by it.

    Parameters
    ----------
    masks : bool array or xr.DataArray (sample, H, W), every mask non-empty
    grid : int or (int, int)
        Patch grid ``(gh, gw)`` of the maps (12 for synthderm-lit at 96 px).
    method : {"bilinear", "bicubic", "nearest"}, default "bilinear"
    window : int, optional
        Side in pixels of the square each grid value covers (centred on its cell; the
        mask reflected at the border, as shifted inference reflects the image). Default:
        the cell itself.

    Returns
    -------
    xr.DataArray, dims ("sample",), name "iou_ceiling"

    Examples
    --------
    >>> m = np.zeros((1, 96, 96), bool); m[0, :, :48] = True   # half the image
    >>> float(resolution_ceiling(m, 12)[0])
    1.0
    >>> m = np.zeros((1, 96, 96), bool); m[0, 40, :] = True     # a 1 px line
    >>> round(float(resolution_ceiling(m, 12)[0]), 3)
    0.125
    >>> fine = resolution_ceiling(m, 48)                  # 2 px cells
    >>> shifted = resolution_ceiling(m, 48, window=8)     # 2 px steps, 8 px tokens
    >>> round(float(fine[0]), 3), round(float(shifted[0]), 3)
    (0.5, 0.167)
    """
    from conceptlens.spatial._feedback import pool_to_grid
    from conceptlens.spatial._maps import upsample

    k, ids = _mask_stack(masks, "resolution_ceiling")
    if window is None:
        cov = pool_to_grid(k.astype(np.float32), _grid(grid))
    elif isinstance(window, bool) or not isinstance(window, (int, np.integer)):
        raise ConfigError(f"window must be a whole number of pixels, got {window!r}")
    else:
        cov = _window_coverage(k, _grid(grid), int(window))
    up = upsample(xr.DataArray(cov, dims=("sample", "y", "x")), k.shape[1:], method=method)
    up = up.values
    best = np.zeros(len(k))
    flat_k = k.reshape(len(k), -1)
    for t in np.arange(1, 100) / 100.0:
        pred = (up >= t).reshape(len(k), -1)
        inter = (pred & flat_k).sum(axis=1)
        union = (pred | flat_k).sum(axis=1)
        best = np.maximum(best, inter / np.maximum(union, 1))
    return xr.DataArray(
        best,
        dims=("sample",),
        coords={"sample": ids},
        name="iou_ceiling",
        attrs={"grid": list(_grid(grid)), "method": method, "window": window or 0},
    )
