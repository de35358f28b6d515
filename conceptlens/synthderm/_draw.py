"""Vectorised drawing of SynthDerm images.

Every layer is computed on coordinate grids over a whole block of images at once, shape
``(n, H, W)``, and only for the images in which the layer is present. Sizes are given for a
96 px image and scale with ``image_size``. The drawing order is skin, lesion body, colour
regions, structures, then artifacts (ink, hair, gel bubbles, ruler) and the vignette last,
as in a dermatoscope photograph.

Ground-truth masks mark where a layer was drawn with an opacity above 0.45 (the same rule
for artifacts and lesion structures); computing them consumes no randomness and changes no
pixel.
"""

from __future__ import annotations

import numpy as np

from conceptlens.synthderm._vocab import (
    SYNTHDERM_ARTIFACTS,
    SYNTHDERM_CONCEPTS,
    SYNTHDERM_STRUCTURES,
)

__all__ = ["draw_block"]

_CI = {name: i for i, (name, _) in enumerate(SYNTHDERM_CONCEPTS)}
F32 = np.float32

# Fitzpatrick-like skin tones 1..6 (RGB).
SKIN_TONES = np.array(
    [
        (242, 212, 192),
        (228, 186, 156),
        (204, 158, 122),
        (168, 118, 84),
        (124, 84, 58),
        (86, 58, 42),
    ],
    dtype=F32,
)
_PALETTE = np.array(
    [
        (168, 110, 66),  # light brown
        (86, 46, 26),  # dark brown
        (26, 20, 22),  # black
        (182, 50, 52),  # red
    ],
    dtype=F32,
)
_VEIL = np.array((150, 172, 212), dtype=F32)
_REGRESSION = np.array((244, 236, 232), dtype=F32)
_NETWORK = np.array((12, 6, 4), dtype=F32)
_GLOBULE = np.array((8, 5, 4), dtype=F32)
_STREAK = np.array((16, 9, 6), dtype=F32)
_PEPPER = np.array((110, 122, 150), dtype=F32)
_MILIA = np.array((252, 250, 238), dtype=F32)
_COMEDO_CORE = np.array((18, 13, 9), dtype=F32)
_COMEDO_RIM = np.array((196, 156, 72), dtype=F32)
_VESSEL = np.array((208, 24, 40), dtype=F32)
_INK = np.array((128, 40, 170), dtype=F32)
_HAIR = np.array((24, 16, 12), dtype=F32)


def _u(rng: np.random.Generator, m: int, lo: float, hi: float) -> np.ndarray:
    """(m, 1, 1) float32 uniform parameters, broadcastable over (m, H, W)."""
    return rng.uniform(lo, hi, size=(m, 1, 1)).astype(F32)


def _blend(
    img: np.ndarray,
    idx: np.ndarray,
    alpha: np.ndarray,
    color: np.ndarray,
    scale: np.ndarray | None = None,
    index: np.ndarray | None = None,
) -> None:
    """In place: ``img[idx] = img[idx] * (1 - alpha) + color * alpha`` per channel.

    ``img`` holds channel planes, shape (n, 3, H, W). Only pixels with ``alpha > 0`` are
    touched (most layers cover a small part of the image). ``color`` is one RGB triple or one per
    image ``(m, 3)``; with ``index`` (m, H, W) ints, ``color`` is a palette ``(p, 3)``
    indexed per pixel. ``scale`` (m, H, W) optionally multiplies the colour per pixel.
    """
    if idx.size == 0:
        return
    _, h, w = alpha.shape
    hw = h * w
    sel = np.flatnonzero(alpha)
    if sel.size == 0:
        return
    a = alpha.reshape(-1)[sel]
    img_of = sel // hw
    gpix = idx[img_of] * (3 * hw) + (sel - img_of * hw)
    color = np.asarray(color, dtype=F32)
    if index is not None:
        col = color[index.reshape(-1)[sel]].T
    elif color.ndim == 1:
        col = color[:, None]
    else:
        col = color[img_of].T
    if scale is not None:
        col = col * scale.reshape(-1)[sel][None, :]
    flat = img.reshape(-1)
    for ch in range(3):
        at = gpix + ch * hw if ch else gpix
        px = flat[at]
        px += a * (col[ch] - px)
        flat[at] = px


def _aa(signed_px: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage from a signed pixel distance (negative inside)."""
    return np.clip(F32(0.5) - signed_px, 0, 1)


def _frac(x: np.ndarray) -> np.ndarray:
    """Fractional part (faster than ``x % 1`` for float arrays)."""
    return x - np.floor(x)


def _cell_dots(
    rng: np.random.Generator,
    m: int,
    size: int,
    cell: float,
    p_on: np.ndarray,
    r_lo: float,
    r_hi: float,
    fractions: tuple[float, ...] = (1.0,),
) -> list[np.ndarray]:
    """Randomly placed round dots, at most one per grid cell (a jittered-grid sampler).

    The image is tiled with square cells; each cell holds a dot with probability
    ``p_on`` (per image), of random radius and position inside the cell. Computed on the
    tiled array ``(m, g, c, g, c)`` by broadcasting, then cropped at a random offset.
    Returns, for each ``f`` in ``fractions``, the signed pixel distance to a circle of
    radius ``f * radius`` around the cell's dot, shape (m, size, size); ``+inf`` in cells
    without a dot.
    """
    c = max(3, round(cell))
    r_hi = min(r_hi, c / 2 - 0.5)
    r_lo = min(r_lo, r_hi)
    g = size // c + 2
    shape = (m, g, 1, g, 1)
    rad = rng.uniform(r_lo, r_hi, size=shape).astype(F32)
    room = F32(c) - 2 * rad
    cy = rad + rng.random(shape, dtype=F32) * room
    cx = rad + rng.random(shape, dtype=F32) * room
    p = np.asarray(p_on, dtype=F32).reshape(m, 1, 1, 1, 1)
    off = np.where(rng.random(shape, dtype=F32) < p, F32(0), F32(np.inf))
    local = np.arange(c, dtype=F32) + F32(0.5)
    dy = local[None, None, :, None, None] - cy
    dx = local[None, None, None, None, :] - cx
    dist = np.sqrt(dy * dy + dx * dx) + off  # (m, g, c, g, c)
    oy, ox = (int(v) for v in rng.integers(0, c, size=2))
    out = []
    for frac in fractions:
        d = (dist - F32(frac) * rad).reshape(m, g * c, g * c)
        out.append(d[:, oy : oy + size, ox : ox + size])
    return out


def draw_block(
    rng: np.random.Generator, concepts: np.ndarray, skin_tone: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Draw one block of images.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of all drawing randomness.
    concepts : ndarray of uint8, shape (n, C)
        Ground-truth concept vector per image, columns as ``SYNTHDERM_CONCEPTS``.
    skin_tone : ndarray of int, shape (n,)
        Skin tone 1..6.
    size : int
        Image side in pixels.

    Returns
    -------
    images : ndarray of uint8, shape (n, size, size, 3)
    lesion_mask : ndarray of bool, shape (n, size, size)
    artifact_masks : dict artifact name -> ndarray of bool, shape (n, size, size)
    structure_masks : dict structure name -> ndarray of bool, shape (n, size, size)
        One per ``SYNTHDERM_STRUCTURES`` concept: the pixels where that structure (or
        colour region) was drawn with opacity > 0.45, before later layers (other
        structures, artifacts) were drawn over it. All False where it is absent.
    """
    n = concepts.shape[0]
    S = size
    k = size / 96.0  # a Python float keeps float32 arrays float32 (NEP 50)
    has = {name: np.flatnonzero(concepts[:, i]) for name, i in _CI.items()}
    ax = np.arange(S, dtype=F32)
    yy = ax[None, :, None]
    xx = ax[None, None, :]

    # -- skin ------------------------------------------------------------------------
    base = SKIN_TONES[np.asarray(skin_tone) - 1] * rng.uniform(0.95, 1.05, (n, 3)).astype(F32)
    # Skin texture: a sum of 3 plane waves sin(a x + b y + p) = sin(ax)cos(by+p) +
    # cos(ax)sin(by+p), i.e. a rank-6 product evaluated as one batched matmul.
    ang = rng.uniform(0, np.pi, (n, 1, 3)).astype(F32)
    freq = rng.uniform(0.04, 0.16, (n, 1, 3)).astype(F32) / k
    fx = ax[None, :, None] * (np.cos(ang) * freq)  # (n, W, 3)
    fy = ax[None, :, None] * (np.sin(ang) * freq) + rng.uniform(0, 6.3, (n, 1, 3)).astype(F32)
    left = np.concatenate([np.cos(fy), np.sin(fy)], axis=2)  # (n, H, 6)
    right = np.concatenate([np.sin(fx), np.cos(fx)], axis=2).transpose(0, 2, 1)  # (n, 6, W)
    tex = np.matmul(left, right)  # (n, H, W)
    # fine grain (sensor noise) folded into the texture: uniform, +-2.5 %
    noise = rng.integers(0, 255, size=(n, S, S), dtype=np.uint8, endpoint=True)
    tex += noise.astype(F32) * F32(2 / 255) - F32(1.0)

    # -- lesion geometry -------------------------------------------------------------
    large = concepts[:, _CI["large_diameter"]].astype(bool)
    asym = concepts[:, _CI["asymmetry"]].astype(bool)
    irreg = concepts[:, _CI["irregular_border"]].astype(bool)
    r = np.where(large, rng.uniform(0.33, 0.37, n), rng.uniform(0.19, 0.23, n)) * S
    # Asymmetric lesions: a smaller main body plus an offset lobe, about as wide overall.
    r_main = np.where(asym, 0.85 * r, r)
    lobe_dir = np.asarray(rng.uniform(0, 2 * np.pi, n))
    shift = np.where(asym, 0.30 * r, 0.0)
    cx0 = np.asarray(rng.uniform(-0.06, 0.06, n) * S + S / 2)
    cy0 = np.asarray(rng.uniform(-0.06, 0.06, n) * S + S / 2)
    cx = (cx0 - shift * np.cos(lobe_dir)).astype(F32)[:, None, None]
    cy = (cy0 - shift * np.sin(lobe_dir)).astype(F32)[:, None, None]
    dx = xx - cx
    dy = yy - cy
    rho = np.sqrt(dx * dx + dy * dy)
    theta = np.arctan2(dy, dx)
    # Boundary radius as a function of angle: slightly elliptic and smooth, or jagged.
    ecc = _u(rng, n, 0.0, 0.08)
    phi = _u(rng, n, 0, np.pi)
    border = ecc * np.cos(2 * (theta - phi))
    border += F32(0.025) * np.sin(3 * theta + _u(rng, n, 0, 6.3))
    if irreg.any():
        i = np.flatnonzero(irreg)
        t = theta[i]
        k1 = rng.integers(9, 15, size=(i.size, 1, 1)).astype(F32)
        k2 = rng.integers(16, 25, size=(i.size, 1, 1)).astype(F32)
        saw = _frac(k1 * t / F32(2 * np.pi) + _u(rng, i.size, 0, 1))
        notch = F32(0.28) * (np.abs(2 * saw - 1) * 2 - 1)  # triangle wave: sharp notches
        notch += F32(0.09) * np.sin(k2 * t + _u(rng, i.size, 0, 6.3))
        border[i] += notch
    rmain = r_main.astype(F32)[:, None, None]
    f = rho / (rmain * (1 + border))  # < 1 inside the lesion body
    lobe_f = None
    if asym.any():
        i = np.flatnonzero(asym)
        rl = (0.70 * r[i]).astype(F32)[:, None, None]
        dist_l = (0.30 + 1.15) * r[i]  # a narrow waist between body and lobe
        lx = (cx[i, 0, 0] + dist_l * np.cos(lobe_dir[i])).astype(F32)[:, None, None]
        ly = (cy[i, 0, 0] + dist_l * np.sin(lobe_dir[i])).astype(F32)[:, None, None]
        d_l = np.sqrt((xx - lx) ** 2 + (yy - ly) ** 2)
        lobe_f = d_l / (rl * (1 + border[i]))
        f[i] = np.minimum(f[i], lobe_f)
    # signed distance in px (approximate) to the lesion edge
    edge_px = (f - 1) * rmain
    lesion_alpha = _aa(edge_px)
    lesion_mask = edge_px < 0

    # lesion body colour: darker than the skin for every tone, darker towards the centre
    brown = np.array((126, 80, 50), dtype=F32) * rng.uniform(0.8, 1.15, (n, 1)).astype(F32)
    body = np.minimum(base * F32(0.6), brown)
    shade = F32(0.80) + F32(0.25) * np.clip(f, 0, 1)
    mottle_x = np.sin((xx - cx) * (_u(rng, n, 0.08, 0.16) / k) + _u(rng, n, 0, 6.3))
    mottle_y = np.sin((yy - cy) * (_u(rng, n, 0.08, 0.16) / k) + _u(rng, n, 0, 6.3))
    mottle = F32(1) + F32(0.05) * (mottle_y * mottle_x)
    body_scale = shade * mottle
    if asym.any() and lobe_f is not None:
        i = np.flatnonzero(asym)
        in_lobe = (lobe_f < f[i] + F32(1e-6)) & (lobe_f < 1.05)
        body_scale[i] *= np.where(in_lobe, F32(0.5), F32(1))
    # skin * texture outside, lesion body inside, as one batched matmul
    # (n, 3, 2) colours @ (n, 2, HW) weights -> image planes (n, 3, H, W)
    grain = F32(1) + F32(0.025) * tex
    weights = np.empty((n, 2, S, S), dtype=F32)
    np.multiply(grain, F32(1) - lesion_alpha, out=weights[:, 0])
    np.multiply(body_scale * grain, lesion_alpha, out=weights[:, 1])
    colours = np.stack([base, body], axis=2)  # (n, 3, 2)
    img = np.matmul(colours, weights.reshape(n, 2, S * S)).reshape(n, 3, S, S)
    inner = np.clip((F32(0.93) - f) * rmain, 0, 1)  # coverage well inside the lesion
    structures = {name: np.zeros((n, S, S), dtype=bool) for name in SYNTHDERM_STRUCTURES}

    # -- colour concepts -------------------------------------------------------------
    i = has["multiple_colors"]
    if i.size:
        ns = rng.integers(3, 5, size=i.size)
        # always a black and a red region, then one or both browns in random order
        browns = np.where(rng.random((i.size, 1)) < 0.5, [[1, 0]], [[0, 1]])
        perm = np.concatenate([np.full((i.size, 2), [2, 3]), browns], axis=1)
        wob = theta[i] + F32(0.35) * np.sin(rho[i] / (F32(4) * k) + _u(rng, i.size, 0, 6.3))
        rot = _u(rng, i.size, 0, 2 * np.pi)
        turn = _frac((wob - rot) / F32(2 * np.pi))
        sector = np.minimum((turn * ns[:, None, None]).astype(np.intp), ns[:, None, None] - 1)
        palette = _PALETTE[perm].reshape(-1, 3)  # (m * 4, 3): each image's colour order
        pidx = np.arange(i.size)[:, None, None] * 4 + sector
        a = inner[i] * F32(0.92)
        _blend(img, i, a, palette, index=pidx)
        structures["multiple_colors"][i] = a > 0.45
    i = has["blue_white_veil"]
    if i.size:
        a = rng.uniform(0, 2 * np.pi, i.size)
        off = (0.25 * r[i]).astype(F32)
        vx = cx[i] + (off * np.cos(a))[:, None, None].astype(F32)
        vy = cy[i] + (off * np.sin(a))[:, None, None].astype(F32)
        rv = (0.62 * r_main[i]).astype(F32)[:, None, None]
        dv = np.sqrt((xx - vx) ** 2 + (yy - vy) ** 2) - rv
        haze = F32(0.82) + F32(0.1) * np.sin(dx[i] / (F32(3) * k)) * np.cos(dy[i] / (F32(3) * k))
        a = np.clip(F32(0.5) - dv / (F32(2) * k), 0, 1) * inner[i] * haze
        _blend(img, i, a, _VEIL)
        structures["blue_white_veil"][i] = a > 0.45
    i = has["regression_structures"]
    if i.size:
        a = rng.uniform(0, 2 * np.pi, i.size)
        off = (0.35 * r_main[i]).astype(F32)
        gx = cx[i] + (off * np.cos(a))[:, None, None].astype(F32)
        gy = cy[i] + (off * np.sin(a))[:, None, None].astype(F32)
        rg = (0.58 * r_main[i]).astype(F32)[:, None, None]
        ddx, ddy = xx - gx, yy - gy
        ang = np.arctan2(ddy, ddx)
        lobes = F32(1) + F32(0.3) * np.sin(5 * ang + _u(rng, i.size, 0, 6.3))
        dg = np.sqrt(ddx * ddx + ddy * ddy) - rg * lobes
        scar = _aa(dg / k) * inner[i]
        _blend(img, i, scar * F32(0.95), _REGRESSION)
        structures["regression_structures"][i] = scar * F32(0.95) > 0.45
        # blue-grey peppering (fine granules) inside the white scar-like area
        (sd,) = _cell_dots(rng, i.size, S, 5.0 * k, np.full(i.size, 0.4), 0.6 * k, 0.9 * k)
        _blend(img, i, _aa(sd) * scar * F32(0.8), _PEPPER)

    # -- structures ------------------------------------------------------------------
    i = has["atypical_pigment_network"]
    if i.size:
        m = i.size
        period = _u(rng, m, 5.5, 7.0) * k
        warp = _u(rng, m, 1.0, 2.0) * k
        u = xx + warp * np.sin(yy / (F32(4) * k) + _u(rng, m, 0, 6.3))
        v = yy + warp * np.sin(xx / (F32(5) * k) + _u(rng, m, 0, 6.3))
        du = np.abs(_frac(u / period) - F32(0.5))
        dv = np.abs(_frac(v / period) - F32(0.5))
        line = F32(0.5) - np.maximum(du, dv)  # 0 on a grid line, 0.5 at cell centres
        width = (F32(0.8) + F32(0.6) * np.sin(xx / (F32(7) * k) + _u(rng, m, 0, 6.3))) * k
        a = np.clip(width - line * period + F32(0.5), 0, 1)
        a = a * inner[i] * F32(0.92)
        _blend(img, i, a, _NETWORK)
        structures["atypical_pigment_network"][i] = a > 0.45
    i = has["irregular_dots_globules"]
    if i.size:
        m = i.size
        (sd,) = _cell_dots(rng, m, S, 6.5 * k, rng.uniform(0.45, 0.7, m), 0.9 * k, 2.4 * k)
        near = np.clip((F32(1.12) - f[i]) * rmain[i], 0, 1)
        a = _aa(sd) * near
        _blend(img, i, a, _GLOBULE)
        structures["irregular_dots_globules"][i] = a > 0.45
    i = has["irregular_streaks"]
    if i.size:
        m = i.size
        ks = rng.integers(10, 16, size=m)
        t = theta[i] + F32(0.03) * np.sin(rho[i] / (F32(3) * k))
        kk = ks[:, None, None].astype(F32)
        phase = _frac(t / F32(2 * np.pi) + _u(rng, m, 0, 1)) * kk
        idx = phase.astype(np.intp)
        on = rng.random((m, 16)) < 0.75
        sel = np.take_along_axis(on, idx.reshape(m, -1), axis=1).reshape(m, S, S)
        frac = phase - idx
        stripe = np.clip((F32(0.22) - np.abs(frac - F32(0.5))) * F32(8), 0, 1) * sel
        band = np.clip((f[i] - F32(0.78)) * F32(8), 0, 1) * np.clip(
            (F32(1.42) - f[i]) * F32(6), 0, 1
        )
        a = stripe * band * F32(0.95)
        _blend(img, i, a, _STREAK)
        structures["irregular_streaks"][i] = a > 0.45
    i = has["milia_like_cysts"]
    if i.size:
        m = i.size
        (sd,) = _cell_dots(rng, m, S, 7.0 * k, rng.uniform(0.5, 0.7, m), 1.3 * k, 2.0 * k)
        a = _aa(sd) * inner[i]
        _blend(img, i, a, _MILIA)
        structures["milia_like_cysts"][i] = a > 0.45
    i = has["comedo_like_openings"]
    if i.size:
        m = i.size
        sd, sd_core = _cell_dots(
            rng, m, S, 8.5 * k, rng.uniform(0.55, 0.75, m), 2.2 * k, 3.0 * k, (1.0, 0.55)
        )
        outer = _aa(sd) * inner[i]
        core = _aa(sd_core) * inner[i]
        _blend(img, i, outer, _COMEDO_RIM)
        _blend(img, i, core, _COMEDO_CORE)
        structures["comedo_like_openings"][i] = np.maximum(outer, core) > 0.45
    i = has["dotted_vessels"]
    if i.size:
        m = i.size
        (sd,) = _cell_dots(rng, m, S, 4.5 * k, rng.uniform(0.5, 0.75, m), 0.9 * k, 1.3 * k)
        a = _aa(sd) * inner[i]
        _blend(img, i, a, _VESSEL)
        structures["dotted_vessels"][i] = a > 0.45

    # -- artifacts -------------------------------------------------------------------
    masks = {name: np.zeros((n, S, S), dtype=bool) for name in SYNTHDERM_ARTIFACTS}
    ink_side = np.full(n, -1)  # image edge the ink arc faces (0 top, 1 left, 2 bottom, 3 right)
    i = has["purple_ink"]
    if i.size:
        m = i.size
        # an arc of marker ink around the lesion, on the side away from any lobe
        extent = np.where(asym[i], 1.2 * r[i], r[i]) * np.where(irreg[i], 1.35, 1.05)
        # capped so that the stroke stays inside the vignette-free disc (see dark_corners)
        r_ink = np.minimum(extent + 6 * k, 0.36 * S).astype(F32)[:, None, None]
        rho0 = np.sqrt((xx - cx0[i, None, None]) ** 2 + (yy - cy0[i, None, None]) ** 2)
        th0 = np.arctan2(yy - cy0[i, None, None], xx - cx0[i, None, None])
        centre_angle = lobe_dir[i] + np.pi + rng.uniform(-0.8, 0.8, m)
        centre = centre_angle.astype(F32)[:, None, None]
        cos_c, sin_c = np.cos(centre_angle), np.sin(centre_angle)
        ink_side[i] = np.where(
            np.abs(cos_c) > np.abs(sin_c), np.where(cos_c < 0, 1, 3), np.where(sin_c < 0, 0, 2)
        )
        span = _u(rng, m, 0.5, 0.9)
        turn = _frac((th0 - centre) / F32(2 * np.pi) + F32(0.5))
        dang = np.abs(turn - F32(0.5)) * F32(2 * np.pi)
        half_w = _u(rng, m, 1.8, 2.6) * k
        d_ring = np.abs(rho0 - r_ink) - half_w
        d_ang = (dang - span) * rho0
        a = _aa(np.maximum(d_ring, d_ang)) * F32(0.9)
        _blend(img, i, a, _INK)
        masks["purple_ink"][i] = a > 0.45
    i = has["hair"]
    if i.size:
        m = i.size
        count = rng.integers(2, 7, size=m)
        hair = np.zeros((m, S, S), dtype=F32)
        for h in range(6):
            j = np.flatnonzero(count > h)
            mj = j.size
            px = _u(rng, mj, 0.1 * S, 0.9 * S)
            py = _u(rng, mj, 0.1 * S, 0.9 * S)
            ang = _u(rng, mj, 0, np.pi)
            curv = _u(rng, mj, -0.012, 0.012) / k
            ex, ey = xx - px, yy - py
            along = ex * np.cos(ang) + ey * np.sin(ang)
            across = -ex * np.sin(ang) + ey * np.cos(ang) + curv * along * along
            half_w = _u(rng, mj, 0.45, 0.7) * k
            a = np.clip(half_w + F32(0.5) - np.abs(across), 0, 1)
            hair[j] = np.maximum(hair[j], a)
        _blend(img, i, hair, _HAIR)
        masks["hair"][i] = hair > 0.45
    i = has["gel_bubbles"]
    if i.size:
        m = i.size
        count = rng.integers(1, 5, size=m)
        fill = np.zeros((m, S, S), dtype=F32)
        rim = np.zeros((m, S, S), dtype=F32)
        for b in range(4):
            j = np.flatnonzero(count > b)
            mj = j.size
            bx = _u(rng, mj, 0.08 * S, 0.92 * S)
            by = _u(rng, mj, 0.08 * S, 0.92 * S)
            rb = _u(rng, mj, 4.5, 9.0) * k
            d = np.sqrt((xx - bx) ** 2 + (yy - by) ** 2)
            fill[j] = np.maximum(fill[j], _aa(d - rb - F32(0.8) * k))
            ring = np.clip(F32(1.3) * k - np.abs(d - rb + F32(0.7) * k), 0, 1)
            shine = _aa(np.sqrt((xx - bx + rb * 0.4) ** 2 + (yy - by + rb * 0.4) ** 2) - k)
            rim[j] = np.maximum(rim[j], np.maximum(ring, shine))
        _blend(img, i, fill * F32(0.35), np.array((250, 250, 250), dtype=F32))
        _blend(img, i, rim, np.array((252, 252, 252), dtype=F32))
        masks["gel_bubbles"][i] = fill > 0.5
    i = has["ruler"]
    if i.size:
        m = i.size
        # a ruler never lies on the edge the ink faces, so it cannot hide the ink
        side = rng.integers(0, 4, size=m)
        avoid = ink_side[i] >= 0
        side[avoid] = (ink_side[i][avoid] + rng.integers(1, 4, size=int(avoid.sum()))) % 4
        side = side[:, None, None]
        pos = np.where(side % 2 == 0, yy, xx)  # across the bar
        pos = np.where(side >= 2, F32(S - 1) - pos, pos)
        along = np.where(side % 2 == 0, xx, yy) + _u(rng, m, 0, 20)
        start = _u(rng, m, 0, 3) * k
        width = _u(rng, m, 10, 13) * k
        bar = (pos >= start) & (pos < start + width)
        tick_step = F32(4) * k
        tick_i = np.floor(along / tick_step)
        major = _frac(tick_i / F32(5)) < F32(0.1)
        tick_len = np.where(major, F32(0.7), F32(0.4)) * width
        tick = (_frac(along / tick_step) * tick_step < F32(1.1) * k) & (pos - start < tick_len)
        bar_col = np.array((232, 230, 212), dtype=F32) * rng.uniform(0.9, 1.0, (m, 1)).astype(F32)
        _blend(img, i, bar.astype(F32) * F32(0.95), bar_col)
        _blend(img, i, (bar & tick).astype(F32), np.array((20, 20, 20), dtype=F32))
        masks["ruler"][i] = bar
    i = has["dark_corners"]
    if i.size:
        m = i.size
        dc = np.sqrt((xx - F32(S / 2)) ** 2 + (yy - F32(S / 2)) ** 2) / F32(S)
        r0 = _u(rng, m, 0.48, 0.54)
        v = np.clip((dc - r0) / F32(0.12), 0, 1)
        factor = F32(1) - F32(0.96) * v
        img[i] *= factor[:, None]
        masks["dark_corners"][i] = factor < 0.75  # visibly darkened (> 25 %)
    np.clip(img, 0, 255, out=img)
    planar = img.astype(np.uint8)
    images = np.empty((n, S, S, 3), dtype=np.uint8)
    for ch in range(3):
        images[..., ch] = planar[:, ch]
    return images, lesion_mask, masks, structures
