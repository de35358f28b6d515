"""Decoding image and mask files into the arrays every conceptlens loader returns.

Images come out as ``uint8`` arrays of shape ``(H, W, 3)``; masks as ``bool`` ``(H, W)``.
DICOM files are routed to :mod:`conceptlens.data._dicom`.

Hostile files fail per sample with :class:`~conceptlens.exceptions.ImageDecodeError`
(so ``on_error="skip"`` and ``conceptlens data info`` list them): only regular files are
opened (a FIFO or device in a manifest never blocks the loader), PIL's decompression-bomb
limit is reported, not raised through, and images whose long side is more than
``max_aspect_ratio`` times the short side (default :data:`MAX_ASPECT_RATIO`) are refused:
resizing the short side of a 1 x 20,000 image to the model's size would allocate gigabytes.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from conceptlens._io import user_path
from conceptlens.exceptions import DataError, ImageDecodeError, MissingFileError

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_ASPECT_RATIO",
    "is_dicom_path",
    "read_image",
    "read_mask",
    "to_rgb_uint8",
]

#: Default largest ratio of an image's long side to its short side (``max_aspect_ratio=``
#: of the loaders; ``None`` turns the check off).
MAX_ASPECT_RATIO = 10.0

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


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """Open ``path`` for reading only if it is a regular file (never blocks on a FIFO).

    The file is opened non-blocking and checked with ``fstat`` on the open descriptor, so
    a FIFO, socket or device named by a manifest row is refused at once.

    Raises
    ------
    MissingFileError
        The path does not exist.
    ImageDecodeError
        It is a folder, FIFO, socket or device.
    """
    p = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(p, flags)
    except FileNotFoundError:
        raise MissingFileError(
            f"image file not found: {p}. Check the path column and the manifest root "
            "(paths are relative to the manifest's folder unless root= is given)."
        ) from None
    except IsADirectoryError:
        raise ImageDecodeError(f"{p}: is a folder, not an image file.") from None
    except OSError as exc:
        raise ImageDecodeError(f"{p}: cannot open ({exc.strerror}).") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO, socket or device"
        raise ImageDecodeError(
            f"{p}: is {kind}, not a regular image file; only regular files are read. "
            "Fix the path column."
        )
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _check_aspect(shape: tuple[int, ...], limit: float | None, source: str) -> None:
    if limit is None or len(shape) < 2:
        return
    h, w = int(shape[0]), int(shape[1])
    if min(h, w) > 0 and max(h, w) / min(h, w) > limit:
        raise ImageDecodeError(
            f"{source}: image is {h}x{w} (HxW), an aspect ratio of {max(h, w) / min(h, w):.0f}:1 "
            f"above the limit of {limit:g}:1; resizing it would need far more memory than its "
            "content is worth. Crop it, or raise the limit with max_aspect_ratio= (CLI: "
            "--max-aspect-ratio)."
        )


def _open_pil(path: Path, max_aspect_ratio: float | None = None) -> Any:
    from PIL import Image, UnidentifiedImageError

    fh = open_regular(path)
    try:
        img = Image.open(fh)
        _check_aspect((img.size[1], img.size[0]), max_aspect_ratio, str(path))
        img.load()
    except Image.DecompressionBombError as exc:
        fh.close()
        raise ImageDecodeError(
            f"{path}: refused as a possible decompression bomb ({exc}). If the image is "
            "genuine, raise PIL.Image.MAX_IMAGE_PIXELS; otherwise skip it with "
            "on_error='skip'."
        ) from None
    except ImageDecodeError:
        fh.close()
        raise
    except UnidentifiedImageError as exc:
        fh.close()
        raise ImageDecodeError(
            f"{path}: not a readable image ({exc}). Re-export it as PNG or JPEG, or "
            "skip bad files with on_error='skip'."
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        fh.close()
        raise ImageDecodeError(
            f"{path}: image is corrupt or truncated ({exc}). Re-download or re-export it, "
            "or skip bad files with on_error='skip'."
        ) from exc
    fh.close()  # load() has read the pixels
    return img


def _load_npy(path: Path, what: str, max_aspect_ratio: float | None) -> np.ndarray:
    """Read a ``.npy`` image or mask after checking its header against the file.

    The header alone decides how much ``np.load`` allocates: a few bytes claiming a
    300,000 x 300,000 array would ask for terabytes (a ``MemoryError`` that no
    ``on_error`` policy catches). Arrays whose data is larger than the file, or with more
    pixels than PIL's decompression-bomb limit, or too elongated, are refused first.
    """
    from PIL import Image

    try:
        with open_regular(path) as fh:
            version = np.lib.format.read_magic(fh)
            header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = header(fh)
            data_bytes = os.fstat(fh.fileno()).st_size - fh.tell()
            _check_aspect(tuple(shape), max_aspect_ratio, str(path))
            n_items = int(np.prod(shape, dtype=object))
            if dtype.hasobject:
                raise ValueError("object arrays are not images")
            if n_items * dtype.itemsize > data_bytes:
                raise ImageDecodeError(
                    f"{path}: the .npy header says {tuple(shape)} {dtype} "
                    f"({n_items * dtype.itemsize:,} bytes) but the file holds {data_bytes:,}; "
                    "the file is truncated or forged. Re-export it."
                )
            pixels = int(np.prod(shape[:2], dtype=object)) if len(shape) >= 2 else n_items
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and pixels > 2 * limit:
                raise ImageDecodeError(
                    f"{path}: refused as a possible decompression bomb ({pixels:,} pixels, "
                    f"more than twice PIL.Image.MAX_IMAGE_PIXELS = {limit:,}). If the image "
                    "is genuine, raise PIL.Image.MAX_IMAGE_PIXELS; otherwise skip it with "
                    "on_error='skip'."
                )
            fh.seek(0)
            return np.load(fh, allow_pickle=False)
    except ImageDecodeError:
        raise
    except (OSError, ValueError) as exc:
        raise ImageDecodeError(f"{path}: unreadable .npy {what} ({exc}).") from exc


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


def read_image(
    path: str | os.PathLike[str],
    *,
    dicom_options: Any = None,
    max_aspect_ratio: float | None = MAX_ASPECT_RATIO,
) -> np.ndarray:
    """Read an image file (PNG, JPEG, TIFF, BMP, ... or DICOM) as ``uint8`` ``(H, W, 3)``.

    Parameters
    ----------
    path : str or path-like
        The file to decode (a regular file; FIFOs and devices are refused).
    dicom_options : DicomOptions, optional
        Windowing and frame options used when ``path`` is a DICOM file.
    max_aspect_ratio : float or None, default MAX_ASPECT_RATIO
        Refuse images whose long side exceeds this multiple of the short side (checked
        from the header, before decoding); ``None`` accepts any shape.

    Returns
    -------
    np.ndarray
        ``uint8`` array of shape ``(H, W, 3)``.

    Raises
    ------
    MissingFileError
        The file does not exist.
    ImageDecodeError
        The file is corrupt, truncated, not a regular file, a possible decompression
        bomb, too elongated, or needs a decoder plugin that is not installed.
    """
    p = user_path(path)
    open_regular(p).close()  # missing file, folder, FIFO or device: fail before any decoder
    if is_dicom_path(p):
        from conceptlens.data._dicom import read_dicom

        arr = read_dicom(p, dicom_options)
        _check_aspect(arr.shape, max_aspect_ratio, str(p))
        return arr
    if p.suffix.lower() == ".npy":
        return to_rgb_uint8(_load_npy(p, "image", max_aspect_ratio), source=str(p))
    with _open_pil(p, max_aspect_ratio) as img:
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
    open_regular(p).close()
    if p.suffix.lower() == ".npy":
        arr = _load_npy(p, "mask", None)
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
