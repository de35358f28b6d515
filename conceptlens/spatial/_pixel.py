"""Per-pixel features and classifiers of :class:`~conceptlens.spatial.ConceptSegmenter`.

:func:`pixel_features` is a fixed filter bank on the image (``scipy.ndimage``), as in
ilastik's pixel classification: colour-opponent channels, Gaussian smoothing, gradient
magnitude, Laplacian of Gaussian and Hessian eigenvalues at a few scales.
``_fit_classifier`` fits one concept's logistic regression or one-hidden-layer MLP by
L-BFGS on weighted pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from conceptlens.exceptions import ConfigError, DataError

__all__ = [
    "BASE_SIGMAS",
    "VESSEL_BETA",
    "VESSEL_C",
    "default_sigmas",
    "pixel_feature_names",
    "pixel_features",
]

#: filter scales in pixels at a 96 px image; scaled linearly with the image size
#: (0.5 px added to the first 0.7-4 px by the calibration images, docs/spatial.md)
BASE_SIGMAS = (0.5, 0.7, 1.0, 1.6, 2.5, 4.0)
_CHANNELS = ("intensity", "opp_rg", "opp_yb", "chroma")
#: Frangi vesselness: sensitivity to the eigenvalue ratio (blob vs line) ...
VESSEL_BETA = 0.5
#: ... and to the structure strength, in scale-normalised Hessian units of intensities
#: in [0, 1] (about half the 99th percentile on SynthDerm)
VESSEL_C = 0.1


# ----------------------------------------------------------------------------- filters
def default_sigmas(image_size: int) -> tuple[float, ...]:
    """The filter scales for ``image_size`` px images: :data:`BASE_SIGMAS` x size / 96."""
    return tuple(round(s * image_size / 96.0, 4) for s in BASE_SIGMAS)


def _channels(image: np.ndarray) -> np.ndarray:
    """(4, H, W) float64: intensity, red-green and yellow-blue opponents, chroma."""
    x = np.asarray(image)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise DataError(f"images must be (H, W, 3) RGB, got shape {x.shape}")
    if x.dtype == np.uint8:
        x = x.astype(np.float64) / 255.0
    elif np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
        if not np.isfinite(x).all() or x.min() < 0.0 or x.max() > 1.0:
            raise DataError(
                f"float images must hold finite values in [0, 1], got values in "
                f"[{np.nanmin(x):.4g}, {np.nanmax(x):.4g}]"
                + (" and NaN/inf" if not np.isfinite(x).all() else "")
                + "; divide 0-255 images by 255 or pass them as uint8"
            )
    else:
        raise DataError(
            f"images must be uint8 (0-255) or float in [0, 1], got dtype {x.dtype}; "
            "convert with x.astype(np.uint8) when the values are 0-255"
        )
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    o1 = (r - g) / math.sqrt(2.0)
    o2 = (r + g - 2.0 * b) / math.sqrt(6.0)
    return np.stack([(r + g + b) / 3.0, o1, o2, np.hypot(o1, o2)])


def pixel_feature_names(
    sigmas: Sequence[float], *, vesselness: bool = False, local_std: bool = False
) -> list[str]:
    """Names of the rows of :func:`pixel_features` for these ``sigmas`` and options."""
    names = list(_CHANNELS)
    for s in sigmas:
        names += [f"gauss_{c}_s{s:g}" for c in _CHANNELS]
        names += [f"gradmag_intensity_s{s:g}", f"gradmag_chroma_s{s:g}"]
        names += [f"log_intensity_s{s:g}", f"hessian_hi_s{s:g}", f"hessian_lo_s{s:g}"]
        if vesselness:
            names += [f"vessel_bright_s{s:g}", f"vessel_dark_s{s:g}"]
        if local_std:
            names += [f"std_intensity_s{s:g}", f"std_chroma_s{s:g}"]
    return names


def _vesselness(hi: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frangi's 2-D vesselness of bright and of dark lines from the (scale-normalised)
    Hessian eigenvalues ``hi >= lo``.

    With ``l2`` the eigenvalue of larger magnitude and ``l1`` the other one,
    ``V = exp(-(l1 / l2)**2 / (2 beta**2)) * (1 - exp(-(l1**2 + l2**2) / (2 c**2)))``,
    ``beta`` = :data:`VESSEL_BETA`, ``c`` = :data:`VESSEL_C`; a bright line needs
    ``l2 < 0``, a dark one ``l2 > 0`` (0 elsewhere).
    """
    big = np.abs(hi) > np.abs(lo)
    l2 = np.where(big, hi, lo)
    l1 = np.where(big, lo, hi)
    safe = np.where(l2 == 0, 1.0, l2)
    blob = np.where(l2 == 0, 0.0, np.exp(-((l1 / safe) ** 2) / (2 * VESSEL_BETA**2)))
    v = blob * (1.0 - np.exp(-(l1 * l1 + l2 * l2) / (2 * VESSEL_C**2)))
    return np.where(l2 < 0, v, 0.0), np.where(l2 > 0, v, 0.0)


def pixel_features(
    image: Any,
    sigmas: Sequence[float] | None = None,
    *,
    vesselness: bool = False,
    local_std: bool = False,
) -> np.ndarray:
    """The fixed pixel filter bank of one RGB image.

    Channels: intensity ``(R+G+B)/3``, the opponent colours ``(R-G)/sqrt 2`` and
    ``(R+G-2B)/sqrt 6`` and their chroma (Euclidean norm). Per scale ``s`` (pixels):
    the Gaussian-smoothed channels, the Gaussian gradient magnitude of intensity and of
    chroma, the scale-normalised Laplacian of Gaussian of intensity (``s**2 * LoG``) and
    the two eigenvalues of its scale-normalised Hessian (``s**2 * H``; larger first),
    which respond to bright and dark ridges (hair, streaks, network lines). Borders are
    reflected (``scipy.ndimage`` mode ``"reflect"``). Optionally, per scale:
    ``vesselness``, Frangi's line measure of bright and of dark lines from those
    eigenvalues ``l1``, ``l2`` (``|l1| <= |l2|``; a bright line has ``l2 < 0``, a dark
    one ``l2 > 0``): ``exp(-(l1/l2)**2 / (2 beta**2)) * (1 - exp(-(l1**2 + l2**2) /
    (2 c**2)))`` with ``beta`` = :data:`VESSEL_BETA` and ``c`` = :data:`VESSEL_C`, 0 for
    the other polarity; ``local_std``, the Gaussian-weighted local standard
    deviation ``sqrt(G_s * x**2 - (G_s * x)**2)`` of intensity and of chroma (texture).

    Parameters
    ----------
    image : uint8 array (H, W, 3), or float in [0, 1]
    sigmas : sequence of float, optional
        Scales in pixels; default :func:`default_sigmas` of the image height
        (:data:`BASE_SIGMAS` at 96 px).
    vesselness, local_std : bool, default False
        Add the line measure and the local standard deviation at every scale.

    Returns
    -------
    numpy.ndarray, float32, (F, H, W)
        Rows named by :func:`pixel_feature_names`.

    Examples
    --------
    >>> img = np.zeros((16, 16, 3), np.uint8); img[:, 8] = 255     # a bright vertical line
    >>> f = pixel_features(img, sigmas=[1.0])
    >>> f.shape, len(pixel_feature_names([1.0]))
    ((13, 16, 16), 13)
    >>> names = pixel_feature_names([1.0])
    >>> lo = f[names.index("hessian_lo_s1")]
    >>> bool(lo[:, 8].mean() < lo[:, 2].mean())     # a bright ridge: strongly negative
    True
    >>> f = pixel_features(img, sigmas=[1.0], vesselness=True)
    >>> names = pixel_feature_names([1.0], vesselness=True)
    >>> v = f[names.index("vessel_bright_s1")]
    >>> bool(v[:, 8].min() > 0.5), float(f[names.index("vessel_dark_s1")][:, 8].max())
    (True, 0.0)
    """
    ch = _channels(image)
    if sigmas is None:
        sigmas = default_sigmas(ch.shape[1])
    out = [ch]
    gi = ndimage.gaussian_filter
    for s in sigmas:
        s = float(s)
        if not s > 0:
            raise ConfigError(f"filter scales (sigmas) must be positive pixels, got {s!r}")
        smooth = np.stack([gi(c, s) for c in ch])
        out.append(smooth)
        out.append(np.stack([ndimage.gaussian_gradient_magnitude(ch[k], s) for k in (0, 3)]))
        hyy = gi(ch[0], s, order=(2, 0))
        hxx = gi(ch[0], s, order=(0, 2))
        hxy = gi(ch[0], s, order=(1, 1))
        half = 0.5 * (hxx + hyy)
        root = np.sqrt((0.5 * (hxx - hyy)) ** 2 + hxy**2)
        s2 = s * s
        hi, lo = s2 * (half + root), s2 * (half - root)
        out.append(np.stack([s2 * (hxx + hyy), hi, lo]))
        if vesselness:
            out.append(np.stack(_vesselness(hi, lo)))
        if local_std:
            var = [gi(ch[k] ** 2, s) - smooth[k] ** 2 for k in (0, 3)]
            out.append(np.sqrt(np.maximum(np.stack(var), 0.0)))
    return np.concatenate(out).astype(np.float32)


# ----------------------------------------------------------------------------- classifier
def _fit_classifier(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    *,
    hidden: int,
    alpha: float,
    max_iter: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """Minimise ``sum_i w_i BCE(f(x_i), y_i) + alpha / 2 * ||weights||^2`` with L-BFGS.

    ``hidden == 0``: logistic regression (float64; the intercept is not penalised);
    else a ReLU MLP with one hidden layer (float32, seeded initialisation).
    """
    dtype = torch.float64 if hidden == 0 else torch.float32
    xt = torch.from_numpy(np.ascontiguousarray(x)).to(dtype)
    yt = torch.from_numpy(y.astype(np.float64)).to(dtype)
    wt = torch.from_numpy(w.astype(np.float64)).to(dtype)
    n_feat = x.shape[1]
    gen = torch.Generator().manual_seed(int(seed))
    if hidden == 0:
        params = [torch.zeros(n_feat, dtype=dtype), torch.zeros((), dtype=dtype)]
    else:
        params = [
            torch.randn(n_feat, hidden, generator=gen, dtype=dtype) * math.sqrt(2.0 / n_feat),
            torch.zeros(hidden, dtype=dtype),
            torch.randn(hidden, generator=gen, dtype=dtype) * math.sqrt(1.0 / hidden),
            torch.zeros((), dtype=dtype),
        ]
    for p in params:
        p.requires_grad_(True)

    def forward() -> torch.Tensor:
        if hidden == 0:
            return xt @ params[0] + params[1]
        return torch.relu(xt @ params[0] + params[1]) @ params[2] + params[3]

    penalised = [params[0]] if hidden == 0 else [params[0], params[2]]
    opt = torch.optim.LBFGS(
        params,
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-9 if hidden == 0 else 1e-6,
        tolerance_change=1e-12 if hidden == 0 else 1e-9,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (wt * F.binary_cross_entropy_with_logits(forward(), yt, reduction="none")).sum()
        loss = loss + 0.5 * alpha * sum((p * p).sum() for p in penalised)
        loss.backward()
        return loss

    opt.step(closure)
    names = ("w", "b") if hidden == 0 else ("w1", "b1", "w2", "b2")
    out = {
        k: p.detach().cpu().numpy().astype(np.float32) for k, p in zip(names, params, strict=True)
    }
    state = opt.state[params[0]]
    grad = torch.cat([p.grad.reshape(-1) for p in params if p.grad is not None]).abs().max()
    out["n_iter"] = np.asarray(int(state.get("n_iter", 0)))
    out["grad_max"] = np.asarray(float(grad))
    return out
