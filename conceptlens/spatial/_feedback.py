"""Test-time region feedback and concept rejection (CSR, CVPR 2025).

An importance map ``A`` is 1 inside positive boxes or masks, 0 inside negative ones and
``alpha`` elsewhere; the prototype similarity maps are multiplied by ``A`` (pooled to
the patch grid), max-pooled again, and the head recomputes the prediction.  Rejecting a
concept replaces its prototypes' activations by their typical value on training images
where the concept is absent (not by 0, which no real image produces).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from conceptlens.exceptions import ConfigError, DataError

__all__ = ["importance_map", "pool_to_grid", "region_feedback"]


def _region(region: Any, size: tuple[int, int], sample: str, kind: str) -> np.ndarray:
    h, w = size
    arr = np.asarray(region)
    if arr.ndim == 2:
        if arr.shape != (h, w):
            raise DataError(
                f"sample {sample!r}: {kind} mask has shape {arr.shape}, the image is {(h, w)}"
            )
        from conceptlens.spatial._atlas import check_binary

        m = check_binary(arr, f"sample {sample!r}: the {kind} mask")
        if not m.any():
            raise DataError(
                f"sample {sample!r}: {kind} mask is empty (no True pixel); drop it or draw a "
                "region"
            )
        return m
    if arr.shape != (4,):
        raise DataError(
            f"sample {sample!r}: a {kind} region must be a box (x0, y0, x1, y1) in pixels or a "
            f"bool mask of shape {(h, w)}, got {region!r}"
        )
    x0, y0, x1, y1 = (float(v) for v in arr)
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise DataError(
            f"sample {sample!r}: {kind} box {tuple(arr.tolist())} is outside the {w}x{h} image "
            f"or empty; boxes are (x0, y0, x1, y1) with 0 <= x0 < x1 <= {w}, "
            f"0 <= y0 < y1 <= {h}"
        )
    m = np.zeros((h, w), bool)
    m[int(np.floor(y0)) : int(np.ceil(y1)), int(np.floor(x0)) : int(np.ceil(x1))] = True
    return m


def _regions(regions: Any) -> list[Any]:
    if regions is None:
        return []
    arr = np.asarray(regions, dtype=object) if not isinstance(regions, np.ndarray) else regions
    # one box, or one mask, given bare (a 0/1 mask of any dtype; (n, 4) is n boxes)
    bare_mask = isinstance(regions, np.ndarray) and regions.ndim == 2
    if bare_mask and (regions.dtype == bool or regions.shape[1] != 4):
        return [regions]
    if arr.ndim == 1 and len(arr) == 4 and all(np.isscalar(v) for v in arr):
        return [regions]
    return list(regions)


def importance_map(
    size: int | tuple[int, int],
    *,
    positive: Any = None,
    negative: Any = None,
    alpha: float = 0.2,
    sample: str = "image",
) -> np.ndarray:
    """CSR's importance map for one image.

    Parameters
    ----------
    size : int or (H, W)
        Image size in pixels.
    positive, negative : box, bool mask or list of them, optional
        Boxes are ``(x0, y0, x1, y1)`` in pixels (x0, y0 inclusive); masks are (H, W).
    alpha : float in [0, 1], default 0.2
        Weight outside the positive regions.  With only negative regions the rest of the
        image keeps weight 1 (excluding a region does not down-weight everything else).
    sample : str
        Name used in error messages.

    Returns
    -------
    numpy.ndarray
        float32 (H, W) in [0, 1]; negative regions win where they overlap positive ones.

    Examples
    --------
    >>> a = importance_map(4, positive=(0, 0, 2, 2))
    >>> a.tolist()[0]
    [1.0, 1.0, 0.20000000298023224, 0.20000000298023224]
    >>> importance_map(4, negative=[(0, 0, 1, 4)])[:, 0].tolist()
    [0.0, 0.0, 0.0, 0.0]
    """
    from conceptlens.spatial._maps import _size

    if not 0 <= alpha <= 1:
        raise ConfigError(f"alpha must be in [0, 1], got {alpha!r}")
    h, w = _size(size)
    pos = [_region(r, (h, w), sample, "positive") for r in _regions(positive)]
    neg = [_region(r, (h, w), sample, "negative") for r in _regions(negative)]
    a = np.full((h, w), float(alpha) if pos else 1.0, np.float32)
    for m in pos:
        a[m] = 1.0
    for m in neg:
        a[m] = 0.0
    return a


def pool_to_grid(maps: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Average (..., H, W) maps over each patch's pixels -> (..., gh, gw)."""
    m = np.asarray(maps, dtype=np.float32)
    h, w = m.shape[-2:]
    gh, gw = grid
    if h % gh == 0 and w % gw == 0:
        return m.reshape(*m.shape[:-2], gh, h // gh, gw, w // gw).mean(axis=(-3, -1))
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(m)).reshape(1, -1, h, w)
    out = F.adaptive_avg_pool2d(t, (gh, gw)).numpy()
    return out.reshape(*m.shape[:-2], gh, gw)


def region_feedback(
    model: Any,
    patches: Any,
    *,
    importance: Any = None,
    positive: Any = None,
    negative: Any = None,
    alpha: float = 0.2,
    reject: Sequence[str] = (),
    sample_ids: Sequence[str] | None = None,
) -> xr.Dataset:
    """Recompute predictions with region feedback and concept rejection.

    Parameters
    ----------
    model : fitted PrototypeClassifier
    patches : array (N, gh, gw, D) or (gh, gw, D)
        Patch embeddings (cached once per image; feedback does not re-run the backbone).
    importance : array or xr.DataArray (N, H, W), or (H, W), optional
        Importance maps (see :func:`importance_map`); or give ``positive``/``negative``,
        the same regions for every image. A DataArray with a ``sample`` coordinate is
        matched to ``sample_ids`` by id.
    positive, negative, alpha
        As in :func:`importance_map` (pixels of the backbone's input size).
    reject : str or list of str
        Concepts to reject: their prototypes' activations become the typical-absent
        value (``model.typical_absent_``; fit with ``concept_labels``).
    sample_ids : list of str, optional
        Names for error messages and the ``sample`` coordinate.

    Returns
    -------
    xr.Dataset
        ``activation`` (sample, prototype), ``proba`` and ``proba_before`` (sample, class),
        ``prediction`` and ``prediction_before`` (sample,), ``reliance`` (sample, class,
        prototype) and ``importance`` (sample, y, x) on the patch grid.

    Examples
    --------
    >>> res = region_feedback(clf, P[:1], negative=[(0, 0, 96, 12)])  # doctest: +SKIP
    >>> res.prediction.values  # doctest: +SKIP
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model, "head_")
    atlas = model.atlas
    p = np.asarray(patches, dtype=np.float32)
    if p.ndim == 3:
        p = p[None]
    n = len(p)
    ids = [str(s) for s in sample_ids] if sample_ids is not None else None
    if ids is not None and len(ids) != n:
        raise DataError(f"{len(ids)} sample_ids for {n} images")
    ids = ids or [f"img{i:06d}" for i in range(n)]
    size = int(atlas.image_size)
    if importance is None:
        a = np.stack(
            [
                importance_map(size, positive=positive, negative=negative, alpha=alpha, sample=s)
                for s in ids
            ]
        )
    else:
        if positive is not None or negative is not None:
            raise ConfigError("pass either importance maps or positive/negative regions")
        if isinstance(importance, xr.DataArray) and "sample" in importance.coords:
            if sample_ids is None:
                raise ConfigError(
                    "importance maps with a 'sample' coordinate need sample_ids= (the ids of "
                    "the patches, in order), so that each map meets its own image"
                )
            from conceptlens.spatial._atlas import select_samples

            importance = select_samples(importance, ids, "importance maps")
        a = np.asarray(importance, dtype=np.float32)
        if a.ndim == 2:
            a = np.broadcast_to(a, (n, *a.shape))
        if a.shape[0] != n or a.ndim != 3:
            raise DataError(f"importance must be (N, H, W) with N = {n}, got {a.shape}")
        if a.shape[1:] != (size, size):
            raise DataError(
                f"sample {ids[0]!r}: importance map is {a.shape[1:]}, the backbone's input "
                f"is {(size, size)}"
            )
        if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
            raise DataError("importance maps must hold finite values in [0, 1]")
    grid_a = pool_to_grid(a, atlas.grid)
    sim = atlas.similarity(p).sel(prototype=model.prototypes_)
    act = (sim.values * grid_a[:, None]).max(axis=(2, 3))
    before = sim.values.max(axis=(2, 3))
    if reject:
        from conceptlens.spatial._atlas import names_list

        reject = names_list(reject, "concepts")
        if model.typical_absent_ is None:
            raise ConfigError(
                "concept rejection needs the typical-absent activations: fit the classifier "
                "with concept_labels=..."
            )
        names = np.asarray(model.prototypes_)
        for c in reject:
            protos = [q for q in atlas.of_concept(str(c)) if q in set(model.prototypes_)]
            idx = np.flatnonzero(np.isin(names, protos))
            act[:, idx] = model.typical_absent_.sel(prototype=protos).values[None]
    proba = model.proba_from_activations(act)
    proba_before = model.proba_from_activations(before)
    classes = [str(c) for c in model.classes_]
    rel = model.reliance(activations=act)
    return xr.Dataset(
        {
            "activation": (("sample", "prototype"), act),
            "proba": (("sample", "class"), proba),
            "proba_before": (("sample", "class"), proba_before),
            "prediction": ("sample", np.asarray(classes)[np.argmax(proba, axis=1)]),
            "prediction_before": ("sample", np.asarray(classes)[np.argmax(proba_before, axis=1)]),
            "reliance": (("sample", "class", "prototype"), rel.values),
            "importance": (("sample", "y", "x"), grid_a),
        },
        coords={"sample": ids, "prototype": list(model.prototypes_), "class": classes},
        attrs={"alpha": float(alpha), "reject": list(map(str, reject))},
    )
