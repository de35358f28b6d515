"""Image galleries: a grid of images in one Axes, each with a title and annotations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from conceptlens.exceptions import DataError
from conceptlens.plot._common import get_ax, literal_text

__all__ = ["image_gallery", "synthderm_montage"]


def _as_rgb(img: Any) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise DataError(f"an image must be (H, W), (H, W, 3) or (H, W, 4), got {a.shape}.")
    a = a[..., :3]
    if a.dtype.kind in "iu":
        return a.astype(np.float64) / 255.0
    return np.clip(a.astype(np.float64), 0.0, 1.0)


@literal_text
def image_gallery(
    images: Any,
    *,
    titles: Sequence[str] | None = None,
    annotations: Sequence[Sequence[str]] | None = None,
    ncols: int = 4,
    fontsize: float = 7.0,
    ax: Any = None,
) -> Any:
    """Draw images in a grid on one Axes, each with a title and annotation lines below.

    Parameters
    ----------
    images : array (N, H, W[, 3]) or sequence of arrays of one size
        uint8 (0-255) or float (0-1) images.
    titles : sequence of str, optional
        One line above each image (e.g. the label).
    annotations : sequence of sequences of str, optional
        Lines of text under each image (e.g. the concepts present).
    ncols : int, default=4
        Images per row.
    fontsize : float, default=7
        Size of the text.
    ax : matplotlib Axes, optional
        Where to draw; a new figure (not registered with pyplot) when omitted.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import numpy as np
    >>> from conceptlens.plot import image_gallery
    >>> ax = image_gallery(np.zeros((2, 8, 8, 3), np.uint8), titles=["a", "b"])
    >>> [t.get_text() for t in ax.texts]
    ['a', 'b']
    """
    imgs = [_as_rgb(im) for im in images]
    if not imgs:
        raise DataError("image_gallery needs at least one image.")
    h, w = imgs[0].shape[:2]
    if any(im.shape[:2] != (h, w) for im in imgs):
        raise DataError("image_gallery needs images of one size; resize them first.")
    n = len(imgs)
    for name, seq in (("titles", titles), ("annotations", annotations)):
        if seq is not None and len(seq) != n:
            raise DataError(f"{len(seq)} {name} for {n} images; give one per image.")
    ncols = max(1, min(int(ncols), n))
    nrows = -(-n // ncols)
    n_lines = max((len(a) for a in annotations), default=0) if annotations is not None else 0
    # white space for the title above and the annotation lines below each image, in pixels
    line_px = max(h / 8.0, 1.0)
    top = line_px * 1.6 if titles is not None else line_px * 0.3
    bottom = line_px * (1.5 * n_lines + 0.3)
    gap = line_px * 0.3
    cell_h, cell_w = h + top + bottom, w + gap
    canvas = np.ones((int(np.ceil(nrows * cell_h)), int(np.ceil(ncols * cell_w)), 3))
    ax = get_ax(ax, figsize=(1.7 * ncols, 1.7 * nrows * cell_h / h * 0.8))
    for i, im in enumerate(imgs):
        r, c = divmod(i, ncols)
        y0, x0 = round(r * cell_h + top), round(c * cell_w)
        canvas[y0 : y0 + h, x0 : x0 + w] = im
        if titles is not None:
            ax.text(x0 + w / 2, y0 - line_px * 0.3, str(titles[i]), ha="center", va="bottom",
                    fontsize=fontsize, fontweight="bold")  # fmt: skip
        if annotations is not None:
            for j, line in enumerate(annotations[i]):
                ax.text(x0 + w / 2, y0 + h + line_px * (0.3 + 1.5 * j), str(line), ha="center",
                        va="top", fontsize=fontsize * 0.85)  # fmt: skip
    ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()
    return ax


@literal_text
def synthderm_montage(
    batch: Any,
    *,
    n: int = 12,
    ncols: int = 4,
    max_concepts: int = 3,
    groups: Sequence[str] | None = None,
    ax: Any = None,
) -> Any:
    """A SynthDerm batch as a gallery: class above, site and concepts present below.

    Parameters
    ----------
    batch : SynthDerm batch
        What ``SynthDerm(...).generate(n)`` returns (``images``, ``labels``,
        ``class_names``, ``site``, ``concepts``, ``concept_names``, ``concept_groups``).
    n : int, default=12
        Images drawn (the first ``n``).
    ncols : int, default=4
    max_concepts : int, default=3
        Concept lines under each image (the rest are counted, ``+2 more``).
    groups : sequence of str, optional
        Only concepts of these groups (e.g. ``["artifact"]``); all by default.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import conceptlens as cl
    >>> from conceptlens.plot import synthderm_montage
    >>> batch = cl.SynthDerm("confounded", image_size=32).generate(4, seed=0)
    >>> ax = synthderm_montage(batch, n=4)
    >>> len(ax.images)
    1
    """
    k = min(int(n), len(batch.images))
    names = np.asarray(batch.concept_names)
    keep = np.ones(len(names), bool)
    if groups is not None:
        keep = np.isin(np.asarray(batch.concept_groups), list(groups))
    titles, notes = [], []
    for i in range(k):
        cls = batch.class_names[int(batch.labels[i])]
        titles.append(str(cls))
        present = list(names[(np.asarray(batch.concepts[i]) > 0) & keep])
        lines = [str(batch.site[i]), *present[:max_concepts]]
        if len(present) > max_concepts:
            lines.append(f"+{len(present) - max_concepts} more")
        notes.append(lines)
    return image_gallery(batch.images[:k], titles=titles, annotations=notes, ncols=ncols, ax=ax)
