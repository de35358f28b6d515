"""Patch-level concept maps: where each concept of a bank fires in an image.

A ViT's patch tokens, passed through the tower's final norm and projection
(:meth:`Backbone.patch_embeddings`), live in the joint image-text space, so the cosine
between a patch and a concept's text embedding says how much that patch looks like the
concept.  ``mode="relative"`` subtracts the cosine with the bank's reference prompts
("a dermoscopy image of skin"), as :func:`conceptlens.concepts.score_concepts` does for
whole images.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr

from conceptlens.exceptions import ConfigError, DataError

__all__ = ["concept_directions", "concept_maps", "image_ids", "patch_grid", "upsample"]

_MODES = ("cosine", "relative")
_UPSAMPLE = ("bilinear", "bicubic", "nearest", "guided", "jbu")


def image_ids(images: Any, n: int) -> list[str]:
    """Sample ids of ``images``: an ImageDataset's ids, else ``img000000``, ``img000001``..."""
    ids = getattr(images, "ids", None)
    if ids is not None and len(ids) == n:
        return [str(i) for i in ids]
    return [f"img{i:06d}" for i in range(n)]


def _as_list(images: Any) -> tuple[int, Any]:
    """Length and ``i -> image`` of an ImageDataset, a uint8 array or a list of images."""
    if hasattr(images, "load_image") and hasattr(images, "__len__"):
        return len(images), images.load_image
    if isinstance(images, np.ndarray):
        arr = images[None] if images.ndim == 3 else images
        return len(arr), arr.__getitem__
    seq = list(images)
    return len(seq), seq.__getitem__  # PIL images stay PIL (the backbone converts them)


def _channel_hint(what: str, shape: tuple[int, ...]) -> str:
    """Message for an image array that is not RGB (N, H, W, 3) / (H, W, 3)."""
    fix = (
        "drop the alpha channel with x[..., :3]"
        if shape[-1] == 4
        else "repeat a grey channel with np.repeat(x[..., None], 3, axis=-1) (or "
        "np.repeat(x, 3, axis=-1) for (..., 1) arrays)"
    )
    return f"{what} is not RGB: images must be uint8 (N, H, W, 3) or (H, W, 3); {fix}"


def check_image_sizes(backbone: Any, images: Any) -> list[str]:
    """Raise unless every image is ``image_size x image_size``; return the sample ids.

    Maps are laid on the image's own pixels, which is only exact when the backbone
    neither resizes nor crops it.
    """
    n, get = _as_list(images)
    ids = image_ids(images, n)
    if n == 0:
        raise DataError("no images were given")
    s = int(backbone.image_size)
    if isinstance(images, np.ndarray) and (images.ndim not in (3, 4) or images.shape[-1] != 3):
        raise DataError(_channel_hint(f"the image array {images.shape}", images.shape))
    for i in range(n):
        img = get(i)
        shape = np.shape(img)
        if isinstance(img, np.ndarray) and (img.ndim != 3 or img.shape[-1] != 3):
            raise DataError(_channel_hint(f"sample {ids[i]!r}: image {shape}", shape))
        if len(shape) < 2 or tuple(shape[:2]) != (s, s):
            raise DataError(
                f"sample {ids[i]!r}: image size {tuple(shape[:2])} differs from the backbone's "
                f"input size ({s}, {s}); concept maps are laid on the image's pixels, so resize "
                f"(and crop) the images to {s}x{s} first, or pass resize=True to map the "
                "backbone's resized, centre-cropped view instead"
            )
    return ids


def concept_directions(
    backbone: Any, bank: Any, *, mode: str = "cosine", templates: Any = None
) -> tuple[np.ndarray, list[str], list[str]]:
    """Per concept, the vector whose dot product with a unit patch embedding is its score.

    Returns
    -------
    weights : numpy.ndarray
        float32, (n_concepts, D): the unit text embedding (``cosine``) or the text
        embedding minus the bank's reference embedding (``relative``).
    names, groups : list of str
    """
    from conceptlens.concepts import concept_text_embeddings, load_bank

    if mode not in _MODES:
        raise ConfigError(f"mode must be one of {_MODES}, got {mode!r}")
    bank = load_bank(bank)
    text, ref, _ = concept_text_embeddings(
        backbone, bank, templates=templates, reference=mode == "relative"
    )
    w = text if ref is None else text - ref[None, :]
    names = [str(c.name) for c in bank.concepts]
    groups = [str(getattr(c, "group", "") or "") for c in bank.concepts]
    return np.ascontiguousarray(w, dtype=np.float32), names, groups


def patch_grid(
    backbone: Any,
    images: Any,
    *,
    resize: bool = False,
    cache: Any = None,
    batch_size: int | None = None,
    tokens: str = "output",
    shifts: int = 1,
    zoom: int = 1,
    zoom_overlap: int = 0,
) -> tuple[np.ndarray, list[str]]:
    """Unit-norm patch embeddings (N, gh, gw, D) of ``images`` and their sample ids.

    ``tokens`` (``"output"``, ``"value"``, ``"self"``), ``shifts`` (a grid ``shifts``
    times finer from ``shifts**2`` shifted passes) and ``zoom`` / ``zoom_overlap`` (a
    grid ``zoom`` times finer whose tokens see ``1 / zoom`` of a patch, from the image
    upscaled and run as tiles) are passed to :meth:`Backbone.patch_embeddings`.
    """
    if resize:
        n, _ = _as_list(images)
        ids = image_ids(images, n)
    else:
        ids = check_image_sizes(backbone, images)
    kw: dict[str, Any] = {"batch_size": batch_size, "normalize": True, "tokens": tokens}
    if shifts != 1:
        kw["shifts"] = shifts
    if zoom != 1 or zoom_overlap != 0:
        kw.update(zoom=zoom, zoom_overlap=zoom_overlap)
    if cache is not None:
        kw["cache"] = cache
    patches, _ = backbone.patch_embeddings(images, **kw)
    return np.asarray(patches, dtype=np.float32), ids


def concept_maps(
    backbone: Any,
    images: Any,
    bank: Any,
    *,
    mode: str = "cosine",
    templates: Any = None,
    patches: np.ndarray | None = None,
    resize: bool = False,
    cache: Any = None,
    batch_size: int | None = None,
    tokens: str = "output",
    shifts: int = 1,
    zoom: int = 1,
    zoom_overlap: int = 0,
) -> xr.DataArray:
    """Similarity of every image patch to every concept of a bank.

    Parameters
    ----------
    backbone : Backbone
        A ViT backbone (open_clip ViT or timm trunk), e.g. ``load_backbone()``.
    images : uint8 array (N, S, S, 3), list of images or ImageDataset
        ``S`` is ``backbone.image_size`` (see ``resize``).
    bank : ConceptBank or name
    mode : {"cosine", "relative"}, default "cosine"
        ``cosine``: cos(patch, concept); ``relative``: that minus cos(patch, reference).
    templates : list of str, optional
        Prompt templates, as in :func:`conceptlens.concepts.score_concepts`.
    patches : array (N, gh, gw, D), optional
        Patch embeddings already computed (e.g. by :meth:`Backbone.patch_embeddings`);
        they are L2-normalised here.  The images are then only used for their ids.
    resize : bool, default False
        Accept images of any size and map the backbone's resized, centre-cropped view.
    cache : path, optional
        Patch-embedding cache folder, passed to :meth:`Backbone.patch_embeddings`.
    tokens : {"output", "value", "self"}, default "output"
        Which patch tokens (:meth:`Backbone.patch_embeddings`): the tower's output
        tokens, MaskCLIP's value path of the last block (``"value"``) or ClearCLIP's
        query-query attention (``"self"``). Ignored when ``patches`` are given (compute
        those with the same ``tokens``). See ``docs/spatial.md`` for which localises best.
    shifts : int, default 1
        ``s > 1``: maps on a grid ``s`` times finer (``s gh x s gw``, e.g. 24 x 24 for
        synthderm-lit at ``s = 2``) by shifted inference
        (:meth:`Backbone.patch_embeddings`): ``s * s`` forward passes of the tower on
        copies of the image moved by fractions of a patch, tokens interleaved so each is
        centred on its fine cell. Ignored when ``patches`` are given (compute those with
        the same ``shifts``). Measured in ``docs/spatial.md``.
    zoom : int, default 1
        ``z > 1``: maps on a grid ``z`` times finer whose tokens each see ``1 / z`` of a
        patch (a ``p / z``-pixel window), by zoomed inference
        (:meth:`Backbone.patch_embeddings`): the image is upscaled ``z`` times with the
        backbone's own resampling and run as ``z * z`` tiles of the input size, their
        token grids stitched. The tower then sees every structure ``z`` times larger
        than it was trained on. Not combined with ``shifts``; ignored when ``patches``
        are given. Measured in ``docs/spatial.md``.
    zoom_overlap : int, default 0
        Tokens of context each kept token has inside its tile (overlapping tiles).

    Returns
    -------
    xr.DataArray, dims ("sample", "concept", "y", "x"), name "concept_map"
        On the patch grid (``gh x gw``, times ``shifts`` or ``zoom``); coordinates
        ``sample``, ``concept``, ``concept_group``; attrs ``mode``, ``tokens``,
        ``shifts``, ``zoom``, ``zoom_overlap``, ``backbone``, ``bank``, ``image_size``.
        Use :func:`upsample` to bring it to pixels.

    Raises
    ------
    DataError
        An image is not ``image_size x image_size`` (and ``resize`` is False); the
        message names the sample.
    ConfigError
        ``shifts`` is not a positive int giving whole-pixel offsets for the backbone's
        patch size; ``zoom`` is not a positive int, ``zoom_overlap`` does not fit the
        tiles, or both ``zoom`` and ``shifts`` are given.

    Examples
    --------
    >>> bb = load_backbone("synthderm-lit")  # doctest: +SKIP
    >>> imgs = SynthDerm().generate(2).images  # doctest: +SKIP
    >>> concept_maps(bb, imgs, "synthderm").shape  # doctest: +SKIP
    (2, 17, 12, 12)
    """
    from conceptlens.concepts import load_bank

    bank = load_bank(bank)
    weights, names, groups = concept_directions(backbone, bank, mode=mode, templates=templates)
    if patches is None:
        unit, ids = patch_grid(
            backbone,
            images,
            resize=resize,
            cache=cache,
            batch_size=batch_size,
            tokens=tokens,
            shifts=shifts,
            zoom=zoom,
            zoom_overlap=zoom_overlap,
        )
    else:
        from conceptlens.spatial._atlas import unit_patches

        shape = np.shape(patches)
        if len(shape) != 4 or shape[-1] != weights.shape[1]:
            raise DataError(
                f"patches must have shape (N, gh, gw, {weights.shape[1]}), got {shape}"
            )
        unit = unit_patches(patches)
        n = len(unit)
        if images is not None and _as_list(images)[0] != n:
            raise DataError(
                f"patches hold {n} images but images has {_as_list(images)[0]}; pass the "
                "images the patches were computed from (or images=None)"
            )
        ids = image_ids(images, n)
    values = np.einsum("nhwd,cd->nchw", unit, weights, optimize=True)
    return xr.DataArray(
        values.astype(np.float32, copy=False),
        dims=("sample", "concept", "y", "x"),
        coords={
            "sample": ids,
            "concept": names,
            "concept_group": ("concept", groups),
        },
        name="concept_map",
        attrs={
            "mode": mode,
            "tokens": tokens if patches is None else "given",
            "shifts": int(shifts) if patches is None else "given",
            "zoom": int(zoom) if patches is None else "given",
            "zoom_overlap": int(zoom_overlap) if patches is None else "given",
            "backbone": str(getattr(backbone, "name", "")),
            "bank": str(bank.id),
            "image_size": int(backbone.image_size),
        },
    )


def _size(size: Any) -> tuple[int, int]:
    """``size`` (an int or an (H, W) pair of ints, each >= 1) as ``(H, W)``."""
    pair = (size, size) if isinstance(size, (int, np.integer)) else size
    ok = isinstance(pair, (tuple, list)) and len(pair) == 2
    if not ok or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in pair
    ):
        raise ConfigError(
            f"size must be a positive int or an (H, W) pair of positive ints, got {size!r}"
        )
    return int(pair[0]), int(pair[1])


def upsample(
    maps: xr.DataArray,
    size: int | tuple[int, int],
    *,
    method: str = "bilinear",
    image: Any = None,
    radius: int | None = None,
    eps: float = 1e-4,
    sigma_spatial: float = 2.0,
    sigma_range: float = 0.1,
):
    """Resize maps on their ``y``/``x`` dims to ``size`` pixels (for overlays, metrics).

    Parameters
    ----------
    maps : xr.DataArray
        Any dims ending in ``("y", "x")``, e.g. from :func:`concept_maps`.
    size : int or (int, int)
        Output ``(height, width)``; an int means square.
    method : {"bilinear", "bicubic", "nearest", "guided", "jbu"}
        Interpolation (pixel centres aligned, as ``align_corners=False``).  ``"guided"``:
        bilinear, then the guided filter (:func:`guided_filter`, He et al. 2010) with
        ``image`` as guide, so the map follows the image's edges; ``"jbu"``: joint
        bilateral upsampling (:func:`joint_bilateral_upsample`, Kopf et al. 2007) of the
        grid values with ``image`` as guide.  Both measured on SynthDerm in
        ``docs/spatial.md``.
    image : uint8 or float array, only for ``"guided"`` and ``"jbu"``
        The guide, at the output size: one image ``(H, W)`` / ``(H, W, 3)`` for all maps,
        or one per sample ``(N, H, W, 3)`` / ``(N, H, W)`` (``maps`` then needs a leading
        ``sample`` dim of length N).  Colour guides use all three channels.
    radius : int, optional
        Guided-filter window radius in pixels; default twice the patch size (output size
        over the grid size, times the maps' ``shifts`` or ``zoom`` attribute for finer
        grids from shifted or zoomed inference), the best of 0.5, 1, 2 and 4 patches on
        SynthDerm, of 8, 16 and 32 px at every ``shifts`` and of 4, 8 and 16 px at every
        ``zoom`` measured.
    eps : float, default 1e-4
        Guided-filter regularisation, relative to a guide in [0, 1]: the best on SynthDerm
        (1e-3 close, 1e-2 lower); on noisy images a larger value keeps the noise out.
    sigma_spatial, sigma_range : float, default 2.0 and 0.1
        ``"jbu"`` only: Gaussian widths in grid cells and in guide units (the best of
        0.5, 1, 2 cells and 0.05, 0.1, 0.2 on SynthDerm).

    Returns
    -------
    xr.DataArray
        Same dims and non-spatial coordinates, ``y``/``x`` of the new size.

    Examples
    --------
    >>> m = xr.DataArray(np.eye(2), dims=("y", "x"))
    >>> upsample(m, 4, method="nearest").values.astype(int).tolist()[0]
    [1, 1, 0, 0]
    >>> img = np.zeros((4, 4), np.uint8); img[:, 2:] = 255
    >>> g = upsample(m * 0 + [[0.0, 1.0]], 4, method="guided", image=img, radius=1, eps=1e-4)
    >>> np.round(g.values[0].astype(float), 1).tolist()  # bilinear: [0.0, 0.25, 0.75, 1.0]
    [0.1, 0.2, 0.8, 0.9]
    """
    from conceptlens.spatial._guided import guided_filter, joint_bilateral_upsample

    if not isinstance(maps, xr.DataArray) or maps.dims[-2:] != ("y", "x"):
        raise DataError("maps must be an xr.DataArray whose last two dims are ('y', 'x')")
    if method not in _UPSAMPLE:
        raise ConfigError(f"method must be one of {_UPSAMPLE}, got {method!r}")
    joint = method in ("guided", "jbu")
    if (image is not None) != joint:
        raise ConfigError(
            f"method={method!r} needs image= (the guide image at the output size)"
            if joint
            else f"image= is only used by method='guided' or 'jbu', not {method!r}"
        )
    h, w = _size(size)
    lead = maps.shape[:-2]
    x = torch.from_numpy(np.ascontiguousarray(maps.values, dtype=np.float32))
    x = x.reshape(1, -1, *maps.shape[-2:])
    interp = "bilinear" if joint else method
    kw: dict[str, Any] = {} if interp == "nearest" else {"align_corners": False}
    out = F.interpolate(x, size=(h, w), mode=interp, **kw).reshape(*lead, h, w).numpy()
    attrs = dict(maps.attrs)
    if joint:
        g = np.asarray(image)
        if (g.ndim == 4 and g.shape[-1] not in (1, 3)) or (
            g.ndim == 3 and g.shape[:2] == (h, w) and g.shape[-1] == 4
        ):
            raise DataError(
                f"the guide image {g.shape} has {g.shape[-1]} channels; give grey or RGB "
                "guides (drop an alpha channel with image[..., :3])"
            )
        grey_one = g.ndim == 2
        colour_one = g.ndim == 3 and g.shape[-1] in (1, 3) and g.shape[:2] == (h, w)
        if not (grey_one or colour_one) and (
            not maps.dims or maps.dims[0] != "sample" or len(g) != maps.shape[0]
        ):
            raise DataError(
                f"image has shape {g.shape}: give one guide image (H, W[, 3]) or one per "
                f"sample (N, H, W[, 3]) with maps whose first dim is 'sample' (maps dims "
                f"{maps.dims}, shape {maps.shape})"
            )
        if g.shape[:2] != (h, w) and g.shape[1:3] != (h, w):
            raise DataError(
                f"the guide image {g.shape} is not at the output size ({h}, {w}); "
                "pass the image the maps are laid on"
            )
        if method == "guided":
            if radius is None:
                per_patch = 1  # grid cells per patch of the tower (shifts, zoom)
                for key in ("shifts", "zoom"):
                    f = maps.attrs.get(key, 1)
                    if isinstance(f, (int, np.integer)) and not isinstance(f, bool) and f > 0:
                        per_patch *= int(f)
                radius = max(1, round(2 * h * per_patch / maps.shape[-2]))

            def refine(m: np.ndarray, guide: np.ndarray) -> np.ndarray:
                return guided_filter(m, guide, radius=radius, eps=eps)

            src = out
            attrs.update(upsample="guided", guided_radius=int(radius), guided_eps=float(eps))
        else:

            def refine(m: np.ndarray, guide: np.ndarray) -> np.ndarray:
                return joint_bilateral_upsample(
                    m, guide, sigma_spatial=sigma_spatial, sigma_range=sigma_range
                )

            src = maps.values
            attrs.update(
                upsample="jbu",
                jbu_sigma_spatial=float(sigma_spatial),
                jbu_sigma_range=float(sigma_range),
            )
        if grey_one or colour_one:
            out = refine(src, g).astype(np.float32)
        else:  # one sample at a time bounds the float64 temporaries
            out = np.stack([refine(src[i], g[i]) for i in range(len(g))]).astype(np.float32)
    coords = {k: v for k, v in maps.coords.items() if not set(v.dims) & {"y", "x"}}
    return xr.DataArray(out, dims=maps.dims, coords=coords, name=maps.name, attrs=attrs)
