"""Per-site imaging protocol: the device's colour cast, sharpness and scale.

A dermatoscope at one hospital is not the one at the next: its white balance, its optics
and its magnification differ, and the same lesion photographs differently. SynthDerm
models this as a deterministic transform applied to the drawn images of a site (after
drawing, so the latents, the captions and the drawing randomness are untouched), declared
in the configuration's ``protocol`` mapping::

    protocol:
      site_c: {gain: [0.9, 0.95, 1.15], offset: [0, 0, 10], blur_sigma: 1.2, scale: 1.15}

Fields (all optional; a missing one leaves that part of the image unchanged):

``scale``
    Zoom about the image centre: ``> 1`` magnifies (the border is cropped), ``< 1``
    shows more of the field (the border pixels are repeated outward). Images are resampled
    bilinearly, the lesion and artifact masks by nearest neighbour on the same grid, so a
    mask still covers what it marks. Range 0.5..2.
``blur_sigma``
    Gaussian blur, standard deviation in pixels of a 96 px image (scaled with
    ``image_size``); ``0`` = sharp. Range 0..8.
``unsharp``
    Unsharp-mask amount (``img + amount * (img - gaussian(img, 1 px))``, the 1 px at 96 px
    scaled with ``image_size``); over-sharpening optics. Range 0..4.
``gain``, ``offset``
    Colour cast, per channel (red, green, blue): ``out = gain * img + offset`` on 0..255
    values, then clipped. ``gain`` in 0.25..4, ``offset`` in -128..128.

The steps run in that order (geometry, optics, colour) on float64 values, and the result is
rounded to uint8 once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from conceptlens.exceptions import ConfigError

__all__ = ["PROTOCOL_FIELDS", "apply_protocol", "check_protocol"]

#: field -> (kind, low, high, identity, meaning)
PROTOCOL_FIELDS: Mapping[str, tuple[str, float, float, Any, str]] = MappingProxyType(
    {
        "gain": ("rgb", 0.25, 4.0, (1.0, 1.0, 1.0), "per-channel gain (1 = unchanged)"),
        "offset": ("rgb", -128.0, 128.0, (0.0, 0.0, 0.0), "per-channel offset on 0..255"),
        "blur_sigma": ("scalar", 0.0, 8.0, 0.0, "Gaussian blur sigma in px at 96 px (0 = none)"),
        "unsharp": ("scalar", 0.0, 4.0, 0.0, "unsharp-mask amount (0 = none)"),
        "scale": ("scalar", 0.5, 2.0, 1.0, "zoom about the centre (1 = unchanged)"),
    }
)
_REF_SIZE = 96
_UNSHARP_SIGMA = 1.0


def _number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def check_protocol(protocol: Any, sites: tuple[str, ...]) -> Mapping[str, Mapping[str, Any]]:
    """Validate a ``protocol`` mapping (site -> fields) and return it frozen.

    Raises
    ------
    ConfigError
        Naming the site and the field: an unknown site, an unknown field, a value of the
        wrong kind or out of range.
    """
    where = "SynthDermConfig.protocol"
    if protocol is None:
        return MappingProxyType({})
    if not isinstance(protocol, Mapping):
        raise ConfigError(
            f"{where} must map site names to imaging settings, e.g. "
            f"{{site_c: {{gain: [1.1, 1.0, 0.9], blur_sigma: 1.0}}}}; got {protocol!r}."
        )
    out: dict[str, Mapping[str, Any]] = {}
    for site, fields in protocol.items():
        if site not in sites:
            raise ConfigError(
                f"{where}: unknown site {site!r}; sites are {list(sites)} (add the site to "
                "'sites' or fix its name)."
            )
        here = f"{where}[{site!r}]"
        if not isinstance(fields, Mapping):
            raise ConfigError(
                f"{here} = {fields!r}; give a mapping of fields from {list(PROTOCOL_FIELDS)}."
            )
        unknown = sorted(set(map(str, fields)) - set(PROTOCOL_FIELDS))
        if unknown:
            raise ConfigError(
                f"{here}: unknown field(s) {unknown}; the fields are {list(PROTOCOL_FIELDS)}."
            )
        clean: dict[str, Any] = {}
        for name, value in fields.items():
            kind, lo, hi, _, meaning = PROTOCOL_FIELDS[name]
            if kind == "rgb":
                ok = (
                    isinstance(value, list | tuple)
                    and len(value) == 3
                    and all(_number(v) and lo <= v <= hi for v in value)
                )
                if not ok:
                    raise ConfigError(
                        f"{here}[{name!r}] = {value!r}; give a list of 3 numbers (red, green, "
                        f"blue) in [{lo:g}, {hi:g}]: the {meaning}."
                    )
                clean[name] = tuple(float(v) for v in value)
            else:
                if not (_number(value) and lo <= value <= hi):
                    raise ConfigError(
                        f"{here}[{name!r}] = {value!r}; give a number in [{lo:g}, {hi:g}]: "
                        f"the {meaning}."
                    )
                clean[name] = float(value)
        out[str(site)] = MappingProxyType(clean)
    return MappingProxyType(out)


def _setting(fields: Mapping[str, Any], name: str) -> Any:
    return fields.get(name, PROTOCOL_FIELDS[name][3])


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = max(1, int(4.0 * sigma + 0.5))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _gaussian(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur over axes 1, 2 of (n, H, W, 3) float64; edges repeated."""
    k = _gaussian_kernel(sigma)
    r = (len(k) - 1) // 2
    out = img
    for axis in (1, 2):
        pad = [(0, 0)] * 4
        pad[axis] = (r, r)
        padded = np.pad(out, pad, mode="edge")
        length = out.shape[axis]
        acc = np.zeros_like(out)
        for t, w in enumerate(k):
            acc += w * np.take(padded, np.arange(t, t + length), axis=axis)
        out = acc
    return out


def _source_coords(size: int, scale: float) -> np.ndarray:
    """Source pixel coordinate of each output pixel for a zoom about the centre."""
    c = (size - 1) / 2.0
    return c + (np.arange(size, dtype=np.float64) - c) / scale


def _zoom_image(img: np.ndarray, scale: float) -> np.ndarray:
    """Bilinear zoom of (n, H, W, 3) float64 about the centre; edges repeated."""
    for axis in (1, 2):
        size = img.shape[axis]
        src = np.clip(_source_coords(size, scale), 0, size - 1)
        i0 = np.floor(src).astype(np.int64)
        i1 = np.minimum(i0 + 1, size - 1)
        w = src - i0
        shape = [1, 1, 1, 1]
        shape[axis] = size
        w = w.reshape(shape)
        img = np.take(img, i0, axis=axis) * (1 - w) + np.take(img, i1, axis=axis) * w
    return img


def _zoom_mask(mask: np.ndarray, scale: float) -> np.ndarray:
    """Nearest-neighbour zoom of (n, H, W) masks on the grid of :func:`_zoom_image`."""
    for axis in (1, 2):
        size = mask.shape[axis]
        src = np.floor(_source_coords(size, scale) + 0.5).astype(np.int64)
        mask = np.take(mask, np.clip(src, 0, size - 1), axis=axis)
    return mask


def apply_protocol(
    images: np.ndarray,
    masks: Mapping[str, np.ndarray],
    fields: Mapping[str, Any],
    *,
    image_size: int | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Apply one site's imaging protocol to a block of images and their masks.

    Parameters
    ----------
    images : ndarray of uint8, shape (n, H, W, 3)
    masks : mapping name -> ndarray of bool, shape (n, H, W)
        Moved with the image by ``scale``; other fields leave them unchanged.
    fields : mapping
        A validated protocol entry (see :func:`check_protocol`); missing fields are the
        identity.
    image_size : int, optional
        Side the blur sigmas refer to is 96 px; default ``images.shape[1]``.

    Returns
    -------
    images : ndarray of uint8, shape (n, H, W, 3)
    masks : dict name -> ndarray of bool, shape (n, H, W)

    Examples
    --------
    >>> img = np.full((1, 8, 8, 3), 100, np.uint8)
    >>> out, _ = apply_protocol(img, {}, {"gain": (1.5, 1.0, 0.5)})
    >>> out[0, 0, 0].tolist()
    [150, 100, 50]
    """
    size = int(images.shape[1] if image_size is None else image_size)
    px = size / _REF_SIZE
    scale = float(_setting(fields, "scale"))
    sigma = float(_setting(fields, "blur_sigma")) * px
    amount = float(_setting(fields, "unsharp"))
    gain = np.asarray(_setting(fields, "gain"), dtype=np.float64)
    offset = np.asarray(_setting(fields, "offset"), dtype=np.float64)

    img = images.astype(np.float64)
    out_masks = dict(masks)
    if scale != 1.0:
        img = _zoom_image(img, scale)
        out_masks = {k: _zoom_mask(m, scale) for k, m in masks.items()}
    if sigma > 0:
        img = _gaussian(img, sigma)
    if amount > 0:
        img = img + amount * (img - _gaussian(img, _UNSHARP_SIGMA * px))
    if np.any(gain != 1) or np.any(offset != 0):
        img = img * gain + offset
    out = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return out, out_masks
