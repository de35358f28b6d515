"""Shifted inference: a token grid ``s`` times finer than the patch grid, without retraining.

A ViT with ``p``-pixel patches sees an ``S x S`` image as a ``gh x gw`` grid of tokens.
Running the same tower on copies of the image shifted by a fraction of a patch, and
interleaving their token grids, gives one token every ``p / s`` pixels: the "stride
trick" (a patchify convolution of stride ``p / s``) done by moving the input instead of
the kernel, so the weights and the tower's positional table stay as trained.

Geometry. Copy ``(k, l)``, ``k, l in 0 .. s-1``, is the image moved up and left by
``d_k = (k - (s - 1) / 2) * p / s`` pixels vertically and ``d_l`` horizontally (the
border filled by reflection), so its token ``(i, j)`` sees the window centred at pixel
``(i * p + p / 2 + d_k, j * p + p / 2 + d_l)``. Stored at ``(i * s + k, j * s + l)`` in the
fine grid, every fine token ``(I, J)`` is then centred at ``((I + 1/2) p / s,
(J + 1/2) p / s)``, the centre of cell ``(I, J)`` of an ``(s gh) x (s gw)`` grid laid
over the image -- the grid that :func:`~conceptlens.spatial.upsample`,
:func:`~conceptlens.spatial.pool_to_grid` and
:func:`~conceptlens.spatial.resolution_ceiling` assume. The offsets are symmetric
around zero, so for even ``s`` no copy is the unshifted image (the unshifted tokens are
centred between fine cells); for odd ``s`` the middle copy is. Each fine token still
sees a ``p``-pixel window: the grid is finer, the receptive field is not smaller.

Cost: ``s * s`` forward passes of the image tower per image.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import torch
import torch.nn.functional as F

from conceptlens.exceptions import ConfigError

__all__ = ["check_shifts", "shift_offsets", "shifted_tokens"]


def check_shifts(shifts: object) -> int:
    """``shifts`` as an int >= 1, or :class:`ConfigError` saying what is allowed.

    Examples
    --------
    >>> check_shifts(2)
    2
    """
    return positive_int(
        shifts,
        "shifts",
        "1: the plain patch grid, s: a grid s times finer from s*s shifted forward passes",
    )


def positive_int(value: object, name: str, meaning: str) -> int:
    """``value`` as an int >= 1 (bools refused), or :class:`ConfigError` naming ``name``
    and what its values mean.

    Examples
    --------
    >>> positive_int(3, "zoom", "the zoom factor")
    3
    """
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= 1:
        return int(value)
    raise ConfigError(f"{name} must be a positive int ({meaning}), got {value!r}")


def shift_offsets(patch: int, shifts: int) -> list[int]:
    """Pixel offsets ``d_k = (k - (s - 1) / 2) * patch / s``, ``k = 0 .. s-1``.

    Raises
    ------
    ConfigError
        The offsets are not whole pixels: ``patch`` not divisible by ``shifts`` or, for
        even ``shifts``, by ``2 * shifts``; the message lists the factors that work.

    Examples
    --------
    >>> shift_offsets(8, 2), shift_offsets(8, 4), shift_offsets(9, 3)
    ([-2, 2], [-3, -1, 1, 3], [-3, 0, 3])
    """
    s = check_shifts(shifts)

    def whole(f: int) -> bool:
        return patch % f == 0 and ((f - 1) * patch) % (2 * f) == 0

    if not whole(s):
        ok = [f for f in range(1, patch + 1) if whole(f)]
        raise ConfigError(
            f"shifts={s} needs offsets of (k - {(s - 1) / 2:g}) * {patch}/{s} pixels, which "
            f"are not whole pixels for this backbone's {patch}-pixel patches; use one of "
            f"shifts={ok}"
        )
    step = patch // s
    return [(2 * k - (s - 1)) * step // 2 for k in range(s)]


def _shift(padded: torch.Tensor, pad: int, dy: int, dx: int) -> torch.Tensor:
    """The image inside ``padded`` (``pad`` pixels of reflected border on each side),
    moved up by ``dy`` and left by ``dx`` pixels, at its own size."""
    h, w = padded.shape[-2] - 2 * pad, padded.shape[-1] - 2 * pad
    return padded[..., pad + dy : pad + dy + h, pad + dx : pad + dx + w]


def shifted_tokens(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    grid: tuple[int, int],
    shifts: int,
) -> torch.Tensor:
    """Interleaved token grid (N, s*gh, s*gw, D) of ``s * s`` shifted forward passes.

    Parameters
    ----------
    forward : callable
        Preprocessed images (N, C, S, S) -> tokens (N, gh, gw, D).
    x : torch.Tensor
        Preprocessed images (N, C, S, S), ``S`` divisible by the grid.
    grid : (int, int)
        The tower's token grid ``(gh, gw)`` at this input size.
    shifts : int
        The factor ``s``.
    """
    s = check_shifts(shifts)
    h, w = int(x.shape[-2]), int(x.shape[-1])
    gh, gw = grid
    if h % gh or w % gw or h // gh != w // gw:
        raise ConfigError(
            f"shifts need square patches that tile the input: a {h}x{w} input on a "
            f"{gh}x{gw} token grid is not"
        )
    offsets = shift_offsets(h // gh, s)
    pad = max(abs(d) for d in offsets)
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect") if pad else x
    first = forward(_shift(padded, pad, offsets[0], offsets[0]))
    out = first.new_empty((first.shape[0], gh * s, gw * s, first.shape[-1]))
    for k, dy in enumerate(offsets):
        for m, dx in enumerate(offsets):
            out[:, k::s, m::s] = first if k == m == 0 else forward(_shift(padded, pad, dy, dx))
    return out
