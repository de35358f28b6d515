"""Image-region masking for the shortcut-masking study: ROI conditions and fills.

Pure numpy (no OpenCV, no scikit-image), vectorised over a batch of images.
"""

from __future__ import annotations

import numpy as np

from conceptlens.exceptions import ConfigError, DataError

__all__ = ["CONDITIONS", "FILLS", "bounding_boxes", "dilate", "mask_images"]

CONDITIONS = ("full", "no_roi", "no_roi_bb", "only_roi", "only_roi_bb")
FILLS = ("black", "mean", "blur", "inpaint")


def _shift_max(m: np.ndarray) -> np.ndarray:
    p = np.pad(m, ((0, 0), (1, 1), (1, 1)))
    out = m.copy()
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            out |= p[:, dy : dy + m.shape[1], dx : dx + m.shape[2]]
    return out


def dilate(masks: np.ndarray, pixels: int) -> np.ndarray:
    """Dilate (``pixels > 0``) or erode (``pixels < 0``) boolean masks (N, H, W) by a
    square structuring element of half-width ``|pixels|`` (chessboard distance)."""
    m = np.asarray(masks, dtype=bool)
    if m.ndim == 2:
        return dilate(m[None], pixels)[0]
    if pixels == 0:
        return m.copy()
    if pixels < 0:
        return ~dilate(~m, -pixels)
    for _ in range(int(pixels)):
        m = _shift_max(m)
    return m


def bounding_boxes(masks: np.ndarray) -> np.ndarray:
    """The filled bounding box of each mask (N, H, W); an empty mask stays empty."""
    m = np.asarray(masks, dtype=bool)
    rows = np.asarray(m.any(axis=2))
    cols = np.asarray(m.any(axis=1))
    out = np.zeros_like(m)
    for i in range(len(m)):
        r, c = np.flatnonzero(rows[i]), np.flatnonzero(cols[i])
        if len(r):
            out[i, r[0] : r[-1] + 1, c[0] : c[-1] + 1] = True
    return out


def _box_blur(img: np.ndarray, k: int) -> np.ndarray:
    """Separable box blur of (N, H, W, C) float images, edges replicated."""
    r = k // 2
    out = img
    for axis in (1, 2):
        pad = [(0, 0)] * 4
        pad[axis] = (r + 1, r)
        c = np.cumsum(np.pad(out, pad, mode="edge"), axis=axis)
        n = out.shape[axis]
        hi = np.take(c, np.arange(k, k + n), axis=axis)
        lo = np.take(c, np.arange(0, n), axis=axis)
        out = (hi - lo) / k
    return out


def _inpaint(img: np.ndarray, region: np.ndarray, iters: int = 24) -> np.ndarray:
    """Fill ``region`` by harmonic diffusion from its surroundings, coarse to fine."""
    n, h, w, ch = img.shape
    known = ~region
    if min(h, w) <= 8:
        cnt = known.sum(axis=(1, 2))[:, None]
        mean = (img * known[..., None]).sum(axis=(1, 2)) / np.maximum(cnt, 1)
        mean = np.where(cnt > 0, mean, img.mean(axis=(1, 2)))
        init = np.broadcast_to(mean[:, None, None, :], img.shape)
    else:
        he, we = h + h % 2, w + w % 2
        ip = np.pad(img, ((0, 0), (0, he - h), (0, we - w), (0, 0)), mode="edge")
        kp = np.pad(known, ((0, 0), (0, he - h), (0, we - w)), mode="edge").astype(float)
        wsum = kp.reshape(n, he // 2, 2, we // 2, 2).sum(axis=(2, 4))
        vsum = (ip * kp[..., None]).reshape(n, he // 2, 2, we // 2, 2, ch).sum(axis=(2, 4))
        small = vsum / np.maximum(wsum, 1)[..., None]
        coarse = _inpaint(small, wsum == 0, iters)
        init = coarse.repeat(2, axis=1).repeat(2, axis=2)[:, :h, :w]
    out = np.where(region[..., None], init, img)
    for _ in range(iters):
        p = np.pad(out, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
        avg = (p[:, :-2, 1:-1] + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:]) / 4.0
        out = np.where(region[..., None], avg, img)
    return out


def mask_images(
    images: np.ndarray,
    roi: np.ndarray,
    condition: str,
    *,
    fill: str = "black",
    dilation: int = 0,
    blur_size: int | None = None,
) -> np.ndarray:
    """Images with the region of interest removed or kept alone (Mask of truth conditions).

    Parameters
    ----------
    images : uint8 array (N, H, W, 3)
    roi : bool array (N, H, W)
        Region of interest of each image (e.g. the lesion mask).
    condition : {"full", "no_roi", "no_roi_bb", "only_roi", "only_roi_bb"}
        ``no_roi`` fills the ROI, ``no_roi_bb`` its bounding box; ``only_roi`` fills
        everything outside the ROI, ``only_roi_bb`` everything outside its bounding box.
    fill : {"black", "mean", "blur", "inpaint"}, default="black"
        Black (the paper's), the image's mean colour over the kept pixels, a box blur of
        the image (size ``blur_size``, default an eighth of the image side; it keeps the
        region's low frequencies), or diffusion inpainting from the surrounding pixels.
    dilation : int, default=0
        Pixels by which the ROI is dilated (negative: eroded) before the bounding box.

    Returns
    -------
    uint8 array (N, H, W, 3)
        An image without ROI pixels (empty mask) is left as it is by ``no_roi*`` and
        filled entirely by ``only_roi*``.

    Examples
    --------
    >>> import numpy as np
    >>> from conceptlens.studies import mask_images
    >>> img = np.full((1, 4, 4, 3), 200, np.uint8); roi = np.zeros((1, 4, 4), bool)
    >>> roi[0, 1:3, 1:3] = True
    >>> mask_images(img, roi, "no_roi")[0, :, :, 0]
    array([[200, 200, 200, 200],
           [200,   0,   0, 200],
           [200,   0,   0, 200],
           [200, 200, 200, 200]], dtype=uint8)
    """
    if condition not in CONDITIONS:
        raise ConfigError(f"unknown condition {condition!r}; conditions are {list(CONDITIONS)}.")
    if fill not in FILLS:
        raise ConfigError(f"unknown fill {fill!r}; fills are {list(FILLS)}.")
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(f"images must be (N, H, W, 3), got shape {images.shape}.")
    roi = np.asarray(roi, dtype=bool)
    if roi.shape != images.shape[:3]:
        raise DataError(
            f"ROI masks have shape {roi.shape}, images {images.shape[:3]}; give one mask "
            "of the image size per image."
        )
    if condition == "full":
        return images.copy()
    region = dilate(roi, int(dilation)) if dilation else roi
    if condition.endswith("_bb"):
        region = bounding_boxes(region)
    if condition.startswith("only_roi"):
        region = ~region
    img = images.astype(np.float64)
    if fill == "black":
        filled = np.zeros_like(img)
    elif fill == "mean":
        keep = ~region
        cnt = keep.sum(axis=(1, 2))[:, None]
        mean = (img * keep[..., None]).sum(axis=(1, 2)) / np.maximum(cnt, 1)
        mean = np.where(cnt > 0, mean, img.mean(axis=(1, 2)))
        filled = np.broadcast_to(mean[:, None, None, :], img.shape)
    elif fill == "blur":
        k = int(blur_size or max(3, images.shape[1] // 8))
        filled = _box_blur(img, k | 1)
    else:
        filled = _inpaint(img, region)
    out = np.where(region[..., None], filled, img)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
