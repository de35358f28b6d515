"""Decoding image and mask files into the arrays every conceptlens loader returns.

Images come out as ``uint8`` arrays of shape ``(H, W, 3)``; masks as ``bool`` ``(H, W)``.
DICOM files are routed to :mod:`conceptlens.data._dicom`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from conceptlens._io import user_path
from conceptlens.exceptions import DataError, ImageDecodeError, MissingFileError

__all__ = ["IMAGE_EXTENSIONS", "is_dicom_path", "read_image", "read_mask", "to_rgb_uint8"]

#: File extensions the folder loader picks up (lower case). DICOM is also recognised by
#: its ``DICM`` preamble when the file has no extension.
IMAGE_EXTENSIONS = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".tif",
    ".tiff",
    ".gif",
    ".webp",
    ".dcm",
    ".dicom",
)
_DICOM_EXTENSIONS = (".dcm", ".dicom")


def is_dicom_path(path: str | os.PathLike[str]) -> bool:
    """Return True if ``path`` names a DICOM file (by extension, or by its ``DICM`` marker)."""
    p = user_path(path)
    suffix = p.suffix.lower()
    if suffix in _DICOM_EXTENSIONS:
        return True
    if suffix == "" and p.is_file():
        try:
            with open(p, "rb") as fh:
                fh.seek(128)
                return fh.read(4) == b"DICM"
        except OSError:
            return False
    return False


def to_rgb_uint8(array: np.ndarray, *, source: str = "array") -> np.ndarray:
    """Convert a decoded image array to ``uint8`` ``(H, W, 3)``.

    Grey images are repeated over three channels, an alpha channel is dropped,
    16-bit integer images are scaled from their full type range (``x * 255 / 65535``),
    and floating-point images must lie in ``[0, 1]``.

    Parameters
    ----------
    array : np.ndarray
        ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``.
    source : str
        File name or description used in error messages.

    Returns
    -------
    np.ndarray
        ``uint8`` array of shape ``(H, W, 3)``.

    Examples
    --------
    >>> to_rgb_uint8(np.zeros((2, 3), dtype=np.uint8)).shape
    (2, 3, 3)
    """
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 3 and a.shape[2] == 4:
        a = a[:, :, :3]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise ImageDecodeError(
            f"{source}: image has shape {a.shape}; expected (H, W), (H, W, 3) or (H, W, 4). "
            "Convert it to a 2-D greyscale or RGB image."
        )
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageDecodeError(f"{source}: image is empty (shape {a.shape}).")
    if a.dtype == np.uint8:
        out = a
    elif a.dtype == np.bool_:
        out = a.astype(np.uint8) * 255
    elif a.dtype.kind in "ui":
        info = np.iinfo(a.dtype)
        if a.dtype.itemsize == 1:  # int8
            out = (a.astype(np.int16) - info.min).astype(np.uint8)
        else:
            scaled = (a.astype(np.float64) - info.min) * (255.0 / (info.max - info.min))
            out = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    elif a.dtype.kind == "f":
        if not np.all(np.isfinite(a)):
            raise ImageDecodeError(f"{source}: image contains NaN or infinite values.")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:
            raise ImageDecodeError(
                f"{source}: floating-point image has values in [{lo:g}, {hi:g}]; "
                "conceptlens reads float images only in [0, 1]. Rescale it to [0, 1] "
                "or save it as 8-bit."
            )
        out = np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    else:
        raise ImageDecodeError(f"{source}: unsupported pixel dtype {a.dtype}.")
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    return np.ascontiguousarray(out)


def _open_pil(path: Path) -> Any:
    from PIL import Image, UnidentifiedImageError

    if not path.exists():
        raise MissingFileError(
            f"image file not found: {path}. Check the path column and the manifest root "
            "(paths are relative to the manifest's folder unless root= is given)."
        )
    try:
        img = Image.open(path)
        img.load()
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(
            f"{path}: not a readable image ({exc}). Re-export it as PNG or JPEG, or "
            "skip bad files with on_error='skip'."
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(
            f"{path}: image is corrupt or truncated ({exc}). Re-download or re-export it, "
            "or skip bad files with on_error='skip'."
        ) from exc
    return img


def _pil_to_array(img: Any) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(img, dtype=np.uint16)
    if mode == "I":
        return np.asarray(img, dtype=np.int32)
    if mode == "F":
        return np.asarray(img, dtype=np.float32)
    if mode in ("L", "RGB"):
        return np.asarray(img)
    if mode == "1":
        return np.asarray(img, dtype=bool)
    return np.asarray(img.convert("RGB"))


def read_image(path: str | os.PathLike[str], *, dicom_options: Any = None) -> np.ndarray:
    """Read an image file (PNG, JPEG, TIFF, BMP, ... or DICOM) as ``uint8`` ``(H, W, 3)``.

    Parameters
    ----------
    path : str or path-like
        The file to decode.
    dicom_options : DicomOptions, optional
        Windowing and frame options used when ``path`` is a DICOM file.

    Returns
    -------
    np.ndarray
        ``uint8`` array of shape ``(H, W, 3)``.

    Raises
    ------
    MissingFileError
        The file does not exist.
    ImageDecodeError
        The file is corrupt, truncated, or needs a decoder plugin that is not installed.
    """
    p = user_path(path)
    if not p.exists():
        raise MissingFileError(
            f"image file not found: {p}. Check the path column and the manifest root "
            "(paths are relative to the manifest's folder unless root= is given)."
        )
    if is_dicom_path(p):
        from conceptlens.data._dicom import read_dicom

        return read_dicom(p, dicom_options)
    if p.suffix.lower() == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ImageDecodeError(f"{p}: unreadable .npy image ({exc}).") from exc
        return to_rgb_uint8(arr, source=str(p))
    with _open_pil(p) as img:
        arr = _pil_to_array(img)
    return to_rgb_uint8(arr, source=str(p))


def read_mask(
    path: str | os.PathLike[str], *, shape: tuple[int, int] | None = None, name: str = "mask"
) -> np.ndarray:
    """Read a mask file as ``bool`` ``(H, W)``: any non-zero pixel is inside the mask.

    Parameters
    ----------
    path : str or path-like
        A PNG/TIFF/... image or ``.npy`` array.
    shape : tuple of int, optional
        The ``(H, W)`` of the image it belongs to; a different size raises ``DataError``.
    name : str
        Mask name used in error messages.

    Returns
    -------
    np.ndarray
        ``bool`` array of shape ``(H, W)``.
    """
    p = user_path(path)
    if not p.exists():
        raise MissingFileError(
            f"{name} file not found: {p}. Fix the `{name}` column of the manifest or "
            "leave the cell empty for samples without this mask."
        )
    if p.suffix.lower() == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ImageDecodeError(f"{p}: unreadable .npy mask ({exc}).") from exc
    else:
        with _open_pil(p) as img:
            arr = _pil_to_array(img)
    arr = np.asarray(arr)
    if arr.ndim == 3:
        arr = arr[:, :, :3].max(axis=2) if arr.shape[2] > 1 else arr[:, :, 0]
    if arr.ndim != 2:
        raise DataError(f"{p}: {name} has shape {arr.shape}; a mask must be 2-D (H, W).")
    mask = arr != 0
    check_mask_shape(mask, shape, name=name, source=str(p))
    return mask


def check_mask_shape(
    mask: np.ndarray, shape: tuple[int, int] | None, *, name: str, source: str
) -> None:
    """Raise ``DataError`` if ``mask`` is not ``(H, W)`` = ``shape``."""
    if shape is not None and tuple(mask.shape[:2]) != tuple(shape):
        raise DataError(
            f"{source}: {name} is {mask.shape[0]}x{mask.shape[1]} (HxW) but its image is "
            f"{shape[0]}x{shape[1]}. Masks must have the image's size; resize the mask "
            "with nearest-neighbour interpolation."
        )
