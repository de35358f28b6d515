"""Edge-aware refinement of maps: the guided filter (He, Sun and Tang, ECCV 2010 / TPAMI 2013).

The output is, in every ``(2r+1) x (2r+1)`` window, a linear function of the guide image
(``q = a^T I + b``) fitted by ridge regression to the input map, and averaged over the
windows that cover each pixel; so a coarse concept map takes the edges of the image.
Pure numpy: every box mean is a cumulative sum, O(1) per pixel whatever the radius.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from conceptlens.exceptions import ConfigError, DataError

__all__ = ["guided_filter", "joint_bilateral_upsample"]


def _box_mean(x: np.ndarray, r: int) -> np.ndarray:
    """Mean of ``x`` over the ``(2r+1)^2`` window around each pixel of its last two axes,
    the window clipped at the image border (so border means use fewer pixels)."""
    h, w = x.shape[-2:]
    out = x
    for axis, n in ((-2, h), (-1, w)):
        c = np.cumsum(out, axis=axis)
        zero = np.zeros_like(np.take(c, [0], axis=axis))
        c = np.concatenate([zero, c], axis=axis)
        idx = np.arange(n)
        lo, hi = np.clip(idx - r, 0, n), np.clip(idx + r + 1, 0, n)
        out = np.take(c, hi, axis=axis) - np.take(c, lo, axis=axis)
    ch = np.clip(np.arange(h) + r + 1, 0, h) - np.clip(np.arange(h) - r, 0, h)
    cw = np.clip(np.arange(w) + r + 1, 0, w) - np.clip(np.arange(w) - r, 0, w)
    return out / np.multiply.outer(ch, cw)


def _as_guide(image: Any) -> np.ndarray:
    """A guide as float64 (..., C, H, W) in [0, 1] from uint8 or float (..., H, W[, C])."""
    g = np.asarray(image)
    if g.dtype == np.uint8:
        g = g.astype(np.float64) / 255.0
    elif np.issubdtype(g.dtype, np.floating) or np.issubdtype(g.dtype, np.integer):
        g = g.astype(np.float64)
        if g.size and not np.isfinite(g).all():
            raise DataError("the guide image contains NaN or infinite values")
        if g.size and (g.min() < 0 or g.max() > 1):
            raise DataError(
                f"a float guide image must lie in [0, 1] (eps is relative to that range), got "
                f"values in [{g.min():.3g}, {g.max():.3g}]; pass uint8 pixels or divide by 255"
            )
    else:
        raise DataError(f"the guide image must be uint8 or float, got dtype {g.dtype}")
    return g


def guided_filter(
    p: Any, guide: Any, *, radius: int, eps: float = 1e-4, channels: str = "last"
) -> np.ndarray:
    """Guided filter of maps ``p`` with an image as guide.

    Parameters
    ----------
    p : float array (..., K, H, W) or (H, W)
        Maps to filter (e.g. bilinearly upsampled concept maps); the leading dims before
        ``K`` must match the guide's leading dims (one guide per sample) or be absent.
    guide : uint8 or float array (..., H, W) grey, or (..., H, W, C) colour
        uint8 is divided by 255; a float guide must lie in [0, 1].  ``channels="last"``:
        a trailing axis of length 1 or 3 is read as colour channels.
    radius : int
        Window radius r (window ``2r+1`` pixels square), e.g. the patch size.
    eps : float, default 1e-4
        Ridge penalty on the slope ``a``: a window whose guide variance is well below
        ``eps`` is smoothed, one well above it keeps the guide's edges.  It does not depend
        on the scale of ``p`` (the filter is linear in ``p``).
    channels : {"last", "none"}
        ``"none"``: the guide has no channel axis (grey, any leading dims).

    Returns
    -------
    numpy.ndarray, float64, the shape of ``p``

    Notes
    -----
    Grey guide: ``a = cov(I, p) / (var(I) + eps)``, ``b = mean(p) - a mean(I)`` per
    window, ``q = mean(a) I + mean(b)``; colour: ``a = (Sigma + eps U)^-1 cov(I, p)``
    (He et al., TPAMI 2013, eqs. 7-8 and 14-16). Windows are clipped at the border.

    Examples
    --------
    >>> g = np.zeros((6, 6)); g[:, 3:] = 1.0          # a vertical edge
    >>> p = np.tile(np.linspace(0, 1, 6), (6, 1))      # a blurred step, 0.2 per pixel
    >>> q = guided_filter(p, g, radius=2, eps=1e-4)
    >>> round(float(q[0, 3] - q[0, 2]), 2)             # the step moves onto the edge
    0.48
    """
    if not isinstance(radius, (int, np.integer)) or radius < 1:
        raise ConfigError(f"radius must be a positive integer (pixels), got {radius!r}")
    if not (np.isfinite(eps) and eps > 0):
        raise ConfigError(f"eps must be a positive number, got {eps!r}")
    if channels not in ("last", "none"):
        raise ConfigError(f"channels must be 'last' or 'none', got {channels!r}")
    g = _as_guide(guide)
    colour = channels == "last" and g.ndim >= 3 and g.shape[-1] in (1, 3)
    if colour:
        g = np.moveaxis(g, -1, -3)  # (..., C, H, W)
    else:
        g = g[..., None, :, :]
    if g.shape[-3] == 1:
        colour = False
    q = np.asarray(p, dtype=np.float64)
    if q.ndim < 2:
        raise DataError(f"maps must have at least 2 dims (H, W), got shape {q.shape}")
    if not np.isfinite(q).all():
        raise DataError("the maps contain NaN or infinite values")
    if q.shape[-2:] != g.shape[-2:]:
        raise DataError(
            f"maps are {q.shape[-2:]} pixels but the guide image is {g.shape[-2:]}; "
            "upsample the maps to the image size first"
        )
    lead = g.shape[:-3]
    squeeze = q.ndim == 2
    if squeeze:
        q = q[None]
    if lead and q.shape[: len(lead)] != lead:
        raise DataError(
            f"{int(np.prod(lead))} guide image(s) {lead} do not match the maps' leading dims "
            f"{q.shape[:-2]}; give one guide image per sample, or a single image"
        )
    # maps as (..., K, H, W) with the guide broadcast over K
    if lead:
        q = q.reshape(*lead, -1, *q.shape[-2:])
    else:
        q = q.reshape(-1, *q.shape[-2:])
    r = int(radius)
    h, w = g.shape[-2:]
    mean_p = _box_mean(q, r)  # (..., K, H, W)
    if not colour:
        gi = g[..., 0, :, :][..., None, :, :]  # (..., 1, H, W)
        mean_i = _box_mean(gi, r)
        var_i = _box_mean(gi * gi, r) - mean_i**2
        cov = _box_mean(gi * q, r) - mean_i * mean_p
        a = cov / (var_i + eps)
        b = mean_p - a * mean_i
        out = _box_mean(a, r) * gi + _box_mean(b, r)
    else:
        mean_i = _box_mean(g, r)  # (..., 3, H, W)
        c = g.shape[-3]
        sigma = np.empty((*lead, h, w, c, c))
        for i in range(c):
            for j in range(i, c):
                v = _box_mean(g[..., i, :, :] * g[..., j, :, :], r)
                v = v - mean_i[..., i, :, :] * mean_i[..., j, :, :]
                sigma[..., i, j] = v
                sigma[..., j, i] = v
        sigma = sigma + eps * np.eye(c)
        inv = np.linalg.inv(sigma)  # (..., H, W, C, C)
        # cov(I_c, p_k): (..., K, H, W, C)
        cov = np.stack(
            [
                _box_mean(g[..., ch, None, :, :] * q, r) - mean_i[..., ch, None, :, :] * mean_p
                for ch in range(c)
            ],
            axis=-1,
        )
        a = np.einsum("...hwcd,...khwd->...khwc", inv, cov)  # (..., K, H, W, C)
        b = mean_p - np.einsum("...khwc,...chw->...khw", a, mean_i)
        mean_a = np.moveaxis(_box_mean(np.moveaxis(a, -1, -3), r), -3, -1)
        out = np.einsum("...khwc,...chw->...khw", mean_a, g) + _box_mean(b, r)
    out = out.reshape(np.shape(p) if not squeeze else (1, h, w))
    return out[0] if squeeze else out


def joint_bilateral_upsample(
    maps: Any,
    guide: Any,
    *,
    sigma_spatial: float = 2.0,
    sigma_range: float = 0.1,
) -> np.ndarray:
    """Joint bilateral upsampling (Kopf, Cohen, Lischinski, Uyttendaele, SIGGRAPH 2007).

    Each output pixel ``p`` is a weighted mean of the grid values ``M_q``:
    ``sum_q M_q f(|p' - q|) g(|I_p - I_q|) / sum_q f g`` with ``p'`` the pixel's
    position on the grid (pixel centres aligned, as bilinear with
    ``align_corners=False``), ``f`` a Gaussian of width ``sigma_spatial`` grid cells,
    ``g`` a Gaussian of width ``sigma_range`` on the colour distance between the pixel
    and the mean colour of grid cell ``q`` (the guide averaged over the cell), so a
    value does not spread across an image edge. Cells farther than
    ``max(1, 3 sigma_spatial)`` cells from ``p'`` along either axis are left out.

    Parameters
    ----------
    maps : float array (..., K, gh, gw) or (gh, gw)
        Maps on their grid; leading dims before ``K`` match the guide's, as in
        :func:`guided_filter`.
    guide : uint8 or float array (..., H, W) or (..., H, W, 3)
        ``H``, ``W`` multiples of ``gh``, ``gw``; float guides in [0, 1].
    sigma_spatial : float, default 2.0
        In grid cells.
    sigma_range : float, default 0.1
        In guide units ([0, 1] per channel).

    Returns
    -------
    numpy.ndarray, float64, (..., K, H, W)

    Examples
    --------
    >>> m = np.array([[1.0, 0.0]])                     # a 1 x 2 grid
    >>> img = np.zeros((4, 8)); img[:, :3] = 1.0       # the edge is at x = 3, not 4
    >>> q = joint_bilateral_upsample(m, img, sigma_spatial=1.0, sigma_range=0.1)
    >>> np.round(q[0], 2).tolist()
    [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    """
    for name, v in (("sigma_spatial", sigma_spatial), ("sigma_range", sigma_range)):
        if not (np.isfinite(v) and v > 0):
            raise ConfigError(f"{name} must be a positive number, got {v!r}")
    g = _as_guide(guide)
    colour = g.ndim >= 3 and g.shape[-1] in (1, 3)
    g = np.moveaxis(g, -1, -3) if colour else g[..., None, :, :]  # (..., C, H, W)
    m = np.asarray(maps, dtype=np.float64)
    if m.ndim < 2 or not np.isfinite(m).all():
        raise DataError(f"maps must be finite with at least 2 dims, got shape {m.shape}")
    squeeze = m.ndim == 2
    if squeeze:
        m = m[None]
    lead = g.shape[:-3]
    if lead and m.shape[: len(lead)] != lead:
        raise DataError(
            f"guide image(s) {lead} do not match the maps' leading dims {m.shape[:-2]}; give "
            "one guide image per sample, or a single image"
        )
    gh, gw = m.shape[-2:]
    h, w = g.shape[-2:]
    if h % gh or w % gw:
        raise DataError(
            f"the guide image ({h}, {w}) is not a whole multiple of the map grid ({gh}, {gw})"
        )
    kshape = m.shape
    m = m.reshape(*lead, -1, gh, gw)
    # mean guide colour of each grid cell: (..., C, gh, gw)
    cells = g.reshape(*g.shape[:-2], gh, h // gh, gw, w // gw).mean(axis=(-3, -1))
    py = (np.arange(h) + 0.5) * gh / h - 0.5  # pixel centres on the grid
    px = (np.arange(w) + 0.5) * gw / w - 0.5
    reach = max(1.0, 3.0 * sigma_spatial)  # cells farther than this (per axis) are left out
    blocks = []
    for qy in range(gh):
        ys = np.flatnonzero(np.abs(py - qy) <= reach)
        for qx in range(gw):
            xs = np.flatnonzero(np.abs(px - qx) <= reach)
            blocks.append((qy, qx, slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1)))

    def log_weight(qy: int, qx: int, sy: slice, sx: slice) -> np.ndarray:  # (..., h', w')
        fy = ((py[sy] - qy) / sigma_spatial) ** 2
        fx = ((px[sx] - qx) / sigma_spatial) ** 2
        diff = g[..., sy, sx] - cells[..., qy, qx, None, None]
        return -0.5 * (np.add.outer(fy, fx) + (diff**2).sum(axis=-3) / sigma_range**2)

    # the largest log-weight per pixel is subtracted (it cancels), so no pixel underflows
    top = np.full((*lead, h, w), -np.inf)
    for qy, qx, sy, sx in blocks:
        top[..., sy, sx] = np.maximum(top[..., sy, sx], log_weight(qy, qx, sy, sx))
    num = np.zeros((*m.shape[:-2], h, w))
    den = np.zeros((*lead, 1, h, w))
    for qy, qx, sy, sx in blocks:
        wgt = np.exp(log_weight(qy, qx, sy, sx) - top[..., sy, sx])[..., None, :, :]
        num[..., sy, sx] += wgt * m[..., qy, qx, None, None]
        den[..., sy, sx] += wgt
    out = num / den  # den >= 1: the best cell has weight exp(0)
    out = out.reshape(*kshape[:-2], h, w)
    return out[0] if squeeze else out
