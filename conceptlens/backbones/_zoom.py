"""Zoomed inference: tokens that see ``1 / z`` of a patch, without retraining.

A ViT with ``p``-pixel patches sees an ``S x S`` image as a ``gh x gw`` grid of tokens,
each looking at a ``p x p`` window. Upscaling the image ``z`` times (to ``z S x z S``,
resampled as the backbone's own preprocessing resamples, e.g. bicubic), cutting it into
tiles of the tower's input size ``S`` and stitching the tiles' token grids gives a
``(z gh) x (z gw)`` grid whose tokens each see a ``p / z``-pixel window of the ``S x S``
image: finer cells *and* smaller receptive fields, at the price of ``z * z`` (or, with
overlap, more) forward passes -- and of a scale shift, since the tower now sees every
structure ``z`` times larger than it was trained on.

Geometry. With ``overlap = o`` tokens (default 0), the upscaled image is padded by
``o p`` pixels on each side (reflected) and cut into tiles of ``S`` pixels every
``(gh - 2 o) p`` pixels; of each tile only the central ``(gh - 2 o) x (gw - 2 o)`` tokens
are kept, so every kept token had at least ``o`` tokens of context on each side inside
its tile. Token ``(i, j)`` of tile ``(a, b)`` is centred at upscaled pixel
``(a (gh - 2 o) p + (i - o + 1/2) p, ...)`` and is stored at
``I = a (gh - 2 o) + i - o``: in the ``S x S`` image it is centred at
``((I + 1/2) p / z, (J + 1/2) p / z)``, the centre of cell ``(I, J)`` of the
``(z gh) x (z gw)`` grid that :func:`~conceptlens.spatial.upsample`,
:func:`~conceptlens.spatial.pool_to_grid` and
:func:`~conceptlens.spatial.resolution_ceiling` assume. The tiles must cover the grid
exactly: ``gh - 2 o`` must divide ``z gh`` (and likewise for ``gw``).

Cost: ``(z gh / (gh - 2 o))**2`` forward passes per image (``z * z`` without overlap).
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from conceptlens.backbones._shift import positive_int
from conceptlens.exceptions import ConfigError

__all__ = ["check_zoom", "tile_layout", "zoomed_preprocessor", "zoomed_tokens"]


def check_zoom(zoom: object, name: str = "zoom") -> int:
    """``zoom`` as an int >= 1, or :class:`ConfigError` saying what is allowed.

    Examples
    --------
    >>> check_zoom(2)
    2
    """
    return positive_int(
        zoom,
        name,
        "1: the plain patch grid, z: the image upscaled z times and run as z*z tiles, "
        "tokens seeing 1/z of a patch",
    )


def tile_layout(grid: tuple[int, int], zoom: int, overlap: int = 0) -> tuple[int, int]:
    """Tiles per side ``(th, tw)`` for a token grid, zoom factor and overlap in tokens.

    Raises
    ------
    ConfigError
        ``overlap`` is not an int >= 0, leaves no token of a tile, or the tiles of
        ``g - 2 overlap`` kept tokens do not cover the ``z g`` grid exactly; the message
        lists the overlaps that fit.

    Examples
    --------
    >>> tile_layout((12, 12), 2), tile_layout((12, 12), 2, overlap=2)
    ((2, 2), (3, 3))
    """
    z = check_zoom(zoom)
    if isinstance(overlap, bool) or not isinstance(overlap, numbers.Integral) or overlap < 0:
        raise ConfigError(f"zoom_overlap must be an int >= 0 (tokens), got {overlap!r}")
    o = int(overlap)
    gh, gw = grid

    def fits(v: int) -> bool:
        return all(g - 2 * v >= 1 and (z * g) % (g - 2 * v) == 0 for g in (gh, gw))

    if not fits(o):
        ok = [v for v in range(min(gh, gw)) if fits(v)]
        raise ConfigError(
            f"zoom={z}, zoom_overlap={o}: tiles keeping {gh - 2 * o}x{gw - 2 * o} of the "
            f"tower's {gh}x{gw} tokens do not tile the {z * gh}x{z * gw} zoomed grid; use "
            f"zoom_overlap in {ok}"
        )
    return (z * gh) // (gh - 2 * o), (z * gw) // (gw - 2 * o)


def zoomed_preprocessor(preprocessor: Any, zoom: int) -> Any:
    """A copy of a backbone's preprocessor that resizes to ``zoom`` times its size.

    The resampling (interpolation, antialiasing, centre crop, normalisation) is the
    backbone's own; images already ``z S x z S`` are not resampled.
    """
    z = check_zoom(zoom)
    if z == 1:
        return preprocessor
    zoomed = copy.copy(preprocessor)
    zoomed.size = int(preprocessor.size) * z
    return zoomed


def zoomed_tokens(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    grid: tuple[int, int],
    zoom: int,
    overlap: int = 0,
) -> torch.Tensor:
    """Stitched token grid (N, z*gh, z*gw, D) of the tiles of zoomed images.

    Parameters
    ----------
    forward : callable
        Preprocessed images (N, C, S, S) -> tokens (N, gh, gw, D).
    x : torch.Tensor
        Zoomed, preprocessed images (N, C, z S, z S).
    grid : (int, int)
        The tower's token grid ``(gh, gw)`` at its input size ``S``.
    zoom : int
        The factor ``z``.
    overlap : int, default 0
        Tokens of context kept away from each tile's border (see the module notes).
    """
    z = check_zoom(zoom)
    gh, gw = grid
    th, tw = tile_layout(grid, z, overlap)
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if h % (z * gh) or w % (z * gw) or h // (z * gh) != w // (z * gw):
        raise ConfigError(
            f"zoom={z} needs square patches that tile the input: a {h}x{w} zoomed input "
            f"on a {z * gh}x{z * gw} token grid is not"
        )
    p = h // (z * gh)
    o = int(overlap)
    if o:
        x = F.pad(x, (o * p, o * p, o * p, o * p), mode="reflect")
    kh, kw = gh - 2 * o, gw - 2 * o
    rows = []
    for a in range(th):
        row = []
        for b in range(tw):
            tile = x[..., a * kh * p : a * kh * p + gh * p, b * kw * p : b * kw * p + gw * p]
            row.append(forward(tile)[:, o : gh - o, o : gw - o])
        rows.append(torch.cat(row, dim=2))
    return torch.cat(rows, dim=1)
