"""Where an :class:`ImageDataset` gets its pixels: in-memory arrays, files or an npz archive.

A source is addressed by *source row* (the row of the table it was built from); a
dataset and its subsets keep an index array that maps their positions to source rows,
so subsets share one source and nothing is copied.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from conceptlens.data._images import (
    MAX_ASPECT_RATIO,
    check_mask_shape,
    read_image,
    read_mask,
    to_rgb_uint8,
)
from conceptlens.exceptions import DataError, ImageDecodeError, MissingFileError

__all__ = ["ArrayImages", "ArrayMasks", "FileImages", "FileMasks", "NpzImages"]


class ArrayImages:
    """Images held in a ``uint8`` ``(N, H, W, 3)`` array (or any array-like with rows)."""

    def __init__(self, images: Any) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def describe(self, row: int) -> str:
        return f"array row {row}"

    def path(self, row: int) -> str | None:
        return None

    def load(self, row: int) -> np.ndarray:
        return to_rgb_uint8(np.asarray(self.images[row]), source=self.describe(row))


class FileImages:
    """One image file per row; decoded on demand."""

    def __init__(
        self,
        paths: Sequence[str],
        *,
        dicom_options: Any = None,
        max_aspect_ratio: float | None = MAX_ASPECT_RATIO,
    ) -> None:
        self.paths = [str(p) for p in paths]
        self.dicom_options = dicom_options
        self.max_aspect_ratio = max_aspect_ratio

    def __len__(self) -> int:
        return len(self.paths)

    def describe(self, row: int) -> str:
        return self.paths[row]

    def path(self, row: int) -> str | None:
        return self.paths[row]

    def load(self, row: int) -> np.ndarray:
        return read_image(
            self.paths[row],
            dicom_options=self.dicom_options,
            max_aspect_ratio=getattr(self, "max_aspect_ratio", MAX_ASPECT_RATIO),
        )


class NpzImages:
    """Rows stored in arrays of an ``.npz`` archive (MedMNIST layout).

    ``keys[row]`` names the array and ``offsets[row]`` the position inside it. An npz
    member cannot be memory-mapped, so each member array is decompressed on first use
    and kept (one split at a time is the size of the file's member, not of a folder
    of images); workers of a DataLoader each open the archive themselves.
    """

    def __init__(self, path: str | Path, keys: Sequence[str], offsets: Sequence[int]) -> None:
        self.file = str(path)
        self.keys = list(keys)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = {}
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.keys)

    def describe(self, row: int) -> str:
        return f"{self.file}[{self.keys[row]}][{int(self.offsets[row])}]"

    def path(self, row: int) -> str | None:
        return self.file

    def _member(self, key: str) -> np.ndarray:
        with self._lock:
            if key not in self._cache:
                if not Path(self.file).exists():
                    raise MissingFileError(f"npz file not found: {self.file}")
                try:
                    with np.load(self.file, allow_pickle=False) as npz:
                        self._cache[key] = npz[key]
                except (OSError, ValueError, KeyError) as exc:
                    raise ImageDecodeError(
                        f"{self.file}: cannot read array {key!r} ({exc}). The file may be "
                        "truncated; download it again."
                    ) from exc
            return self._cache[key]

    def load(self, row: int) -> np.ndarray:
        arr = self._member(self.keys[row])[int(self.offsets[row])]
        return to_rgb_uint8(arr, source=self.describe(row))


class ArrayMasks:
    """A ``bool`` ``(N, H, W)`` mask array for one mask name."""

    def __init__(self, masks: Any, name: str) -> None:
        self.masks = masks
        self.name = name

    def describe(self, row: int) -> str:
        return f"{self.name} array row {row}"

    def load(self, row: int, shape: tuple[int, int]) -> np.ndarray | None:
        m = np.asarray(self.masks[row])
        if m.ndim != 2:
            raise DataError(f"{self.describe(row)}: mask has shape {m.shape}; expected (H, W).")
        m = m.astype(bool, copy=False)
        check_mask_shape(m, shape, name=self.name, source=self.describe(row))
        return m


class FileMasks:
    """One mask file per row for one mask name; an empty cell means "no mask"."""

    def __init__(self, paths: Sequence[str | None], name: str) -> None:
        self.paths = [p if p else None for p in paths]
        self.name = name

    def describe(self, row: int) -> str:
        return str(self.paths[row])

    def load(self, row: int, shape: tuple[int, int]) -> np.ndarray | None:
        p = self.paths[row]
        if p is None:
            return None
        return read_mask(p, shape=shape, name=self.name)
