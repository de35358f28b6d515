"""Concept-map overlays: data in, Axes out."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from conceptlens.exceptions import ConfigError, DataError, unknown_names
from conceptlens.plot._common import literal_text

__all__ = ["plot_concept_maps"]


@literal_text
def plot_concept_maps(
    image: Any,
    maps: xr.DataArray,
    *,
    sample: int | str = 0,
    concepts: Any = None,
    axes: Any = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    shared_scale: bool = False,
    upsample: str = "bilinear",
    eps: float = 1e-4,
    radius: int | None = None,
) -> np.ndarray:
    """Draw an image, then the image overlaid with each concept's map.

    Parameters
    ----------
    image : uint8 or float ([0, 1]) array (H, W, 3), (H, W, 4) or grey (H, W)
        The image the maps were computed on.
    maps : xr.DataArray, dims ("sample", "concept", "y", "x") or ("concept", "y", "x")
        From :func:`conceptlens.spatial.concept_maps`; any grid size (drawn stretched
        over the image with bilinear interpolation).
    sample : int or str, default 0
        Position or id of the sample in ``maps``.
    concepts : str or list of str, optional
        Concepts to draw (default: all), in this order.
    axes : sequence of matplotlib Axes, optional
        ``1 + len(concepts)`` axes to draw on; default: a new figure, one row.
    alpha : float, default 0.5
        Overlay opacity.
    shared_scale : bool, default False
        One colour scale for all concepts (default: each map its own min-max).
    upsample : {"bilinear", "guided"}, default "bilinear"
        ``"guided"``: the maps are brought to the image's pixels with
        :func:`conceptlens.spatial.upsample` ``(method="guided", image=image)``, so they
        follow the image's edges (``eps``, ``radius`` as there); see ``docs/spatial.md``
        for what it does to localisation.

    Returns
    -------
    numpy.ndarray of Axes
        The image axis first, then one axis per concept (title = concept name).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> m = xr.DataArray(np.random.rand(2, 3, 3), dims=("concept", "y", "x"),
    ...                  coords={"concept": ["ruler", "hair"]})
    >>> ax = plot_concept_maps(np.zeros((12, 12, 3), np.uint8), m)
    >>> [a.get_title() for a in ax]
    ['image', 'ruler', 'hair']
    """
    if (
        not isinstance(maps, xr.DataArray)
        or maps.dims[-2:] != ("y", "x")
        or "concept" not in maps.dims
    ):
        got = maps.dims if isinstance(maps, xr.DataArray) else type(maps).__name__
        raise DataError(
            f"maps must be an xr.DataArray with dims (..., 'concept', 'y', 'x'), got {got}; "
            "give one concept's (sample, y, x) maps a concept dim with "
            "maps.expand_dims(concept=['name'], axis=-3)"
        )
    if not 0 <= alpha <= 1:
        raise ConfigError(f"alpha must be in [0, 1], got {alpha!r}")
    if "sample" in maps.dims:
        n = maps.sizes["sample"]
        if isinstance(sample, str):
            ids = [str(s) for s in maps["sample"].values]
            if sample not in ids:
                raise DataError(f"sample {sample!r} is not in the maps; ids start {ids[:5]}")
            maps = maps.isel(sample=ids.index(sample))
        elif isinstance(sample, bool) or not isinstance(sample, (int, np.integer)):
            raise ConfigError(f"sample must be a position (int) or an id (str), got {sample!r}")
        elif not -n <= sample < n:
            raise DataError(f"sample {sample} is out of range for maps of {n} sample(s)")
        else:
            maps = maps.isel(sample=int(sample))
    names = [str(c) for c in maps["concept"].values]
    if isinstance(concepts, str):
        concepts = [concepts]
    chosen = names if concepts is None else [str(c) for c in concepts]
    if not chosen:
        raise ConfigError("concepts is empty; pass the concepts to draw (or None for all)")
    missing = [c for c in chosen if c not in names]
    if missing:
        raise DataError(unknown_names("concept", missing, names))
    img = np.asarray(image)
    if img.ndim == 2:  # grey
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise DataError(f"image must be (H, W, 3), (H, W, 4) or grey (H, W), got {img.shape}")
    if img.dtype.kind == "f" and not (np.nanmin(img) >= 0 and np.nanmax(img) <= 1):
        raise DataError(
            f"a float image must lie in [0, 1], got values in [{np.nanmin(img):g}, "
            f"{np.nanmax(img):g}]; divide 0-255 values by 255 or pass uint8 pixels"
        )
    if axes is None:
        # a figure pyplot does not track, as every conceptlens.plot function draws on
        from matplotlib.figure import Figure

        fig = Figure(figsize=(2.2 * (1 + len(chosen)), 2.4), layout="constrained")
        axes = fig.subplots(1, 1 + len(chosen), squeeze=False)[0]
    axes = np.asarray(axes, dtype=object).ravel()
    if len(axes) != 1 + len(chosen):
        raise DataError(f"need {1 + len(chosen)} axes (image + concepts), got {len(axes)}")
    h, w = img.shape[:2]
    if upsample not in ("bilinear", "guided"):
        raise ConfigError(f"upsample must be 'bilinear' or 'guided', got {upsample!r}")
    if upsample == "guided":
        from conceptlens.spatial import upsample as _upsample

        maps = _upsample(
            maps.sel(concept=chosen),
            (h, w),
            method="guided",
            image=img[..., :3],
            radius=radius,
            eps=eps,
        )
    values = maps.sel(concept=chosen).values.astype(float)
    vmin, vmax = (float(values.min()), float(values.max())) if shared_scale else (None, None)
    axes[0].imshow(img)
    axes[0].set_title("image")
    for ax, name, m in zip(axes[1:], chosen, values, strict=True):
        ax.imshow(img)
        ax.imshow(
            m,
            cmap=cmap,
            alpha=alpha,
            extent=(0, w, h, 0),
            interpolation="bilinear",
            vmin=vmin,
            vmax=vmax,
        )
        ax.set_title(name)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return axes
