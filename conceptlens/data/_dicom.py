"""DICOM decoding: modality LUT, VOI LUT / windowing, MONOCHROME1, frames, no PHI.

Only the technical tags in :data:`DICOM_METADATA_TAGS` are ever copied out of a file;
names, ids, dates, institutions and every other header element stay in the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from conceptlens._io import user_path
from conceptlens.data._images import to_rgb_uint8
from conceptlens.exceptions import ConfigError, ImageDecodeError, MissingFileError

__all__ = [
    "DICOM_METADATA_TAGS",
    "DicomOptions",
    "dicom_metadata",
    "load_dicom",
    "read_dicom",
    "window_linear",
]

#: The only header elements conceptlens copies into metadata (technical, not PHI).
DICOM_METADATA_TAGS = (
    "Modality",
    "PhotometricInterpretation",
    "Rows",
    "Columns",
    "SamplesPerPixel",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "NumberOfFrames",
    "RescaleSlope",
    "RescaleIntercept",
    "WindowCenter",
    "WindowWidth",
    "PixelSpacing",
    "ImagerPixelSpacing",
    "SliceThickness",
    "BodyPartExamined",
    "ViewPosition",
    "Manufacturer",
    "ManufacturerModelName",
)

# What to install for each compressed transfer syntax family.
_PLUGIN_HINT = {
    "JPEG 2000": "pip install pylibjpeg pylibjpeg-openjpeg  (or: pip install python-gdcm)",
    "JPEG-LS": "pip install pylibjpeg pylibjpeg-libjpeg  (or: pip install python-gdcm)",
    "JPEG": "pip install pylibjpeg pylibjpeg-libjpeg  (or: pip install python-gdcm)",
    "RLE": "pip install pylibjpeg pylibjpeg-rle",
    "HTJ2K": "pip install pylibjpeg pylibjpeg-openjpeg",
}


@dataclass(frozen=True)
class DicomOptions:
    """How DICOM pixels become an 8-bit image.

    Parameters
    ----------
    window : "auto", "minmax" or (center, width)
        ``"auto"``: the file's VOI LUT, else its first window centre/width, else
        min-max of the frame (8-bit data without rescale is used as is).
        ``"minmax"``: always min-max of the modality values. A ``(center, width)``
        pair: that window (in modality units, e.g. Hounsfield units for CT).
    frame : "error", "first" or int
        Multi-frame files: raise (default; nothing is chosen silently), take the first
        frame, or take the frame with this index.
    invert_monochrome1 : bool
        Invert MONOCHROME1 images so that high values are bright, as in MONOCHROME2.

    Examples
    --------
    >>> DicomOptions(window=(40, 400), frame="first").window
    (40.0, 400.0)
    """

    window: Literal["auto", "minmax"] | tuple[float, float] = "auto"
    frame: Literal["error", "first"] | int = "error"
    invert_monochrome1: bool = True

    def __post_init__(self) -> None:
        w = self.window
        if isinstance(w, str):
            if w not in ("auto", "minmax"):
                raise ConfigError(f"window must be 'auto', 'minmax' or (center, width), not {w!r}")
        else:
            try:
                c, width = (float(v) for v in w)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"window must be a (center, width) pair, not {w!r}") from exc
            if width < 1:
                raise ConfigError(f"window width must be >= 1, not {width}")
            object.__setattr__(self, "window", (c, width))
        f = self.frame
        if isinstance(f, str) and f not in ("error", "first"):
            raise ConfigError(f"frame must be 'error', 'first' or an index, not {f!r}")


def window_linear(
    values: np.ndarray, center: float, width: float, function: str = "LINEAR"
) -> np.ndarray:
    """Apply a DICOM window (PS3.3 C.11.2.1.2) and return floats in ``[0, 1]``.

    Parameters
    ----------
    values : np.ndarray
        Modality values (after rescale slope/intercept).
    center, width : float
        Window centre and width.
    function : {"LINEAR", "LINEAR_EXACT", "SIGMOID"}
        The file's VOI LUT Function.

    Returns
    -------
    np.ndarray
        ``float64``, same shape as ``values``.

    Examples
    --------
    >>> window_linear(np.array([-1000.0, 40.0, 1000.0]), 40, 400).round(3).tolist()
    [0.0, 0.501, 1.0]
    """
    x = np.asarray(values, dtype=np.float64)
    c, w = float(center), float(width)
    fn = str(function).upper()
    if fn == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
    if fn == "LINEAR_EXACT":
        y = (x - c) / w + 0.5
        return np.clip(y, 0.0, 1.0)
    if w < 1:
        raise ImageDecodeError(f"window width {w} < 1 is invalid for a LINEAR VOI function")
    lo = c - 0.5 - (w - 1.0) / 2.0
    hi = c - 0.5 + (w - 1.0) / 2.0
    if w == 1:
        return (x > lo).astype(np.float64)
    y = (x - (c - 0.5)) / (w - 1.0) + 0.5
    y = np.where(x <= lo, 0.0, np.where(x > hi, 1.0, y))
    return np.clip(y, 0.0, 1.0)


def _first(value: Any) -> float:
    from pydicom.multival import MultiValue

    if isinstance(value, MultiValue | list | tuple):
        return float(value[0])
    return float(value)


def _plugin_error(path: Path, ds: Any) -> ImageDecodeError | None:
    from pydicom.pixels import get_decoder

    tsuid = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if tsuid is None or not tsuid.is_compressed:
        return None
    try:
        decoder = get_decoder(tsuid)
    except NotImplementedError:
        return ImageDecodeError(
            f"{path}: no DICOM decoder exists for transfer syntax {tsuid.name} ({tsuid}); "
            "convert the file to an uncompressed syntax (e.g. `gdcmconv --raw`)."
        )
    if decoder.is_available:
        return None
    name = tsuid.name
    hint = next((h for k, h in _PLUGIN_HINT.items() if k in name), None)
    missing = "; ".join(decoder.missing_dependencies) or "no plugin registered"
    return ImageDecodeError(
        f"{path}: pixel data is compressed as '{name}' and no decoder plugin is installed "
        f"({missing}). Install one: {hint or 'pip install pylibjpeg or python-gdcm'}."
    )


def _read(path: Path, *, pixels: bool) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not path.exists():
        raise MissingFileError(f"DICOM file not found: {path}")
    try:
        return pydicom.dcmread(path, stop_before_pixels=not pixels)
    except InvalidDicomError as exc:
        raise ImageDecodeError(
            f"{path}: not a DICOM file ({exc}). Check the path, or read it as a regular "
            "image by giving it the right extension."
        ) from exc
    except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise ImageDecodeError(
            f"{path}: DICOM header is corrupt or truncated ({exc}); re-export the file."
        ) from exc


def dicom_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the whitelisted technical tags of a DICOM file (see ``DICOM_METADATA_TAGS``).

    Multi-valued tags become tuples of floats; absent tags are left out. No patient,
    study, institution, date or UID element is ever returned.
    """
    ds = _read(user_path(path), pixels=False)
    out: dict[str, Any] = {}
    for tag in DICOM_METADATA_TAGS:
        if tag not in ds:
            continue
        value = ds.data_element(tag).value
        if value is None or value == "":
            continue
        if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
            out[tag] = tuple(float(v) for v in value)
        elif isinstance(value, int | float):
            out[tag] = value if isinstance(value, int) else float(value)
        else:
            try:
                out[tag] = (
                    float(value)
                    if tag.startswith(("Rescale", "Window", "Slice"))
                    else (str(value))
                )
            except (TypeError, ValueError):
                out[tag] = str(value)
    return out


def _select_frame(path: Path, ds: Any, options: DicomOptions) -> np.ndarray:
    from pydicom.pixels import pixel_array

    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    index: int | None = None
    if n_frames > 1:
        if options.frame == "error":
            raise ImageDecodeError(
                f"{path}: multi-frame DICOM with {n_frames} frames; conceptlens reads one "
                "2-D image per sample. Pass dicom_options=DicomOptions(frame='first') or "
                "frame=<index> to choose one."
            )
        index = 0 if options.frame == "first" else int(options.frame)
        if not 0 <= index < n_frames:
            raise ImageDecodeError(f"{path}: frame {index} out of range ({n_frames} frames).")
    if (err := _plugin_error(path, ds)) is not None:
        raise err
    try:
        if index is None:
            return np.asarray(ds.pixel_array)
        return np.asarray(pixel_array(ds, index=index))
    except (ValueError, RuntimeError, EOFError, OSError, AttributeError, KeyError) as exc:
        msg = str(exc)
        if "plugin" in msg.lower() or "missing dependencies" in msg.lower():
            raise ImageDecodeError(
                f"{path}: no working decoder for this compressed DICOM ({exc}). Install "
                "pylibjpeg with pylibjpeg-openjpeg/pylibjpeg-libjpeg, or python-gdcm."
            ) from exc
        raise ImageDecodeError(
            f"{path}: DICOM pixel data is truncated or corrupt ({exc}). Re-export or "
            "re-download the file, or skip bad files with on_error='skip'."
        ) from exc


def read_dicom(path: str | os.PathLike[str], options: DicomOptions | None = None) -> np.ndarray:
    """Decode a DICOM file to ``uint8`` ``(H, W, 3)``.

    Steps: pick the frame, apply the modality LUT (rescale slope/intercept or Modality
    LUT Sequence), then the VOI LUT Sequence or window centre/width (or min-max), scale
    to 0-255 and invert MONOCHROME1. Colour images (RGB/YBR, converted to RGB by pydicom)
    are only rescaled to 8 bits.

    Parameters
    ----------
    path : str or path-like
    options : DicomOptions, optional

    Returns
    -------
    np.ndarray
        ``uint8`` ``(H, W, 3)``.

    Raises
    ------
    ImageDecodeError
        Not DICOM, truncated, corrupt, multi-frame with ``frame="error"``, or a
        compressed transfer syntax whose decoder plugin is not installed (the message
        names what to ``pip install``).
    """
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    opts = options or DicomOptions()
    p = user_path(path)
    ds = _read(p, pixels=True)
    if "PixelData" not in ds:
        raise ImageDecodeError(f"{p}: DICOM file has no pixel data (a report or SR object?).")
    arr = _select_frame(p, ds, opts)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    bits = int(ds.get("BitsStored", 8) or 8)
    if int(ds.get("SamplesPerPixel", 1) or 1) > 1 or arr.ndim == 3:
        if arr.dtype != np.uint8:
            scaled = arr.astype(np.float64) / float(2**bits - 1)
            arr = np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8)
        return to_rgb_uint8(arr, source=str(p))
    has_rescale = "RescaleSlope" in ds or "RescaleIntercept" in ds
    if "ModalityLUTSequence" in ds:
        values = np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
    else:
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
        values = arr.astype(np.float64) * slope + intercept
    window = opts.window
    if isinstance(window, tuple):
        unit = window_linear(values, window[0], window[1])
    elif window == "auto" and "VOILUTSequence" in ds:
        stored = np.rint(values).astype(np.int64) if has_rescale else arr
        out = np.asarray(apply_voi_lut(stored, ds), np.float64)
        lut_bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        unit = np.clip(out / float(2**lut_bits - 1), 0.0, 1.0)
    elif window == "auto" and "WindowCenter" in ds and "WindowWidth" in ds:
        fn = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR")
        unit = window_linear(values, _first(ds.WindowCenter), _first(ds.WindowWidth), fn)
    elif window == "auto" and bits <= 8 and not has_rescale and arr.dtype == np.uint8:
        unit = values / 255.0
    else:
        lo, hi = float(values.min()), float(values.max())
        unit = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    img = np.clip(np.rint(unit * 255.0), 0, 255).astype(np.uint8)
    if photometric == "MONOCHROME1" and opts.invert_monochrome1:
        img = 255 - img
    return to_rgb_uint8(img, source=str(p))


def load_dicom(
    path: str | os.PathLike[str],
    *,
    options: DicomOptions | None = None,
    on_error: Literal["raise", "skip"] = "raise",
    validate: bool = False,
) -> Any:
    """Load one DICOM file or every DICOM file under a folder as an unlabelled dataset.

    Metadata holds only the whitelisted technical tags (:data:`DICOM_METADATA_TAGS`);
    ids are file paths relative to the folder. Labels come from a manifest instead:
    use :func:`load_manifest` with DICOM paths when you have them.

    Parameters
    ----------
    path : str or path-like
        A ``.dcm`` file or a folder searched recursively (``.dcm``, ``.dicom`` and
        extension-less files with the ``DICM`` marker).
    options : DicomOptions, optional
    on_error : {"raise", "skip"}
    validate : bool
        Decode every image now instead of lazily.

    Returns
    -------
    ImageDataset

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> ds = load_dicom(get_testdata_file("CT_small.dcm"))
    >>> ds[0].image.shape, ds.metadata["Modality"].iloc[0]
    ((128, 128, 3), 'CT')
    """
    import pandas as pd

    from conceptlens.data._dataset import ImageDataset
    from conceptlens.data._folder import list_image_files
    from conceptlens.data._sources import FileImages
    from conceptlens.exceptions import DataError

    base = user_path(path)
    if base.is_file():
        files, root = [base], base.parent
    elif base.is_dir():
        files, root = list_image_files(base, extensions=(".dcm", ".dicom")), base
    else:
        raise MissingFileError(f"DICOM file or folder not found: {base}")
    if not files:
        raise DataError(f"{base}: no DICOM files found; the dataset would be empty.")
    rows: list[dict[str, Any]] = []
    problems: dict[int, str] = {}
    for k, f in enumerate(files):
        try:
            rows.append(dicom_metadata(f))
        except (ImageDecodeError, MissingFileError) as exc:
            rows.append({})
            problems[k] = str(exc)
    frame = pd.DataFrame(rows, index=pd.Index([f.relative_to(root).as_posix() for f in files]))
    ds = ImageDataset(
        frame,
        FileImages([str(f) for f in files], dicom_options=options),
        on_error=on_error,
        row_names=[str(f) for f in files],
        row_problems=problems,
        dicom_options=options,
    )
    return ds.validate() if validate else ds
